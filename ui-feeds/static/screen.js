// One screen of a video-wall layout (`/wall/{layout}?screen=N`): the layout's record on the
// `layouts` layer says which panels this screen shows and where; the panels are drawn from
// one websocket (alerts, cameras, reports, stations, units) and camera pictures come through
// the shared camera tiles. An edit of the layout rebuilds the screen; a focus pans its maps
// and fills its mosaics with the cameras nearest the incident that this login may see. A
// lost connection is shown on every panel, never hidden.

import { api, role, signedIn, sessionReady, setToken, offerLogin, onSessionLost } from "./js/api.js";
import { Feed } from "./js/feed.js";
import { esc, spanVi, vnTime } from "./js/format.js";
import { CameraTile, STATE_COLOR } from "./js/camera_tile.js";
import { baseMap, unitStyle, stationColor, stationWarns } from "./js/map.js";

const L = window.L;
const layoutId = decodeURIComponent(location.pathname.split("/").pop());
const screenNo = Math.max(0, Number(new URLSearchParams(location.search).get("screen") || 0) | 0);
// How often a snapshot tile fetches again when its camera says nothing new, seconds.
const SNAPSHOT_PERIOD_S = 10;
// Station data older than this is marked stale on the clock, the maps and the KPI strip, ms.
const STATION_STALE_MS = 15 * 60e3;

const data = {
  alerts: new Map(), cameras: new Map(), reports: new Map(), stations: new Map(), units: new Map(),
  heard: {},          // layer -> when this screen last heard of it (ms)
};
const screen = { layout: null, shape: null, panels: [], focusAt: null, conn: "connecting", lastHeard: null };
window.iocScreen = { data, screen, tiles: () => screen.panels.flatMap(p => p.tiles ? p.tiles() : []) };


// ---------------------------------------------------------------- the feed

const feed = new Feed(onMessage, onConn);
let subscribed = false;

function onConn(s) {
  screen.conn = s;
  if (s === "expired") askLogin();
  showStale();
}

function onMessage(m) {
  screen.lastHeard = Date.now();
  if (m.op === "hello") {
    screen.conn = "open"; showStale();
    if (!subscribed) {
      subscribed = true;
      feed.subscribe("layout", { layers: ["layouts"] });
      const want = ["alerts", "cameras", "reports", "salinity", "air_quality"].filter(l => m.layers.includes(l));
      if (want.length) feed.subscribe("live", { layers: want });
      if (m.layers.includes("units")) feed.subscribe("units", { layers: ["units"] });
    }
    return;
  }
  if (m.op === "snapshot") {
    if (m.sub === "live") for (const k of ["alerts", "cameras", "reports", "stations"]) data[k].clear();
    if (m.sub === "units") data.units.clear();
    for (const f of m.features.features) upsert(f);
    if (m.sub === "layout" && !m.features.features.some(f => f.id === "layout:" + layoutId)) layoutGone();
  } else if (m.op === "delta") {
    for (const f of m.upsert) upsert(f);
    for (const id of m.remove) remove(id);
  } else if (m.op === "error") {
    console.warn("feed error", m.field, m.reason);
  }
  dirty();
}

const COLLECTION = { alerts: "alerts", cameras: "cameras", reports: "reports", salinity: "stations", air_quality: "stations", units: "units" };

function upsert(f) {
  const layer = f.properties.layer;
  data.heard[layer] = Date.now();
  if (layer === "layouts") { if (f.id === "layout:" + layoutId) layoutChanged(f.properties); return; }
  const c = COLLECTION[layer];
  if (!c) return;
  if (c === "alerts" && f.properties.state === "cleared") { data.alerts.delete(f.id); return; }
  data[c].set(f.id, f);
  if (c === "cameras") for (const p of screen.panels) if (p.camera) p.camera(f);
}

function remove(id) {
  if (id === "layout:" + layoutId) { layoutGone(); return; }
  for (const c of ["alerts", "cameras", "reports", "stations", "units"]) data[c].delete(id);
}

// Panels redraw at most four times a second, whatever the rate of deltas.
let pending = false;
function dirty() {
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; for (const p of screen.panels) if (p.draw) p.draw(); }, 250);
}
setInterval(showStale, 1000);

