// The REST client the pages share: the bearer token of this tab's session, JSON in and out,
// and errors in the API's one shape ({error, field, reason}) turned into exceptions a page
// can show as they are.

export function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("ioc-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("ioc-token");
}

export function forgetToken() { sessionStorage.removeItem("ioc-token"); }

export function setToken(t) { sessionStorage.setItem("ioc-token", t.trim()); }

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.reason ? body.reason : `HTTP ${status}`);
    this.status = status;
    this.field = body && body.field;
    this.code = body && body.error;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

// A media ticket for an <img> or a player, which cannot send the bearer header: the server
// checks the access matrix and audits, and answers {url, expires_at}. `use` is "snapshot" or
// "live_view"; a ticket is good once, shortly.
export function mediaTicket(camera, use = "snapshot", format) {
  const body = format ? { use, format } : { use };
  return api(`/api/v1/cameras/${encodeURIComponent(camera)}/tickets`, { method: "POST", body });
}
