// A camera tile the pages share (the police camera map's multi-view, the wall's mosaic): the
// latest snapshot, fetched again every `period` seconds as the viewer, or live MJPEG
// through a short media ticket; the camera's name, its state and the age of its picture. A
// camera that is not online shows its state and since when over a dimmed last picture, never
// a frozen image passed off as live. close() drops the stream, which frees the worker's
// viewer slot.

import { mediaTicket, authHeaders } from "./api.js";
import { esc, spanVi, vnTime } from "./format.js";

export const STATE_VI = {
  online: "Trực tuyến", stalled: "Đứng hình", offline: "Mất kết nối",
  connecting: "Đang kết nối", unknown: "Không rõ trạng thái",
};
export const STATE_COLOR = {
  online: "#2ecc71", stalled: "#f39c12", offline: "#e74c3c", connecting: "#3498db", unknown: "#95a5a6",
};

export function stateVi(p) { return p.state_vi || STATE_VI[p.state] || STATE_VI.unknown; }

export class CameraTile {
  // el: an empty element to fill; id: the camera's local id; props: its record's properties.
  constructor(el, id, props, { period = 5, onClose } = {}) {
    this.el = el;
    this.id = id;
    this.props = props;
    this.period = period;
    this.onClose = onClose;
    this.mode = "snapshot";
    this.captured = null;   // capture time of the picture shown
    this.note = "";
    el.classList.add("cam-tile");
    el.dataset.camera = id;
    el.innerHTML = `<img alt=""><div class="cam-over"><b class="cam-name"></b>` +
      `<span class="cam-state"></span><span class="cam-age"></span></div>` +
      `<div class="cam-buttons"><button type="button" class="cam-live">Trực tiếp</button>` +
      `<button type="button" class="cam-close" aria-label="Đóng">×</button></div>`;
    this.img = el.querySelector("img");
    el.querySelector(".cam-live").onclick = () => { clearTimeout(this.retry); return this.mode === "live" ? this.snapshotMode() : this.live(); };
    el.querySelector(".cam-close").onclick = () => { this.close(); if (this.onClose) this.onClose(this); };
    this.clock = setInterval(() => this.render(), 1000);
    this.snapshotMode();
  }

  update(props) {
    const was = this.props.state, shot = this.props.last_snapshot;
    this.props = props;
    // A camera back online gets a fresh picture at once, and so does one whose worker took a
    // new snapshot (the tile then follows the snapshot period, not its own timer).
    const fresh = props.last_snapshot && props.last_snapshot !== shot;
    if (this.mode === "snapshot" && ((was !== "online" && props.state === "online") || fresh)) this.refresh();
    this.render();
  }

  // Fetches the snapshot now and starts the period over: the timer only fires when the
  // camera's record has said nothing for a whole period, so a tile never fetches twice.
  refresh() {
    this.fetchSnapshot();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.fetchSnapshot(), this.period * 1000);
  }

  render() {
    const p = this.props, online = p.state === "online";
    this.el.querySelector(".cam-name").textContent = p.name || this.id;
    const since = p.since ? ` từ ${vnTime(p.since)} (${spanVi(Date.now() - Date.parse(p.since))})` : "";
    const st = this.el.querySelector(".cam-state");
    st.textContent = online ? stateVi(p) : stateVi(p) + since;
    st.style.color = STATE_COLOR[p.state] || STATE_COLOR.unknown;
    const age = this.el.querySelector(".cam-age");
    if (this.mode === "live") age.textContent = "● trực tiếp";
    else if (this.captured) age.textContent = `${this.liveNote ? this.liveNote + " · " : ""}ảnh lúc ${vnTime(this.captured)} · ${spanVi(Date.now() - this.captured)} trước`;
    else age.textContent = this.note || "chưa có ảnh";
    this.el.classList.toggle("down", !online);
    this.el.classList.toggle("live", this.mode === "live");
    this.el.dataset.state = p.state || "unknown";
    this.el.querySelector(".cam-live").textContent = this.mode === "live" ? "Ảnh chụp" : "Trực tiếp";
  }

  async fetchSnapshot() {
    if (this.closed || this.mode !== "snapshot") return;
    try {
      const r = await fetch(`/api/v1/cameras/${encodeURIComponent(this.id)}/snapshot.jpg`, {
        headers: authHeaders(),
      });
      if (this.closed || this.mode !== "snapshot") return;
      if (r.ok) {
        const blob = await r.blob();
        // A switch to live while the picture came must not be undone by it.
        if (this.closed || this.mode !== "snapshot") return;
        const url = URL.createObjectURL(blob);
        if (this.img.src.startsWith("blob:")) URL.revokeObjectURL(this.img.src);
        this.img.src = url;
        const t = Date.parse(r.headers.get("x-capture-time"));
        this.captured = Number.isNaN(t) ? Date.now() : t;
        this.note = "";
      } else if (r.status === 403) {
        this.note = "không có quyền xem hình camera này";
      } else {
        const b = await r.json().catch(() => ({}));
        this.note = `không có hình (${esc(STATE_VI[b.state] || b.state || r.status)})`;
      }
    } catch (e) {
      this.note = "mất kết nối tới máy chủ";
    }
    this.render();
  }

  snapshotMode() {
    this.stopStream();
    this.mode = "snapshot";
    this.refresh();
    this.render();
  }

  async live() {
    clearInterval(this.timer);
    // No snapshot is fetched while the ticket comes.
    this.mode = "opening";
    this.liveNote = "";
    try {
      const t = await mediaTicket(this.id, "live_view");
      if (this.closed || this.mode !== "opening") return;
      this.mode = "live";
      // A dropped stream (the worker restarting its decoder, a proxy timing out) is opened
      // again with a fresh ticket, a few times, before the tile settles for snapshots.
      this.img.onerror = () => {
        this.liveNote = "hình trực tiếp đã ngắt";
        this.snapshotMode();
        const now = Date.now();
        this.liveDrops = (this.liveDrops || []).filter(t => now - t < 60e3).concat(now);
        if (this.liveDrops.length <= 3) this.retry = setTimeout(() => { if (!this.closed && this.mode === "snapshot") this.live(); }, 1500);
      };
      if (this.img.src.startsWith("blob:")) URL.revokeObjectURL(this.img.src);
      this.img.src = t.url;
    } catch (e) {
      this.liveNote = e.status === 403 ? "không có quyền xem trực tiếp" : `không mở được hình trực tiếp: ${e.message}`;
      this.snapshotMode();
    }
    this.render();
  }

  stopStream() {
    this.img.onerror = null;
    if (this.mode === "live") { this.img.removeAttribute("src"); this.captured = null; }
  }

  close() {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.timer);
    clearInterval(this.clock);
    this.stopStream();
    if (this.img.src.startsWith("blob:")) URL.revokeObjectURL(this.img.src);
    this.img.removeAttribute("src");
    this.el.remove();
  }
}
