// The REST client the pages share: who this page is signed in as, JSON in and out, and
// errors in the API's one shape ({error, field, reason}) turned into exceptions a page can
// show as they are.
//
// A person signs in at the province's provider (or, in the demo, with one click per role):
// the session is an HTTP-only cookie this script never sees, renewed before it ends. A
// service account's token pasted into the login box (a wall screen's, say) is kept in this
// tab only and sent as a bearer header instead.

// ---------------------------------------------------------------- who is signed in

let info = { signed_in: false, login: [] };
let renewTimer = null;
const lostHandlers = [];

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

// Whether this page can call the API: a session cookie or a pasted token.
export function signedIn() { return !!token() || info.signed_in; }

// The caller's role, for what a page offers (the server decides what it may do).
export function role() {
  const t = token();
  if (t) {
    try { return JSON.parse(atob(t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).role; } catch (e) { return null; }
  }
  return info.signed_in ? info.role : null;
}

// The headers that say who calls: the pasted token, or (the cookie going by itself) the
// header a write with the session cookie must carry.
export function authHeaders() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : { "X-IOC-CSRF": "1" };
}

// Called when the session is gone for good (refused renewal): the page asks to sign in.
export function onSessionLost(f) { lostHandlers.push(f); }

function scheduleRenewal() {
  clearTimeout(renewTimer);
  if (!info.signed_in || !info.renewable || token()) return;
  const left = info.exp * 1000 - Date.now();
  // A minute before the end, or at four fifths of a short session.
  const wait = Math.max(1000, Math.min(left - 60000, left * 0.8));
  renewTimer = setTimeout(renewSession, wait);
}

// Renews the session now; true when it was.
export async function renewSession() {
  try {
    const r = await fetch("/auth/refresh", { method: "POST", headers: { "X-IOC-CSRF": "1" } });
    if (r.ok) {
      info.exp = (await r.json()).exp;
      scheduleRenewal();
      return true;
    }
  } catch (e) { /* the server is away: the feeds retry, the next call tells */ }
  info.signed_in = false;
  for (const f of lostHandlers) f();
  return false;
}

async function loadSession() {
  const ask = async () => {
    const r = await fetch("/auth/session", { headers: { "X-IOC-CSRF": "1" } });
    if (r.ok) info = await r.json();
  };
  try {
    await ask();
    // The access token ran out while the page was closed; the refresh token may renew it.
    if (!info.signed_in && info.renewable && !token()) {
      const r = await fetch("/auth/refresh", { method: "POST", headers: { "X-IOC-CSRF": "1" } });
      if (r.ok) await ask();
    }
  } catch (e) { /* no server: pages show their connection state */ }
  scheduleRenewal();
  return info;
}

// Settles once the page knows whether it is signed in.
export const sessionReady = loadSession();

// The login box's way in: a button to the provider (or the demo's role buttons) going back
// to this very page afterwards.
export function offerLogin(box) {
  const next = encodeURIComponent(location.pathname + location.search);
  let a = box.querySelector("a.sso");
  if (!a) {
    a = document.createElement("a");
    a.className = "sso";
    box.prepend(a);
  }
  const ways = info.login || [];
  a.hidden = !ways.length;
  a.href = `/auth/login?next=${next}`;
  a.textContent = ways.includes("provider") ? "Đăng nhập bằng tài khoản một cửa" : "Đăng nhập (bản trình diễn: chọn vai trò)";
}

// Signs out: the pasted token is forgotten, the session ended here and at the provider.
export async function signOut() {
  forgetToken();
  clearTimeout(renewTimer);
  try {
    const r = await fetch("/auth/logout", { method: "POST", headers: { "X-IOC-CSRF": "1" } });
    const j = r.ok ? await r.json() : {};
    if (j.end_session) { location.href = j.end_session; return; }
  } catch (e) { /* signed out here anyway */ }
  location.reload();
}

// ---------------------------------------------------------------- calls

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.reason ? body.reason : `HTTP ${status}`);
    this.status = status;
    this.field = body && body.field;
    this.code = body && body.error;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = authHeaders();
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
