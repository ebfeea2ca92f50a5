// Topology: sources -> brokers -> triggers -> subscribers and dead-letter sinks, drawn in four
// columns, grouped by broker, each node coloured by its state (the reason on hover). A broker shows
// at most SHOWN triggers (the failing first); the search narrows them. Clicking a trigger or a
// broker shows its filter, effective delivery and live numbers.

import { api } from './console.api.js';
import { h, s, mount, count, rate, seconds, sparkline } from './console.dom.js';

const SHOWN = 25;
const WIDTH = 180;
const HEIGHT = 34;
const ROW = 44;
const COLUMNS = { source: 10, broker: 215, trigger: 420, endpoint: 625 };
const SEVERITY = { notReady: 0, degraded: 1, ready: 2 };

export function topologyView(main, { sampler }) {
  let topology = null;
  let selected = null;
  let problem = null;
  const search = h('input', { id: 'topology-search', type: 'search', placeholder: 'filter triggers by name', oninput: () => draw() });
  const graph = h('div', { id: 'graph', class: 'panel' });
  const detail = h('div', { id: 'detail', class: 'panel' }, h('p', { class: 'muted' }, 'Click a broker or a trigger.'));
  const summary = h('span', { class: 'muted', id: 'topology-summary' });
  mount(main,
    h('div', { class: 'toolbar' }, h('h2', {}, 'Topology'), search, summary),
    h('div', { class: 'split' }, graph, detail));

  async function load() {
    try {
      topology = await api.topology();
      problem = null;
    } catch (error) {
      problem = error.message;
    }
    draw();
  }

  /** The state a node shows: its own, or "degraded" when its deliveries failed in the last 10 s. */
  function liveState(kind, node) {
    if (node.state !== 'ready') return { state: node.state, reason: node.reason, message: node.message };
    if (kind === 'trigger') {
      const failed = sampler.growth('triggers', node.name, 'failedAttempts');
      const parked = sampler.growth('triggers', node.name, 'parked');
      if (failed > 0 || parked > 0) {
        return {
          state: 'degraded',
          reason: 'DeliveriesFailing',
          message: `${failed} failed attempt(s) and ${parked} parked event(s) in the last 10 s${lastStatus(node.name)}`,
        };
      }
    }
    if (kind === 'broker') {
      const refused = sampler.growth('brokers', node.name, 'refused');
      if (refused > 0) return { state: 'degraded', reason: 'EventsRefused', message: `${refused} event(s) refused in the last 10 s` };
    }
    return { state: 'ready', reason: null, message: null };
  }

  function lastStatus(name) {
    const [first, last] = sampler.window(10);
    const before = sampler.entry(first, 'triggers', name);
    const after = sampler.entry(last, 'triggers', name);
    if (!after) return '';
    let worst = null;
    for (const [code, total] of Object.entries(after.responses)) {
      const grew = total - ((before && before.responses[code]) || 0);
      if (Number(code) >= 300 && grew > 0 && (!worst || grew > worst[1])) worst = [code, grew];
    }
    return worst ? ` (mostly ${worst[0]})` : '';
  }

  function node(kind, name, label, x, y, state, extraClass = '') {
    const tooltip = state.reason ? `${name}: ${state.reason}${state.message ? ' — ' + state.message : ''}` : `${name}: ${state.state}`;
    const group = s('g', {
      class: `node ${kind} ${state.state} ${extraClass} ${selected && selected.kind === kind && selected.name === name ? 'selected' : ''}`,
      transform: `translate(${x},${y})`,
      dataset: { kind, name, state: state.state, reason: state.reason || '' },
      onclick: () => { selected = { kind, name }; draw(); },
    },
    s('title', {}, tooltip),
    s('rect', { width: WIDTH, height: HEIGHT, rx: 6 }),
    s('text', { x: 10, y: 21 }, clip(label, 26)));
    return group;
  }

  function edge(from, to, dls = false) {
    const [x1, y1] = [from.x + WIDTH, from.y + HEIGHT / 2];
    const [x2, y2] = [to.x, to.y + HEIGHT / 2];
    const middle = (x1 + x2) / 2;
    return s('path', { class: dls ? 'edge dls' : 'edge', d: `M${x1},${y1} C${middle},${y1} ${middle},${y2} ${x2},${y2}` });
  }

  function draw() {
    if (problem && !topology) { mount(graph, h('p', { class: 'error' }, problem)); return; }
    if (!topology) return;
    const wanted = search.value.trim().toLowerCase();
    const nodes = [];
    const edges = [];
    const endpoints = new Map();
    const endpointByTrigger = new Map();
    for (const endpoint of topology.endpoints) {
      for (const trigger of endpoint.triggers) {
        if (!endpointByTrigger.has(trigger)) endpointByTrigger.set(trigger, []);
        endpointByTrigger.get(trigger).push(endpoint);
      }
    }
    let y = 40;
    let endpointY = 40;
    let triggersTotal = 0;
    const groups = [...topology.brokers];
    if (topology.unplacedTriggers.length) {
      groups.push({ name: '(no such broker)', state: 'notReady', reason: 'BrokerDoesNotExist', message: 'these triggers name a broker this node does not have', triggers: topology.unplacedTriggers, unplaced: true });
    }
    for (const broker of groups) {
      triggersTotal += broker.triggers.length;
      const matching = broker.triggers.filter((trigger) => !wanted || trigger.name.toLowerCase().includes(wanted));
      const live = matching.map((trigger) => ({ trigger, live: liveState('trigger', trigger) }));
      live.sort((a, b) => (SEVERITY[a.live.state] - SEVERITY[b.live.state]) || a.trigger.name.localeCompare(b.trigger.name));
      const shown = live.slice(0, SHOWN);
      const brokerPosition = { x: COLUMNS.broker, y };
      const brokerState = broker.unplaced ? broker : liveState('broker', broker);
      nodes.push(node('broker', broker.name, broker.name, brokerPosition.x, brokerPosition.y, brokerState, broker.unplaced ? 'unplaced' : ''));
      const sources = topology.sources.filter((source) => source.broker === broker.name);
      sources.forEach((source, index) => {
        const position = { x: COLUMNS.source, y: y + index * ROW };
        nodes.push(node('source', source.name, `${source.kind} ${source.name}`, position.x, position.y, source));
        edges.push(edge(position, brokerPosition));
      });
      shown.forEach(({ trigger, live: state }, index) => {
        const position = { x: COLUMNS.trigger, y: y + index * ROW };
        nodes.push(node('trigger', trigger.name, trigger.name, position.x, position.y, state));
        edges.push(edge(brokerPosition, position));
        for (const endpoint of endpointByTrigger.get(trigger.name) || []) {
          const key = endpoint.role + ' ' + endpoint.url;
          if (!endpoints.has(key)) {
            const at = { x: COLUMNS.endpoint, y: Math.max(endpointY, position.y) };
            endpointY = at.y + ROW;
            endpoints.set(key, at);
            const label = (endpoint.role === 'deadLetterSink' ? 'DLS ' : '') + endpoint.url;
            nodes.push(node('endpoint', endpoint.url, label, at.x, at.y, { state: 'ready', reason: endpoint.role === 'deadLetterSink' ? 'dead-letter sink' : 'subscriber', message: endpoint.triggers.length + ' trigger(s)' }, 'endpoint'));
          }
          edges.push(edge(position, endpoints.get(key), endpoint.role === 'deadLetterSink'));
        }
      });
      let rows = Math.max(1, shown.length, sources.length);
      if (live.length > shown.length) {
        const position = { x: COLUMNS.trigger, y: y + shown.length * ROW };
        const more = node('more', broker.name, `+ ${live.length - shown.length} more: search, or see Numbers`, position.x, position.y, { state: 'ready' }, 'more');
        nodes.push(more);
        rows += 1;
      }
      y += rows * ROW + 24;
      endpointY = Math.max(endpointY, y);
    }
    const loose = topology.sources.filter((source) => !source.broker);
    loose.forEach((source, index) => {
      nodes.push(node('source', source.name, `${source.kind} ${source.name}`, COLUMNS.source, y + index * ROW, source));
    });
    y += loose.length * ROW;
    const height = Math.max(y, endpointY) + 20;
    const svg = s('svg', { width: COLUMNS.endpoint + WIDTH + 20, height, role: 'img', 'aria-label': 'topology' },
      s('text', { class: 'column', x: COLUMNS.source, y: 20 }, 'Sources'),
      s('text', { class: 'column', x: COLUMNS.broker, y: 20 }, 'Brokers'),
      s('text', { class: 'column', x: COLUMNS.trigger, y: 20 }, 'Triggers'),
      s('text', { class: 'column', x: COLUMNS.endpoint, y: 20 }, 'Subscribers and dead-letter sinks'),
      ...edges, ...nodes);
    mount(graph, problem ? h('p', { class: 'error' }, problem) : null, svg);
    summary.textContent = `${topology.brokers.length} broker(s), ${triggersTotal} trigger(s), ${topology.sources.length} source(s)`;
    showDetail();
  }

  function showDetail() {
    if (!selected || !topology) return;
    const brokers = topology.brokers;
    if (selected.kind === 'trigger') {
      const trigger = brokers.flatMap((broker) => broker.triggers).concat(topology.unplacedTriggers)
        .find((candidate) => candidate.name === selected.name);
      if (trigger) mount(detail, triggerDetail(trigger, liveState('trigger', trigger), sampler));
    } else if (selected.kind === 'broker') {
      const broker = brokers.find((candidate) => candidate.name === selected.name);
      if (broker) mount(detail, brokerDetail(broker, liveState('broker', broker), sampler));
    } else if (selected.kind === 'more') {
      search.focus();
    }
  }

  load();
  const refresh = setInterval(load, 5000);
  const unsubscribe = sampler.subscribe(() => draw());
  return () => { clearInterval(refresh); unsubscribe(); };
}