// A lost connection on every panel; otherwise a panel whose own data is old says so.
function showStale() {
  const down = screen.conn !== "open";
  const text = screen.conn === "expired" ? "Phiên đăng nhập đã hết hạn" :
    (screen.lastHeard ? `Mất kết nối · tin cuối lúc ${vnTime(screen.lastHeard)}` : "Chưa kết nối được máy chủ");
  const own = new Map(screen.panels.filter(p => p.el && p.stale).map(p => [p.el, p.stale()]));
  for (const el of document.querySelectorAll(".panel")) {
    const note = down ? text : own.get(el) || "";
    el.classList.toggle("stale", !!note);
    el.dataset.stale = note;
  }
  const st = document.getElementById("status");
  st.textContent = down ? text + " — đang kết nối lại…" : "";
  st.classList.toggle("show", down);
  for (const p of screen.panels) if (p.tick) p.tick();
}

// ---------------------------------------------------------------- the layout

function layoutChanged(props) {
  const shape = JSON.stringify(props.screens && props.screens[screenNo]);
  screen.layout = props;
  document.title = `IOC – ${props.name} – màn hình ${screenNo + 1}`;
  if (shape !== screen.shape) { screen.shape = shape; build(); }
  const f = props.focus || null;
  const at = f ? f.at : null;
  if (at !== screen.focusAt) { screen.focusAt = at; for (const p of screen.panels) if (p.focus) p.focus(f); }
  banner(f);
}

function layoutGone() {
  screen.layout = null; screen.shape = null;
  teardown();
  const root = document.getElementById("screen");
  root.innerHTML = `<section class="panel"><h2>Bố cục ${esc(layoutId)}</h2><div class="body cam-empty">` +
    `Chưa có bố cục này (hoặc đã bị xoá). Màn hình sẽ tự hiện khi bố cục được lưu.</div></section>`;
}

function teardown() {
  for (const p of screen.panels) if (p.close) p.close();
  screen.panels = [];
}

function build() {
  teardown();
  const root = document.getElementById("screen");
  root.innerHTML = "";
  const s = screen.layout.screens[screenNo];
  if (!s) {
    root.innerHTML = `<section class="panel"><h2>${esc(screen.layout.name)}</h2><div class="body cam-empty">` +
      `Bố cục này có ${screen.layout.screens.length} màn hình; không có màn hình số ${screenNo}.</div></section>`;
    return;
  }
  // Grid sizes through the CSSOM: the CSP refuses style attributes in markup.
  root.style.gridTemplateColumns = `repeat(${s.columns}, 1fr)`;
  root.style.gridTemplateRows = `repeat(${s.rows}, 1fr)`;
  for (const p of s.panels) {
    const el = document.createElement("section");
    el.className = `panel panel-${p.kind}`;
    el.dataset.kind = p.kind;
    const [c, r, w, h] = p.at;
    el.style.gridColumn = `${c + 1} / span ${w}`;
    el.style.gridRow = `${r + 1} / span ${h}`;
    el.innerHTML = `<h2></h2><div class="focus-banner"></div><div class="body"></div>`;
    root.append(el);
    const make = PANELS[p.kind];
    // One panel that fails to build says so and leaves the others standing.
    try {
      if (make) screen.panels.push(Object.assign(make(el, p), { el }));
    } catch (e) {
      console.error("panel", p.kind, e);
      el.querySelector(".body").textContent = `Không dựng được ô ${p.kind}: ${e.message}`;
    }
  }
  showStale();
  dirty();
  const f = screen.layout.focus;
  if (f) { for (const p of screen.panels) if (p.focus) p.focus(f); }
  banner(f);
}

function banner(f) {
  for (const el of document.querySelectorAll(".panel")) {
    el.classList.toggle("focused", !!f);
    const b = el.querySelector(".focus-banner");
    if (!b) continue;
    b.textContent = f ? `Tập trung: ${f.label || `${f.lat.toFixed(4)}, ${f.lon.toFixed(4)}`} · ${f.by} · ${vnTime(f.at)}` : "";
    if (f && role() === "operator" && el.dataset.kind === "map") {
      const off = document.createElement("button");
      off.type = "button"; off.textContent = "Thôi tập trung";
      off.onclick = () => api(`/api/v1/layouts/${encodeURIComponent(layoutId)}/focus`, { method: "DELETE" }).catch(e => alert(e.message));
      b.append(" ", off);
    }
  }
}

