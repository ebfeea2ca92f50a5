// The console's entry: the session (or the login form), the views by URL fragment
// (#/topology, #/numbers, #/tail/<ns>/<broker>, #/event/<id>?source=S, #/parked/<ns>/<broker>,
// #/nodes), and the sampler that reads /-/stats every two seconds for every view's live numbers.

import { api, setCsrf, whenUnauthorized, ApiError } from './console.api.js';
import { h, mount } from './console.dom.js';
import { topologyView } from './console.topology.js';
import { numbersView } from './console.numbers.js';
import { tailView } from './console.tail.js';
import { eventView } from './console.event.js';
import { parkedView } from './console.parked.js';
import { nodesView } from './console.nodes.js';

const VIEWS = {
  topology: topologyView,
  numbers: numbersView,
  tail: tailView,
  event: eventView,
  parked: parkedView,
  nodes: nodesView,
};

/** Samples of /-/stats, newest last: what the sparklines, rates and quantiles are made of. */
export const sampler = {
  samples: [],
  keep: 150, // five minutes at one sample every two seconds
  listeners: new Set(),
  timer: null,
  async read() {
    try {
      const stats = await api.stats();
      stats.t = Date.parse(stats.at) || Date.now();
      this.samples.push(stats);
      if (this.samples.length > this.keep) this.samples.shift();
      for (const listener of this.listeners) listener(this);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) console.warn('stats', error);
    }
  },
  start() {
    if (this.timer) return;
    this.read();
    this.timer = setInterval(() => { if (!document.hidden) this.read(); }, 2000);
  },
  stop() { clearInterval(this.timer); this.timer = null; },
  /** Calls `listener` after every read until the returned function is called. */
  subscribe(listener) {
    this.listeners.add(listener);
    if (this.samples.length) listener(this);
    return () => this.listeners.delete(listener);
  },
  /** The entry of `kind` ('brokers' or 'triggers') named `name` in a sample. */
  entry(sample, kind, name) {
    if (!sample) return null;
    sample.index = sample.index || {};
    if (!sample.index[kind]) sample.index[kind] = new Map(sample[kind].map((item) => [item.name, item]));
    return sample.index[kind].get(name) || null;
  },
  /** Per-second rate of a counter between consecutive samples, oldest first (null where unknown). */
  series(kind, name, field) {
    const out = [];
    for (let index = 1; index < this.samples.length; index += 1) {
      const before = this.entry(this.samples[index - 1], kind, name);
      const after = this.entry(this.samples[index], kind, name);
      const seconds = (this.samples[index].t - this.samples[index - 1].t) / 1000;
      out.push(before && after && seconds > 0 ? Math.max(0, after[field] - before[field]) / seconds : null);
    }
    return out;
  },
  /** The rate of a counter over the last `window` seconds. */
  rate(kind, name, field, window = 10) {
    const [first, last] = this.window(window);
    const before = this.entry(first, kind, name);
    const after = this.entry(last, kind, name);
    if (!before || !after || first === last) return null;
    return Math.max(0, after[field] - before[field]) / ((last.t - first.t) / 1000);
  },
  /** How much a counter grew over the last `window` seconds. */
  growth(kind, name, field, window = 10) {
    const [first, last] = this.window(window);
    const before = this.entry(first, kind, name);
    const after = this.entry(last, kind, name);
    if (!after) return 0;
    if (!before || first === last) return 0;
    return Math.max(0, after[field] - before[field]);
  },
  /** The q-quantile (0..1) of a latency histogram over the last `window` seconds (since start when idle). */
  quantile(kind, name, field, q, window = 10) {
    const [first, last] = this.window(window);
    const after = this.entry(last, kind, name);
    if (!after) return null;
    const before = first !== last ? this.entry(first, kind, name) : null;
    let buckets = after[field].buckets;
    let total = after[field].count;
    if (before && total - before[field].count > 0) {
      buckets = buckets.map((value, index) => value - before[field].buckets[index]);
      total -= before[field].count;
    }
    if (!total) return null;
    const bounds = last.bucketBounds;
    const rank = q * total;
    for (let index = 0; index < buckets.length; index += 1) {
      if (buckets[index] >= rank) {
        // Linear within the bucket, as Prometheus' histogram_quantile does.
        const lower = index === 0 ? 0 : bounds[index - 1];
        const below = index === 0 ? 0 : buckets[index - 1];
        const inBucket = buckets[index] - below;
        return inBucket > 0 ? lower + (bounds[index] - lower) * ((rank - below) / inBucket) : bounds[index];
      }
    }
    return bounds[bounds.length - 1];
  },
  window(seconds) {
    const last = this.samples[this.samples.length - 1];
    if (!last) return [null, null];
    let first = last;
    for (let index = this.samples.length - 1; index >= 0; index -= 1) {
      first = this.samples[index];
      if (last.t - first.t >= seconds * 1000) break;
    }
    return [first, last];
  },
};

const main = document.getElementById('main');
let leave = null;
let session = null;

function showLogin(message) {
  sampler.stop();
  if (leave) { leave(); leave = null; }
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', placeholder: 'admin token' });
  const problem = h('p', { class: 'error', id: 'login-error' }, message || '');
  const form = h('form', {
    class: 'panel login', id: 'login',
    onsubmit: async (submitted) => {
      submitted.preventDefault();
      try {
        const info = await api.login(input.value);
        input.value = '';
        started(info);
      } catch (error) {
        problem.textContent = error.message;
      }
    },
  },
  h('h2', {}, 'Log in to this knactor node'),
  h('p', { class: 'muted' }, 'Paste the node\'s admin token (the file given to --admin-token-file). The browser keeps a session, not the token.'),
  input,
  h('button', { type: 'submit', class: 'primary' }, 'Log in'),
  problem);
  mount(main, form);
  input.focus();
}

function started(info) {
  session = info;
  setCsrf(info.csrf);
  document.getElementById('who').textContent = `${info.node} · knactor ${info.version}`;
  document.getElementById('logout').hidden = info.via !== 'session';
  sampler.start();
  route();
}

function route() {
  if (!session) return;
  const fragment = location.hash.replace(/^#\/?/, '') || 'topology';
  const [path, query] = fragment.split('?');
  const [name, ...rest] = path.split('/');
  const view = VIEWS[name] ? name : 'topology';
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.view === view);
  }
  if (leave) { leave(); leave = null; }
  mount(main);
  const params = new URLSearchParams(query || '');
  leave = VIEWS[view](main, { args: rest.map(decodeURIComponent), params, session, sampler }) || null;
}

whenUnauthorized(() => { session = null; showLogin('Your session is over: log in again.'); });
window.addEventListener('hashchange', route);
document.getElementById('logout').addEventListener('click', async () => {
  try { await api.logout(); } catch { /* the session is gone either way */ }
  session = null;
  showLogin();
});

api.session().then(started).catch((error) => {
  if (error instanceof ApiError && error.status === 401) showLogin();
  else mount(main, h('p', { class: 'error' }, error.message));
});