function clip(text, length) {
  return text.length > length ? text.slice(0, length - 1) + '…' : text;
}

function stateLine(state) {
  return h('p', { id: 'detail-state', class: `state-${state.state}` },
    h('span', { class: `dot ${state.state}` }), state.state,
    state.reason ? ` — ${state.reason}` : '', state.message ? `: ${state.message}` : '');
}

function liveNumbers(sampler, kind, name, fields) {
  const [, last] = sampler.window(10);
  const now = sampler.entry(last, kind, name);
  const rows = fields.map(([field, label, failing]) => h('tr', {},
    h('td', {}, label),
    h('td', { class: 'num' }, count(now ? now[field] : null)),
    h('td', { class: 'num' }, rate(sampler.rate(kind, name, field))),
    h('td', {}, sparkline(sampler.series(kind, name, field).slice(-60), { className: failing ? 'fail' : '' }))));
  return h('table', { class: 'live' },
    h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', { class: 'num' }, 'total'), h('th', { class: 'num' }, 'rate'), h('th', {}, 'last 2 min'))),
    h('tbody', {}, rows));
}

function triggerDetail(trigger, state, sampler) {
  const [namespace, broker] = (trigger.broker || '/').split('/');
  const written = {};
  if (trigger.filter.filter) written.filter = trigger.filter.filter;
  if (trigger.filter.filters) written.filters = trigger.filter.filters;
  const delivery = trigger.delivery;
  return [
    h('h3', {}, 'Trigger ', h('span', { class: 'mono' }, trigger.name)),
    stateLine(state),
    h('dl', { class: 'kv' },
      h('dt', {}, 'broker'), h('dd', { class: 'mono' }, trigger.broker || '–'),
      h('dt', {}, 'subscriber'), h('dd', { class: 'mono' }, trigger.subscriber || JSON.stringify(trigger.subscriberAsWritten || null)),
      h('dt', {}, 'order'), h('dd', {}, trigger.order || '–'),
      h('dt', {}, 'starts at'), h('dd', {}, trigger.start || '–')),
    h('h3', {}, 'Filter, as written'),
    h('pre', { id: 'detail-filter' }, Object.keys(written).length ? JSON.stringify(written, null, 2) : '(none: every event)'),
    trigger.filter.runs ? h('p', { class: 'muted' }, 'runs: ', h('span', { class: 'mono' }, trigger.filter.runs)) : null,
    h('h3', {}, 'Delivery, as it runs'),
    delivery ? h('dl', { class: 'kv', id: 'detail-delivery' },
      h('dt', {}, 'from'), h('dd', {}, delivery.from === 'node' ? 'the node\'s default' : `the ${delivery.from}'s delivery`),
      h('dt', {}, 'retry'), h('dd', {}, `${delivery.retry} (${delivery.backoffPolicy}, ${delivery.backoffDelay})`),
      h('dt', {}, 'timeout'), h('dd', {}, delivery.timeout || 'node default'),
      h('dt', {}, 'retryAfterMax'), h('dd', {}, delivery.retryAfterMax || 'node default'),
      h('dt', {}, 'dead-letter sink'), h('dd', { class: 'mono' }, delivery.deadLetterSink || 'none: undeliverable events are parked'),
      h('dt', {}, 'format'), h('dd', {}, delivery.format))
      : h('p', { class: 'muted' }, 'Not running.'),
    h('h3', {}, 'Live'),
    h('p', { class: 'muted' }, `p50 ${seconds(sampler.quantile('triggers', trigger.name, 'deliveryLatency', 0.5))} · p99 ${seconds(sampler.quantile('triggers', trigger.name, 'deliveryLatency', 0.99))} (last 10 s)`),
    liveNumbers(sampler, 'triggers', trigger.name, [
      ['matched', 'matched'], ['delivered', 'delivered'], ['retries', 'retried', true],
      ['failedAttempts', 'failed attempts', true], ['deadLettered', 'dead-lettered', true], ['parked', 'parked', true]]),
    h('p', {},
      h('a', { href: `#/parked/${namespace}/${broker}` }, 'Parked events'), ' · ',
      h('a', { href: `#/tail/${namespace}/${broker}` }, 'Tail its broker')),
  ];
}