// Focuses the whole layout (every screen, through the server) on a place.
function focusHere(lon, lat, label) {
  return api(`/api/v1/layouts/${encodeURIComponent(layoutId)}/focus`, { method: "POST", body: { lon, lat, label, radius_m: 3000 } })
    .catch(e => alert(`Không tập trung được: ${e.message}`));
}

function focusButton(li, point, label) {
  if (!point || role() !== "operator") return;
  const b = document.createElement("button");
  b.type = "button"; b.textContent = "Tập trung camera gần nhất";
  b.onclick = () => focusHere(point[0], point[1], label);
  li.append(document.createElement("br"), b);
}

function pointOf(f) {
  const g = f.geometry;
  return g && g.type === "Point" && (g.coordinates[0] || g.coordinates[1]) ? g.coordinates : null;
}

// ---------------------------------------------------------------- panels

const SEVERITY = { critical: 0, warning: 1, info: 2 };
const SEVERITY_VI = { critical: "khẩn", warning: "cảnh báo", info: "thông tin" };

function mapPanel(el, spec) {
  el.querySelector("h2").textContent = "Bản đồ";
  const body = el.querySelector(".body");
  body.classList.add("map-body");
  const map = baseMap(body, null);
  const units = L.layerGroup().addTo(map), points = L.layerGroup().addTo(map), focusLayer = L.layerGroup().addTo(map);
  let framed = false, drawnUnits = 0;
  const home = () => {
    if (spec.bbox) map.fitBounds([[spec.bbox[1], spec.bbox[0]], [spec.bbox[3], spec.bbox[2]]]);
    else if (units.getLayers().length) map.fitBounds(L.featureGroup(units.getLayers()).getBounds(), { padding: [10, 10] });
    else map.setView([9.8, 105.6], 9);
  };
  home();
  const want = new Set(spec.layers && spec.layers.length ? spec.layers : ["salinity", "air_quality", "alerts", "cameras", "units", "reports"]);
  return {
    draw() {
      if (want.has("units") && drawnUnits !== data.units.size) {
        units.clearLayers();
        for (const f of data.units.values()) L.geoJSON(f, { style: unitStyle(f.properties, map), interactive: false }).addTo(units);
        drawnUnits = data.units.size;
        if (!framed && !screen.layout.focus) { framed = true; home(); }
      }
      points.clearLayers();
      if (want.has("cameras")) for (const f of data.cameras.values()) {
        const p = pointOf(f); if (!p) continue;
        L.circleMarker([p[1], p[0]], { radius: 4, weight: 1, color: "#111", fillOpacity: 0.9, fillColor: STATE_COLOR[f.properties.state] || STATE_COLOR.unknown })
          .bindTooltip(esc(f.properties.name)).addTo(points);
      }
      for (const f of data.stations.values()) {
        if (!want.has(f.properties.layer)) continue;
        const p = pointOf(f); if (!p) continue;
        L.circleMarker([p[1], p[0]], { radius: 7, weight: 2, color: "#0b1420", fillOpacity: 0.95, fillColor: stationColor(f.properties) })
          .bindTooltip(esc(f.properties.name)).addTo(points);
      }
      if (want.has("reports")) for (const f of data.reports.values()) {
        const p = pointOf(f); if (!p) continue;
        L.circleMarker([p[1], p[0]], { radius: 5, weight: 2, color: f.properties.overdue ? "#e74c3c" : "#5dade2", fill: false }).addTo(points);
      }
      if (want.has("alerts")) for (const f of data.alerts.values()) {
        const p = pointOf(f); if (!p) continue;
        const color = f.properties.severity === "critical" ? "#ff4d4d" : "#f39c12";
        L.circleMarker([p[1], p[0]], { radius: 14, weight: 3, color, fill: false }).bindTooltip(esc(f.properties.title)).addTo(points);
      }
    },
    focus(f) {
      focusLayer.clearLayers();
      if (!f) { home(); return; }
      map.setView([f.lat, f.lon], 16);
      L.circle([f.lat, f.lon], { radius: f.radius_m, color: "#c39bd3", weight: 2, fillOpacity: 0.05, className: "map-focus" }).addTo(focusLayer);
      L.circleMarker([f.lat, f.lon], { radius: 10, color: "#c39bd3", weight: 4, fill: false }).addTo(focusLayer);
    },
    map,
    stale: stationsStale,
    close() { map.remove(); },
  };
}

