// The console's client of the JSON API: the signed-in session (kept in sessionStorage
// only: never in a URL, never in storage that outlives the tab), authenticated requests, and errors.

const STORE = "ssv.console";

/** The signed-in session, or null. */
export function session() {
  const raw = sessionStorage.getItem(STORE);
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch {
    sessionStorage.removeItem(STORE);
    return null;
  }
}

/** Keeps the session for this tab. */
export function saveSession(value) {
  sessionStorage.setItem(STORE, JSON.stringify(value));
}

/** Forgets everything the console kept. */
export function signOut() {
  sessionStorage.clear();
}

/** Whether the session's tenant key has `scope`. */
export function hasScope(scope) {
  const s = session();
  return !!(s && s.tenantKey && Array.isArray(s.scopes) && s.scopes.includes(scope));
}

/** An error answer of the API (or the network). */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }

  /** One line for the page: what failed and why. */
  describe() {
    if (this.status === 0) return `Network error: ${this.message}`;
    const field = this.field ? ` (field ${this.field})` : "";
    return `${this.status} ${this.code}: ${this.message}${field}`;
  }
}

/** The headers of a request made with the tenant key (`as = "tenant"`) or the admin key. */
export function authHeaders(as, keys = session()) {
  const headers = {};
  if (!keys) return headers;
  if (as === "admin" && keys.adminKey) headers["x-admin-key"] = keys.adminKey;
  if (as === "tenant" && keys.tenantKey) headers.authorization = `Bearer ${keys.tenantKey}`;
  return headers;
}

/** Turns a non-2xx answer into an ApiError (the API's JSON error shape when present). */
export async function errorOf(response) {
  let code = "http_error";
  let message = response.statusText || "request failed";
  let field = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      field = body.error.field || null;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message, field);
}

/**
 * Calls the API. `opts.as`: "tenant" (default) or "admin"; `opts.method`, `opts.body`
 * (sent as JSON), `opts.signal`, `opts.keys` (other keys than the session's, at sign-in).
 * Resolves to the parsed JSON (null for an empty body); rejects with an ApiError.
 */
export async function api(path, opts = {}) {
  const headers = { accept: "application/json", ...authHeaders(opts.as || "tenant", opts.keys) };
  const init = { method: opts.method || "GET", headers, signal: opts.signal, cache: "no-store" };
  if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", e && e.message ? e.message : String(e));
  }
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A query string from an object (empty values left out), with its leading `?`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Whether an error is the abort of a page being left (not worth showing). */
export function aborted(e) {
  return e && e.name === "AbortError";
}
