// The /admin API with the operator's key. The key lives in this tab's session storage only.

const KEY_NAME = 'tunegw.dashboard.key';

/** The server's root: the dashboard is served at {root}/dashboard/. */
const ROOT = window.location.pathname.replace(/\/dashboard(\/.*)?$/, '');

/** A failed API call: the HTTP status and the server's message (OpenAI's error shape). */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code ?? null;
  }

  get isAuthentication() { return this.status === 401; }
  get isPermission() { return this.status === 403; }
}

export const session = {
  get key() { return window.sessionStorage.getItem(KEY_NAME); },
  set key(value) {
    if (value) window.sessionStorage.setItem(KEY_NAME, value);
    else window.sessionStorage.removeItem(KEY_NAME);
  },
  /** Who the key belongs to ({ name, roles }), set after sign-in. */
  identity: null,
  can(role) {
    const roles = this.identity?.roles ?? [];
    return roles.includes('admin') || roles.includes(role);
  },
};

/**
 * Calls the API; resolves to the parsed JSON body (null when empty), rejects with ApiError.
 * @param {string} path e.g. '/admin/adapters'
 * @param {{method?: string, body?: unknown, signal?: AbortSignal}} [options]
 */
export async function api(path, options = {}) {
  const { method = 'GET', body, signal } = options;
  const headers = { Accept: 'application/json' };
  if (session.key) headers.Authorization = `Bearer ${session.key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(ROOT + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, `The server could not be reached (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const message = data?.error?.message ?? `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, data?.error?.code);
  }
  return data;
}

/** Encodes one path segment (adapter names, ids). */
export const seg = (value) => encodeURIComponent(String(value));