function cameraProps(id) {
  const f = data.cameras.get("camera:" + id);
  return f ? f.properties : { name: id, state: "unknown", state_vi: "Không có trong bản đồ của bạn" };
}

function mosaicPanel(el, spec) {
  const h2 = el.querySelector("h2");
  const grid = document.createElement("div");
  grid.className = "mosaic";
  grid.style.gridTemplateColumns = `repeat(${spec.size}, 1fr)`;
  grid.style.gridTemplateRows = `repeat(${spec.size}, 1fr)`;
  el.querySelector(".body").append(grid);
  let tiles = [], title = "", generation = 0;
  const fill = (ids, live, what) => {
    for (const t of tiles) t.close();
    tiles = [];
    grid.innerHTML = "";
    title = what;
    for (let i = 0; i < spec.size * spec.size; i++) {
      const cell = document.createElement("div");
      grid.append(cell);
      const id = ids[i];
      if (!id) { cell.className = "cam-empty"; cell.textContent = "ô trống · chờ tập trung"; continue; }
      const t = new CameraTile(cell, id, cameraProps(id), { period: SNAPSHOT_PERIOD_S, onClose: () => { tiles = tiles.filter(x => x !== t); } });
      tiles.push(t);
      if (live.includes(id)) t.live();
    }
    h2.textContent = `${title} · ${tiles.length} camera`;
  };
  const own = () => fill(spec.cameras || [], spec.live || [], "Camera");
  own();
  return {
    tiles: () => tiles,
    camera(f) { for (const t of tiles) if ("camera:" + t.id === f.id) t.update(f.properties); },
    async focus(f) {
      // Only the latest focus fills the mosaic: a release or a new focus that comes while
      // the nearest cameras are being asked for wins over the answer.
      const mine = ++generation;
      if (!f) { own(); return; }
      h2.textContent = "Đang tìm camera gần nhất…";
      try {
        const v = await api(`/api/v1/cameras/near?lon=${f.lon}&lat=${f.lat}&radius_m=${f.radius_m}&limit=${spec.size * spec.size}`);
        if (mine !== generation) return;
        fill(v.cameras.map(c => c.id), [], `Gần ${f.label || "điểm tập trung"}`);
        if (!v.cameras.length) h2.textContent = `Không có camera nào trong ${Math.round(f.radius_m)} m mà màn hình này được xem`;
      } catch (e) {
        if (mine === generation) h2.textContent = `Không tìm được camera gần: ${e.message}`;
      }
    },
    close() { for (const t of tiles) t.close(); tiles = []; },
  };
}

function tourPanel(el, spec) {
  const h2 = el.querySelector("h2");
  const body = el.querySelector(".body");
  let tile = null, at = -1, timer = null;
  const list = () => spec.cameras && spec.cameras.length ? spec.cameras
    : [...data.cameras.values()].filter(f => f.properties.group === spec.group).map(f => f.id.slice("camera:".length)).sort();
  const next = () => {
    const ids = list();
    if (tile) { tile.close(); tile = null; }
    if (!ids.length) { h2.textContent = "Tuần tra camera · chưa có camera"; return; }
    at = (at + 1) % ids.length;
    const cell = document.createElement("div");
    cell.className = "tour-cell";
    body.append(cell);
    tile = new CameraTile(cell, ids[at], cameraProps(ids[at]), { period: SNAPSHOT_PERIOD_S });
    h2.textContent = `Tuần tra ${at + 1}/${ids.length} · mỗi ${spec.every_s} giây`;
  };
  timer = setInterval(next, spec.every_s * 1000);
  setTimeout(next, 0);
  return {
    tiles: () => (tile ? [tile] : []),
    camera(f) { if (tile && "camera:" + tile.id === f.id) tile.update(f.properties); },
    draw() { if (!tile && list().length) next(); },
    close() { clearInterval(timer); if (tile) tile.close(); tile = null; },
  };
}

