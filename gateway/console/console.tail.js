// The live tail of a broker: its events as they happen (server-sent events from
// /-/brokers/<ns>/<broker>/tail), one row per event with the triggers that took it and each
// outcome. Pause, filter by type, source or any text, click an event to open it. The page keeps
// the newest MAX_ROWS events; the node says when this client lost some ("n events skipped").

import { api } from './console.api.js';
import { h, mount, time } from './console.dom.js';

const MAX_ROWS = 500;

export function tailView(main, { args }) {
  let source = null;
  let paused = false;
  let missed = 0;
  const events = new Map(); // `${source}\n${id}` -> row state, in arrival order
  const picker = h('select', { id: 'tail-broker', onchange: () => { location.hash = `#/tail/${picker.value}`; } });
  const filter = h('input', { id: 'tail-filter', type: 'search', placeholder: 'filter: type, source or text', oninput: () => render() });
  const pause = h('button', { id: 'tail-pause', type: 'button', onclick: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; if (!paused) { missed = 0; render(); } } }, 'Pause');
  const status = h('span', { class: 'muted', id: 'tail-status' }, 'connecting…');
  const body = h('tbody', { id: 'tail-rows' });
  mount(main,
    h('div', { class: 'toolbar' }, h('h2', {}, 'Tail'), picker, filter, pause, status),
    h('div', { class: 'panel' }, h('table', {},
      h('thead', {}, h('tr', {}, ...['time', 'type', 'source', 'id', 'triggers and outcomes'].map((name) => h('th', {}, name)))),
      body)));

  api.topology().then((topology) => {
    const names = topology.brokers.map((broker) => broker.name);
    const chosen = args.length >= 2 ? `${args[0]}/${args[1]}` : names[0];
    mount(picker, names.map((name) => h('option', { value: name, selected: name === chosen }, name)));
    if (!chosen) { status.textContent = 'this node runs no broker'; return; }
    follow(chosen);
  }).catch((error) => { status.textContent = error.message; });

  function follow(broker) {
    source = new EventSource(api.tailUrl(broker));
    source.onopen = () => { status.textContent = `following ${broker}`; };
    source.onerror = () => { status.textContent = 'disconnected: retrying…'; };
    source.addEventListener('hop', (message) => take(JSON.parse(message.data)));
    source.addEventListener('skipped', (message) => {
      const { skipped } = JSON.parse(message.data);
      events.set(`skipped ${Date.now()} ${Math.random()}`, { skipped });
      changed();
    });
  }

  function take(hop) {
    const key = `${hop.source}\n${hop.id}`;
    let event = events.get(key);
    if (!event) {
      event = { at: hop.at, source: hop.source, id: hop.id, type: null, stage: hop.stage, triggers: new Map(), matched: null };
      events.set(key, event);
      while (events.size > MAX_ROWS) events.delete(events.keys().next().value);
    }
    if (hop.type) event.type = hop.type;
    if (hop.stage === 'dispatched' || hop.stage === 'unmatched') event.matched = hop.detail;
    if (hop.stage === 'refused') event.refused = hop.detail || `refused (${hop.status})`;
    if (hop.trigger) {
      const name = hop.trigger.split('/')[1] || hop.trigger;
      const outcome = hop.stage === 'attempt'
        ? (hop.status >= 200 && hop.status < 300 ? 'delivering' : `retrying (${hop.status})`)
        : hop.stage;
      event.triggers.set(name, outcome);
    }
    changed();
  }

  let scheduled = false;
  function changed() {
    if (paused) { missed += 1; status.textContent = `paused (${missed} update(s) waiting)`; return; }
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; render(); });
  }

  function render() {
    const wanted = filter.value.trim().toLowerCase();
    const rows = [];
    for (const [key, event] of events) {
      if (event.skipped !== undefined) {
        rows.push(h('tr', { class: 'skipped' }, h('td', { colspan: 5 }, `${event.skipped} events skipped: this page read slower than they came`)));
        continue;
      }
      const text = `${event.type || ''} ${event.source} ${event.id} ${[...event.triggers.keys()].join(' ')}`.toLowerCase();
      if (wanted && !text.includes(wanted)) continue;
      const outcomes = [...event.triggers].map(([name, outcome]) =>
        h('span', { class: `chip ${outcome.split(' ')[0]}`, dataset: { trigger: name, outcome } }, `${name}: ${outcome}`));
      if (!outcomes.length) outcomes.push(h('span', { class: 'muted' }, event.refused || event.matched || 'stored'));
      rows.push(h('tr', {
        class: 'event', dataset: { id: event.id, source: event.source, key },
        onclick: () => { location.hash = `#/event/${encodeURIComponent(event.id)}?source=${encodeURIComponent(event.source)}`; },
      },
      h('td', { class: 'mono' }, time(event.at)), h('td', {}, event.type || '–'),
      h('td', { class: 'mono' }, event.source), h('td', { class: 'mono' }, event.id), h('td', {}, outcomes)));
    }
    body.replaceChildren(...rows.reverse());
  }

  return () => { if (source) source.close(); };
}
