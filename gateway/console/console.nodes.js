// The node this console talks to: its name, role and readiness, the brokers and partitions it
// holds, whether it runs the sources (in a cluster, the Lease holder does). Each node of a cluster
// answers for itself: open each pod's console (kubectl port-forward) to see its part.

import { api } from './console.api.js';
import { h, mount, count } from './console.dom.js';

export function nodesView(main) {
  const body = h('div', { id: 'nodes' }, h('p', { class: 'muted' }, 'Loading…'));
  mount(main, h('div', { class: 'toolbar' }, h('h2', {}, 'Nodes')), body);
  async function load() {
    try {
      const node = await api.node();
      mount(body, h('div', { class: 'panel', dataset: { node: node.name } },
        h('h3', {}, h('span', { class: `dot ${node.ready ? 'ready' : 'notReady'}` }), node.name,
          h('span', { class: 'muted' }, ` — ${node.ready ? 'ready' : 'not ready'}`)),
        h('dl', { class: 'kv' },
          h('dt', {}, 'role'), h('dd', {}, node.role),
          h('dt', {}, 'version'), h('dd', {}, node.version),
          h('dt', {}, 'started'), h('dd', {}, node.startedAt),
          h('dt', {}, 'ingress'), h('dd', { class: 'mono' }, node.ingress || '–'),
          h('dt', {}, 'sources'), h('dd', {}, node.runsSources ? 'run here' : 'not here (another node holds the Lease, or there are none)')),
        h('h3', {}, 'Brokers and partitions held'),
        h('table', {},
          h('thead', {}, h('tr', {}, ...['broker', 'channel', 'running', 'restarts', 'partitions (lag)'].map((name) => h('th', {}, name)))),
          h('tbody', {}, node.brokers.map((broker) => h('tr', {},
            h('td', { class: 'mono' }, broker.name), h('td', {}, broker.channel),
            h('td', {}, broker.running ? 'yes' : 'no'), h('td', { class: 'num' }, broker.restarts),
            h('td', { class: 'mono' }, broker.partitions.map((p) => `${p.partition} (${count(p.lag)})`).join(', ') || '–'))))),
        h('p', { class: 'muted' }, 'This is the node serving this page. In a cluster each pod answers for itself: port-forward to another pod to see its part.')));
    } catch (error) {
      mount(body, h('p', { class: 'error' }, error.message));
    }
  }
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