// A panel listing `items()` (each {f, p}: the feature and its properties), titled by
// `title(items)`, each line filled by `line(li, item)`, with `empty` when there is none.
function listPanel(el, { items, title, line, empty }) {
  const h2 = el.querySelector("h2");
  const ul = document.createElement("ul");
  ul.className = "list";
  el.querySelector(".body").append(ul);
  return {
    draw() {
      const all = items();
      h2.textContent = title(all);
      ul.innerHTML = "";
      for (const item of all.slice(0, 40)) {
        const li = document.createElement("li");
        line(li, item);
        ul.append(li);
      }
      if (!all.length) ul.innerHTML = `<li class="small">${esc(empty)}</li>`;
    },
  };
}

const rows = m => [...m.values()].map(f => ({ f, p: f.properties }));

function alertsPanel(el) {
  return listPanel(el, {
    items: () => rows(data.alerts).sort((x, y) => (SEVERITY[x.p.severity] ?? 3) - (SEVERITY[y.p.severity] ?? 3) ||
      String(y.p.raised_at).localeCompare(String(x.p.raised_at))),
    title: all => `Cảnh báo đang có · ${all.length}`,
    line(li, { f, p: a }) {
      li.className = `${a.state} ${a.severity}`;
      li.innerHTML = `<b>${esc(a.title)}</b><br>${esc(a.entity_name || "")} <span class="small">· ${esc(SEVERITY_VI[a.severity] || a.severity)}` +
        ` · ${esc(a.state_vi || a.state)} · ${esc(vnTime(a.raised_at))}</span>`;
      focusButton(li, pointOf(f), a.title);
    },
    empty: "Không có cảnh báo nào.",
  });
}

function reportsPanel(el) {
  return listPanel(el, {
    items: () => rows(data.reports).filter(x => x.p.status !== "closed")
      .sort((x, y) => (y.p.overdue === true) - (x.p.overdue === true) || String(y.p.requested).localeCompare(String(x.p.requested))),
    title: all => `Phản ánh đang xử lý · ${all.length} · quá hạn ${all.filter(x => x.p.overdue).length}`,
    line(li, { f, p: r }) {
      li.className = r.overdue ? "overdue" : "";
      li.innerHTML = `<b>${esc(r.name)}</b>${r.overdue ? ' <b class="small">QUÁ HẠN</b>' : ""}<br>` +
        `<span class="small">${esc(r.address || (r.unit_names || []).join(", "))} · ${esc(r.agency_name || "")} · ${esc(r.state_vi || r.status)}` +
        ` · ${esc(spanVi(Date.now() - Date.parse(r.requested)))} trước</span>`;
      focusButton(li, pointOf(f), r.name);
    },
    empty: "Không có phản ánh nào đang mở.",
  });
}

// Today in Vietnam, as YYYY-MM-DD.
function vnDay(ts) { return new Date(ts).toLocaleDateString("sv-SE", { timeZone: "Asia/Ho_Chi_Minh" }); }