function brokerDetail(broker, state, sampler) {
  const [, last] = sampler.window(10);
  const now = sampler.entry(last, 'brokers', broker.name);
  const partitions = (now && now.partitions) || broker.partitions || [];
  return [
    h('h3', {}, 'Broker ', h('span', { class: 'mono' }, broker.name)),
    stateLine(state),
    h('dl', { class: 'kv' },
      h('dt', {}, 'channel'), h('dd', {}, broker.channel || '–'),
      h('dt', {}, 'topic'), h('dd', { class: 'mono' }, broker.topic || '–'),
      h('dt', {}, 'class'), h('dd', {}, broker.class || 'the node\'s default'),
      h('dt', {}, 'triggers'), h('dd', {}, String(broker.triggers.length))),
    h('h3', {}, 'Live'),
    h('p', { class: 'muted' }, `append p99 ${seconds(sampler.quantile('brokers', broker.name, 'appendLatency', 0.99))} (last 10 s)`),
    liveNumbers(sampler, 'brokers', broker.name, [
      ['received', 'received'], ['accepted', 'accepted'], ['refused', 'refused', true],
      ['dispatched', 'dispatched'], ['unmatched', 'unmatched']]),
    h('h3', {}, 'Partitions on this node'),
    partitions.length ? h('table', {},
      h('thead', {}, h('tr', {}, ...['partition', 'end', 'committed', 'lag'].map((name) => h('th', { class: 'num' }, name)))),
      h('tbody', {}, partitions.map((p) => h('tr', {},
        h('td', { class: 'num' }, p.partition), h('td', { class: 'num' }, count(p.end)),
        h('td', { class: 'num' }, count(p.committed)), h('td', { class: 'num' }, count(p.lag))))))
      : h('p', { class: 'muted' }, 'None read here.'),
    h('p', {}, h('a', { href: `#/tail/${broker.name}` }, 'Tail'), ' · ', h('a', { href: `#/parked/${broker.name}` }, 'Parked events')),
  ];
}
