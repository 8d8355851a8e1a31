// The websocket client the pages share (PROTOCOL.md): one connection, named subscriptions,
// snapshot then deltas, `resume` from the last seq after a reconnect (a new epoch means a
// fresh snapshot), backoff while the server is away, and the token's expiry (close 4001)
// renewed once, then reported. The socket opens with the session cookie, or for a pasted
// token with a single-use ticket (POST /ws/tickets), so that no token is ever in a URL.

import { api, token, signedIn, renewSession } from "./api.js";

// A websocket of this session: the session cookie goes with it by itself; a pasted token
// is exchanged for a fresh single-use ticket first. Throws the API's error (status 401: the
// token is no good any more) when no ticket is given.
export async function openSocket() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  if (!token()) return new WebSocket(`${proto}://${location.host}/ws`);
  const t = await api("/ws/tickets", { method: "POST" });
  return new WebSocket(`${proto}://${location.host}${t.url}`);
}

export class Feed {
  // onMessage(m) gets every server message; onState(state) "open" | "retrying" | "expired".
  constructor(onMessage, onState) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.subs = new Map();     // id -> {layers, filter, bbox}
    this.seq = new Map();      // id -> last seq seen
    this.epoch = null;
    this.retry = 500;
    this.ws = null;
  }

  subscribe(id, spec) {
    this.subs.set(id, spec);
    this.seq.delete(id);
    this.send({ op: "subscribe", id, ...spec });
  }

  send(msg) { if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(msg)); }

  async connect() {
    if (!signedIn()) { this.onState("expired"); return; }
    let ws;
    try {
      ws = this.ws = await openSocket();
    } catch (e) {
      if (e.status === 401) { this.onState("expired"); return; }
      this.onState("retrying");
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
      return;
    }
    ws.onopen = () => { this.retry = 500; this.onState("open"); };
    ws.onmessage = ev => {
      const m = JSON.parse(ev.data);
      if (m.op === "hello") {
        const resume = this.epoch && m.epoch === this.epoch;
        this.epoch = m.epoch;
        for (const [id, spec] of this.subs) {
          const since = this.seq.get(id);
          this.send(resume && since ? { op: "resume", id, since, epoch: m.epoch, ...spec } : { op: "subscribe", id, ...spec });
        }
      }
      if ((m.op === "snapshot" || m.op === "delta") && m.sub) this.seq.set(m.sub, m.seq);
      this.onMessage(m);
    };
    ws.onclose = ev => {
      if (ev.code === 4001) { renewSession().then(ok => ok ? this.connect() : this.onState("expired")); return; }
      this.onState("retrying");
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }
}
