// Live numbers per broker and trigger, refreshed with every sample (two seconds): totals, rates
// and latency quantiles over the last 10 s, and the delivered rate as a sparkline over the last
// minutes. Triggers are grouped under their broker; the list draws only the rows in view, so a
// thousand triggers scroll as easily as ten.

import { h, mount, count, rate, seconds, sparkline } from './console.dom.js';

const ROW = 34;

export function numbersView(main, { sampler }) {
  const filter = h('input', { id: 'numbers-filter', type: 'search', placeholder: 'filter by name', oninput: () => { rows = build(); render(); } });
  const list = h('div', { class: 'vlist', id: 'numbers' });
  const spacer = h('div', { class: 'spacer' });
  const header = h('div', { class: 'vrow head' },
    h('span', {}, 'broker / trigger'), ...['in / matched', 'delivered', 'retried', 'dead-lettered', 'parked', 'rate', 'p50', 'p99'].map((name) => h('span', { class: 'num' }, name)),
    h('span', {}, 'delivered, last minutes'));
  list.append(header, spacer);
  mount(main, h('div', { class: 'toolbar' }, h('h2', {}, 'Numbers'), filter,
    h('span', { class: 'muted' }, 'rates and quantiles over the last 10 s; queue and lag in each trigger\'s and broker\'s tooltip')), list);
  let rows = [];

  /** The rows: each broker, then its triggers (of the filter). */
  function build() {
    const last = sampler.samples[sampler.samples.length - 1];
    if (!last) return [];
    const wanted = filter.value.trim().toLowerCase();
    const byBroker = new Map(last.brokers.map((broker) => [broker.name, []]));
    for (const trigger of last.triggers) {
      if (wanted && !trigger.name.toLowerCase().includes(wanted) && !trigger.broker.toLowerCase().includes(wanted)) continue;
      if (!byBroker.has(trigger.broker)) byBroker.set(trigger.broker, []);
      byBroker.get(trigger.broker).push(trigger.name);
    }
    const out = [];
    for (const [broker, triggers] of [...byBroker.entries()].sort()) {
      if (wanted && !triggers.length && !broker.toLowerCase().includes(wanted)) continue;
      out.push({ kind: 'brokers', name: broker });
      for (const name of triggers.sort()) out.push({ kind: 'triggers', name, broker });
    }
    return out;
  }

  function cells(row) {
    const now = sampler.entry(sampler.samples[sampler.samples.length - 1], row.kind, row.name);
    if (!now) return [];
    if (row.kind === 'brokers') {
      const lag = (now.partitions || []).reduce((sum, p) => sum + (p.lag || 0), 0);
      return [
        h('span', { class: 'name', title: `${row.name}: ${now.storing ? 'storing' : 'NOT storing'}; lag ${lag} record(s) over ${(now.partitions || []).length} partition(s)` }, row.name),
        h('span', { class: 'num' }, count(now.received)), h('span', { class: 'num' }, ''),
        h('span', { class: 'num' }, ''), h('span', { class: 'num' }, ''), h('span', { class: 'num' }, `lag ${count(lag)}`),
        h('span', { class: 'num' }, rate(sampler.rate('brokers', row.name, 'received'))),
        h('span', { class: 'num' }, seconds(sampler.quantile('brokers', row.name, 'appendLatency', 0.5))),
        h('span', { class: 'num' }, seconds(sampler.quantile('brokers', row.name, 'appendLatency', 0.99))),
        sparkline(sampler.series('brokers', row.name, 'received').slice(-60)),
      ];
    }
    return [
      h('span', { class: 'name', title: `${row.name}: queued ${now.queued}, in flight ${now.inFlight}, behind ${now.behind}` }, '   ', row.name.split('/')[1] || row.name),
      h('span', { class: 'num' }, count(now.matched)), h('span', { class: 'num' }, count(now.delivered)),
      h('span', { class: 'num' }, count(now.retries)), h('span', { class: 'num' }, count(now.deadLettered)),
      h('span', { class: 'num' }, count(now.parked)),
      h('span', { class: 'num' }, rate(sampler.rate('triggers', row.name, 'delivered'))),
      h('span', { class: 'num' }, seconds(sampler.quantile('triggers', row.name, 'deliveryLatency', 0.5))),
      h('span', { class: 'num' }, seconds(sampler.quantile('triggers', row.name, 'deliveryLatency', 0.99))),
      sparkline(sampler.series('triggers', row.name, 'delivered').slice(-60)),
    ];
  }

  /** Draws the rows in view (and a few around), absolutely placed in a spacer of the full height. */
  function render() {
    spacer.style.height = `${rows.length * ROW}px`;
    const first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5);
    const last = Math.min(rows.length, first + Math.ceil(list.clientHeight / ROW) + 10);
    const drawn = [];
    for (let index = first; index < last; index += 1) {
      const row = rows[index];
      const element = h('div', { class: `vrow ${row.kind === 'brokers' ? 'broker' : ''}`, dataset: { name: row.name } }, cells(row));
      element.style.top = `${index * ROW}px`;
      drawn.push(element);
    }
    spacer.replaceChildren(...drawn);
  }

  list.addEventListener('scroll', () => requestAnimationFrame(render));
  const unsubscribe = sampler.subscribe(() => { rows = build(); render(); });
  return unsubscribe;
}
