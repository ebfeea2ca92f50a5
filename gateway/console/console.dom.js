// DOM helpers: elements are built with text nodes only (never innerHTML), so nothing an event
// carries can become markup.

// A namespace name, never fetched.
const SVG = 'http://www.w3.org/2000/svg';

/** An element: h('td', {class: 'num'}, 'text', child, ...). Attributes starting with "on" are listeners. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  return fill(element, attributes, children);
}

/** An SVG element, as h() makes HTML ones. */
export function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  return fill(element, attributes, children);
}

function fill(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Replaces an element's children. */
export function mount(element, ...children) {
  element.replaceChildren();
  fill(element, {}, children);
  return element;
}

export function count(value) {
  if (value === undefined || value === null) return '–';
  if (value >= 1e6) return (value / 1e6).toFixed(1) + 'M';
  if (value >= 1e4) return (value / 1e3).toFixed(1) + 'k';
  return String(Math.round(value));
}

export function rate(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  if (value === 0) return '0/s';
  if (value < 10) return value.toFixed(1) + '/s';
  return count(value) + '/s';
}

export function seconds(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  if (value < 0.001) return (value * 1e6).toFixed(0) + ' µs';
  if (value < 1) return (value * 1e3).toFixed(value < 0.01 ? 1 : 0) + ' ms';
  return value.toFixed(2) + ' s';
}

/** A small line chart of `values` (oldest first), `width` x `height` pixels. */
export function sparkline(values, { width = 120, height = 22, className = '' } = {}) {
  const svg = s('svg', { class: 'spark', width, height, viewBox: `0 0 ${width} ${height}` });
  const points = values.filter((value) => value !== null && value !== undefined);
  if (points.length < 2) return svg;
  const max = Math.max(...points, 1e-9);
  const step = width / (values.length - 1);
  const coordinates = values
    .map((value, index) => (value === null || value === undefined ? null
      : `${(index * step).toFixed(1)},${(height - 2 - (value / max) * (height - 4)).toFixed(1)}`))
    .filter(Boolean)
    .join(' ');
  svg.append(s('polyline', { points: coordinates, class: className }));
  return svg;
}

/** Asks a yes/no question in the page's modal; resolves to true on yes. */
export function confirmDialog(title, text, yes = 'Confirm') {
  const modal = document.getElementById('modal');
  return new Promise((resolve) => {
    const close = (answer) => { modal.hidden = true; modal.replaceChildren(); resolve(answer); };
    mount(modal, h('div', { class: 'panel', role: 'dialog', 'aria-modal': 'true' },
      h('h3', {}, title),
      h('p', {}, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'modal-cancel', onclick: () => close(false) }, 'Cancel'),
        h('button', { type: 'button', id: 'modal-confirm', class: 'primary', onclick: () => close(true) }, yes))));
    modal.hidden = false;
    document.getElementById('modal-confirm').focus();
  });
}

export function time(text) {
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return text || '';
  return at.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(at.getMilliseconds()).padStart(3, '0');
}
