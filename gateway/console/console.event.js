// One event: its hops from the node's journal with their timings (ingress, append, dispatch, each
// attempt with its status, reply, dead letter, park), why each trigger did not take it, and a link
// to its trace in Jaeger when the node has --jaeger-ui-url.

import { api } from './console.api.js';
import { h, mount, time } from './console.dom.js';

export function eventView(main, { args, params, session }) {
  const id = h('input', { id: 'event-id', placeholder: 'event id', value: args.join('/') });
  const source = h('input', { id: 'event-source', placeholder: 'source (when ids collide)', value: params.get('source') || '' });
  const result = h('div', { id: 'event' });
  const form = h('form', {
    class: 'toolbar',
    onsubmit: (submitted) => {
      submitted.preventDefault();
      const query = source.value ? `?source=${encodeURIComponent(source.value)}` : '';
      location.hash = `#/event/${encodeURIComponent(id.value.trim())}${query}`;
    },
  }, h('h2', {}, 'Event'), id, source, h('button', { type: 'submit', class: 'primary' }, 'Open'));
  mount(main, form, result);
  if (!args.length) {
    mount(result, h('p', { class: 'muted' }, 'Give an event id, or click an event in the tail.'));
    return null;
  }
  api.event(args.join('/'), params.get('source')).then((trail) => {
    mount(result, render(trail, session));
  }).catch((error) => {
    mount(result, h('p', { class: 'error', id: 'event-error' }, error.message));
  });
  return null;
}

function render(trail, session) {
  const first = trail.hops.length ? Date.parse(trail.hops[0].at) : 0;
  const micros = (text) => {
    // Date keeps milliseconds: the microseconds come from the text.
    const match = /\.(\d+)Z$/.exec(text);
    const fraction = match ? Number(match[1].padEnd(6, '0').slice(3, 6)) / 1000 : 0;
    return Date.parse(text) + fraction;
  };
  const start = trail.hops.length ? micros(trail.hops[0].at) : first;
  const trace = trail.traceId && session.jaegerUiUrl
    ? h('a', { id: 'event-trace', href: `${session.jaegerUiUrl}/trace/${trail.traceId}`, target: '_blank', rel: 'noopener noreferrer' }, 'Open its trace in Jaeger')
    : h('span', { class: 'muted' }, trail.traceId ? `trace ${trail.traceId} (start the node with --jaeger-ui-url to link it)` : 'no trace context');
  const hops = trail.hops.map((hop, index) => h('tr', { class: `hop ${hop.stage}`, dataset: { stage: hop.stage } },
    h('td', { class: 'num' }, index + 1),
    h('td', { class: 'mono' }, time(hop.at)),
    h('td', { class: 'num mono' }, `+${(micros(hop.at) - start).toFixed(1)} ms`),
    h('td', {}, hop.stage),
    h('td', { class: 'mono' }, hop.trigger || hop.broker),
    h('td', { class: 'num' }, hop.attempt ?? ''),
    h('td', { class: 'num' }, hop.status ?? ''),
    h('td', { class: 'mono' }, hop.partition !== null && hop.partition !== undefined ? `${hop.partition}@${hop.offset}` : ''),
    h('td', {}, hop.detail || '')));
  const verdicts = trail.triggers.map((verdict) => h('tr', { dataset: { trigger: verdict.name, matched: String(verdict.matched) } },
    h('td', { class: 'mono' }, verdict.name),
    h('td', { class: verdict.matched ? 'ok' : 'error' }, verdict.matched ? 'took it' : 'did not match'),
    h('td', {}, verdict.why || '')));
  return [
    h('div', { class: 'panel' },
      h('dl', { class: 'kv' },
        h('dt', {}, 'id'), h('dd', { class: 'mono', id: 'event-shown-id' }, trail.id),
        h('dt', {}, 'source'), h('dd', { class: 'mono' }, trail.source),
        trail.otherSources.length ? [h('dt', {}, 'same id from'), h('dd', { class: 'mono' }, trail.otherSources.join(', '))] : null,
        h('dt', {}, 'trace'), h('dd', {}, trace)),
      h('h3', {}, `Hops (${trail.hops.length}${trail.droppedHops ? `, ${trail.droppedHops} more not kept` : ''})`),
      h('table', { id: 'hops' },
        h('thead', {}, h('tr', {}, ...['#', 'time', 'since first', 'stage', 'broker / trigger', 'attempt', 'status', 'position', 'detail'].map((name) => h('th', {}, name)))),
        h('tbody', {}, hops)),
      h('h3', {}, 'Triggers of the broker'),
      verdicts.length
        ? h('table', { id: 'verdicts' }, h('tbody', {}, verdicts))
        : h('p', { class: 'muted' }, 'Every trigger took it (the journal keeps an event to explain a refusal only when some trigger did not take it).')),
  ];
}
