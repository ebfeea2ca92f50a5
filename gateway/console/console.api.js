// The admin API, as the console calls it: same origin, the session cookie, and the session's CSRF
// token on every change. A 401 anywhere brings the login form back.

let csrf = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function whenUnauthorized(handler) { onUnauthorized = handler; }

export function setCsrf(token) { csrf = token; }

async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    if (csrf) headers['x-knactor-csrf'] = csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch { value = { error: text }; }
  if (!response.ok) {
    if (response.status === 401 && path !== '/-/login') onUnauthorized();
    throw new ApiError(response.status, (value && value.error) || `${response.status} ${response.statusText}`);
  }
  return value;
}

export const api = {
  get: (path) => call('GET', path),
  post: (path, body) => call('POST', path, body),
  session: () => call('GET', '/-/session'),
  login: (token) => call('POST', '/-/login', { token }),
  logout: () => call('POST', '/-/logout'),
  topology: () => call('GET', '/-/topology'),
  stats: () => call('GET', '/-/stats'),
  node: () => call('GET', '/-/node'),
  event: (id, source) => call('GET', `/-/events/${encodeURIComponent(id)}` + (source ? `?source=${encodeURIComponent(source)}` : '')),
  parked: (broker, max = 200) => call('GET', `/-/brokers/${broker}/parked?max=${max}`),
  redrive: (broker, { trigger, events } = {}) => call('POST',
    `/-/brokers/${broker}/parked/redrive` + (trigger ? `?trigger=${encodeURIComponent(trigger)}` : ''),
    events ? { events } : undefined),
  tailUrl: (broker) => `/-/brokers/${broker}/tail`,
};
