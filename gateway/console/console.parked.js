// Parked events of a broker, by trigger, with their attributes and a payload preview: re-drive
// one, a selection, or all of a trigger's, after a confirmation; the result is shown and the list
// read again (a re-drive moves the events, so positions change).

import { api } from './console.api.js';
import { h, mount, confirmDialog } from './console.dom.js';

const PREVIEW = 160;

export function parkedView(main, { args }) {
  const picker = h('select', { id: 'parked-broker', onchange: () => { location.hash = `#/parked/${picker.value}`; } });
  const banner = h('div', { id: 'parked-result' });
  const list = h('div', { id: 'parked' });
  const selectedButton = h('button', { id: 'redrive-selected', type: 'button', class: 'primary', disabled: true, onclick: () => redriveSelected() }, 'Re-drive selected');
  const reload = h('button', { type: 'button', onclick: () => load() }, 'Refresh');
  mount(main, h('div', { class: 'toolbar' }, h('h2', {}, 'Parked events'), picker, selectedButton, reload), banner, list);
  let broker = null;
  let parked = null;
  const selected = new Set();

  api.topology().then((topology) => {
    const names = topology.brokers.map((candidate) => candidate.name);
    broker = args.length >= 2 ? `${args[0]}/${args[1]}` : names[0];
    mount(picker, names.map((name) => h('option', { value: name, selected: name === broker }, name)));
    if (broker) load(); else mount(list, h('p', { class: 'muted' }, 'This node runs no broker.'));
  }).catch((error) => mount(list, h('p', { class: 'error' }, error.message)));

  async function load() {
    try {
      parked = await api.parked(broker);
    } catch (error) {
      mount(list, h('p', { class: 'error' }, error.message));
      return;
    }
    selected.clear();
    draw();
  }

  function position(event) { return `${event.partition}@${event.offset}`; }

  function draw() {
    selectedButton.disabled = selected.size === 0;
    selectedButton.textContent = `Re-drive selected (${selected.size})`;
    if (!parked.events.length) {
      mount(list, h('p', { class: 'muted', id: 'parked-empty' }, `Nothing parked on ${broker}.`));
      return;
    }
    const byTrigger = new Map();
    for (const event of parked.events) {
      if (!byTrigger.has(event.trigger)) byTrigger.set(event.trigger, []);
      byTrigger.get(event.trigger).push(event);
    }
    const groups = [...byTrigger].map(([trigger, events]) => h('div', { class: 'panel', dataset: { trigger } },
      h('div', { class: 'toolbar' },
        h('h3', {}, trigger, h('span', { class: 'muted' }, ` — ${events.length} listed`)),
        h('button', { type: 'button', class: 'redrive-trigger', dataset: { trigger }, onclick: () => redriveTrigger(trigger) }, `Re-drive all of ${trigger.split('/')[1] || trigger}`)),
      h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, ''), ...['id', 'type', 'source', 'parked at', 'why', 'data', ''].map((name) => h('th', {}, name)))),
        h('tbody', {}, events.map((event) => row(event))))));
    mount(list, h('p', { class: 'muted' }, `${parked.total} parked in all${parked.total > parked.events.length ? `, the first ${parked.events.length} listed` : ''}.`), groups);
  }

  function row(event) {
    const attributes = event.event || {};
    const data = attributes.data !== undefined ? JSON.stringify(attributes.data) : (attributes.data_base64 ? `(base64) ${attributes.data_base64}` : '');
    const box = h('input', {
      type: 'checkbox', class: 'pick', checked: selected.has(position(event)),
      onchange: () => { if (box.checked) selected.add(position(event)); else selected.delete(position(event)); draw(); },
    });
    return h('tr', { class: 'parked-event', dataset: { id: attributes.id, position: position(event) } },
      h('td', {}, box),
      h('td', { class: 'mono' }, attributes.id), h('td', {}, attributes.type), h('td', { class: 'mono' }, attributes.source),
      h('td', { class: 'mono' }, event.parkedAt), h('td', {}, event.reason),
      h('td', { class: 'mono' }, data.length > PREVIEW ? data.slice(0, PREVIEW) + '…' : data),
      h('td', {}, h('button', { type: 'button', class: 'redrive-one', onclick: () => redriveEvents([event]) }, 'Re-drive')));
  }

  async function redrive(question, request) {
    if (!(await confirmDialog('Re-drive', question, 'Re-drive'))) return;
    try {
      const report = await api.redrive(broker, request);
      mount(banner, h('div', { class: 'banner ok', id: 'redrive-report' }, `${report.redriven} event(s) re-driven to their trigger, ${report.kept} left parked.`));
    } catch (error) {
      mount(banner, h('div', { class: 'banner error', id: 'redrive-report' }, `Re-drive refused: ${error.message}`));
    }
    await load();
  }

  function redriveEvents(events) {
    const noun = events.length === 1 ? `event ${events[0].event.id}` : `${events.length} events`;
    return redrive(`Deliver ${noun} again, each to the trigger that parked it?`,
      { events: events.map((event) => ({ partition: event.partition, offset: event.offset })) });
  }

  function redriveSelected() {
    const events = parked.events.filter((event) => selected.has(position(event)));
    if (events.length) redriveEvents(events);
  }

  function redriveTrigger(trigger) {
    return redrive(`Deliver every event parked by ${trigger} again (not only those listed)?`, { trigger });
  }

  return null;
}