function kpiPanel(el) {
  el.querySelector("h2").textContent = "Số liệu trong ngày";
  const box = document.createElement("div");
  box.className = "kpi";
  el.querySelector(".body").append(box);
  const cell = (value, label, cls = "") => `<div class="${cls}" data-kpi="${esc(label)}"><b>${esc(value)}</b><span>${esc(label)}</span></div>`;
  // The leaders' indicators for the province, from the dashboard, once a minute (a login
  // that may not read them sees the strip without them).
  let board = null;
  const readBoard = () => api("/api/v1/dashboard").then(v => { board = v; dirty(); }).catch(() => { board = null; });
  readBoard();
  const timer = setInterval(readBoard, 60e3);
  return {
    close() { clearInterval(timer); },
    stale: stationsStale,
    draw() {
      const today = vnDay(Date.now());
      const reports = [...data.reports.values()].map(f => f.properties);
      const received = reports.filter(r => r.requested && vnDay(r.requested) === today).length;
      const overdue = reports.filter(r => r.overdue && r.status !== "closed").length;
      const sev = { critical: 0, warning: 0, info: 0 };
      for (const f of data.alerts.values()) sev[f.properties.severity] = (sev[f.properties.severity] || 0) + 1;
      const cams = [...data.cameras.values()].map(f => f.properties);
      const online = cams.filter(c => c.state === "online").length;
      const stations = [...data.stations.values()].map(f => f.properties);
      const warn = stations.filter(stationWarns).length;
      box.innerHTML =
        cell(received, "Phản ánh nhận hôm nay") +
        cell(overdue, "Phản ánh quá hạn", overdue ? "bad" : "good") +
        cell(sev.critical, "Cảnh báo khẩn", sev.critical ? "bad" : "good") +
        cell(sev.warning + sev.info, "Cảnh báo khác", sev.warning ? "warn" : "") +
        cell(`${online}/${cams.length}`, "Camera trực tuyến", cams.length && online < cams.length ? "warn" : "good") +
        cell(`${warn}/${stations.length}`, "Trạm ở mức cảnh báo", warn ? "bad" : "good") +
        (board ? cell(board.attention.missed.length, `Chỉ tiêu không đạt · ${board.unit_name || ""}`, board.attention.missed.length ? "bad" : "good") : "");
    },
  };
}

function clockPanel(el) {
  el.querySelector("h2").textContent = "Thời gian · độ mới dữ liệu";
  const box = document.createElement("div");
  box.className = "clock";
  el.querySelector(".body").append(box);
  const newest = (m, pick) => { let t = 0; for (const f of m.values()) { const v = Date.parse(pick(f.properties)); if (v > t) t = v; } return t || null; };
  const render = () => {
    const now = Date.now();
    const rows = [
      ["Trạm đo (số liệu mới nhất)", newest(data.stations, p => p.updated), STATION_STALE_MS],
      ["Camera (ảnh mới nhất)", newest(data.cameras, p => p.last_snapshot), 5 * 60e3],
      ["Cảnh báo (tin mới nhất)", data.heard.alerts || null, null],
      ["Phản ánh (tin mới nhất)", data.heard.reports || null, null],
    ];
    box.innerHTML = `<div class="time">${esc(new Date(now).toLocaleTimeString("vi-VN", { timeZone: "Asia/Ho_Chi_Minh" }))}</div>` +
      `<div class="date">${esc(new Date(now).toLocaleDateString("vi-VN", { timeZone: "Asia/Ho_Chi_Minh", weekday: "long", day: "2-digit", month: "2-digit", year: "numeric" }))}</div>` +
      `<table>${rows.map(([what, t, limit]) => `<tr><td>${esc(what)}</td><td class="${t && limit && now - t > limit ? "old" : ""}">` +
        `${t ? esc(spanVi(now - t)) + " trước" : "chưa có"}</td></tr>`).join("")}` +
      `<tr><td>Kết nối</td><td class="${screen.conn === "open" ? "" : "old"}">${screen.conn === "open" ? "trực tuyến" : "mất kết nối"}</td></tr></table>`;
  };
  render();
  return { tick: render };
}

// "Số liệu trạm cũ: 20 phút" when the newest station reading is older than the limit.
function stationsStale() {
  let newest = 0;
  for (const f of data.stations.values()) { const t = Date.parse(f.properties.updated); if (t > newest) newest = t; }
  const age = Date.now() - newest;
  return newest && age > STATION_STALE_MS ? `Số liệu trạm cũ: ${spanVi(age)}` : null;
}

const PANELS = { map: mapPanel, mosaic: mosaicPanel, tour: tourPanel, alerts: alertsPanel, reports: reportsPanel, kpi: kpiPanel, clock: clockPanel };

// ---------------------------------------------------------------- start

document.getElementById("login-form").onsubmit = ev => {
  ev.preventDefault();
  setToken(document.getElementById("login-token").value);
  document.getElementById("login").classList.remove("show");
  feed.connect();
};
function askLogin() {
  offerLogin(document.getElementById("login-form"));
  document.getElementById("login").classList.add("show");
}
onSessionLost(askLogin);
sessionReady.then(() => { if (signedIn()) feed.connect(); else askLogin(); });
