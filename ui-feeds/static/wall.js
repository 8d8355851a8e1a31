// The reference wall page: one websocket, two subscriptions (unit boundaries everywhere;
// live stations within the visible map area), snapshot then deltas, resume on reconnect.
// The websocket is its own here (not the shared Feed): the wall moves its station
// subscription with the map and replays history on the same connection.

import { authHeaders, signedIn, sessionReady, renewSession, onSessionLost, offerLogin, setToken, signOut } from "./js/api.js";
import { openSocket } from "./js/feed.js";
import { esc, vnTime } from "./js/format.js";
import { baseMap, unitStyle, stationColor, viewBox, PM25 } from "./js/map.js";

const L = window.L;

// Built with the DOM, not markup: the page's CSP refuses style attributes in markup.
for (const [i, r] of PM25.entries()) {
  const row = document.createElement("div"), sw = document.createElement("span");
  sw.className = "sw";
  sw.style.background = r[1];
  row.append(sw, ` ${i ? PM25[i - 1][0] : 0}–${r[0] === Infinity ? "…" : r[0]} ${r[2]}`);
  document.getElementById("aq-legend").append(row);
}

const mode = document.body.dataset.mode;
const modeEl = document.getElementById("mode");
modeEl.textContent = mode === "demo" ? "DEMO: dữ liệu mô phỏng" : "trực tiếp";
modeEl.className = "pill " + (mode === "demo" ? "demo" : "ok");

// Where history comes from: a database, or (demo) a bounded memory that is lost on exit.
async function showHistoryNote() {
  const el = document.getElementById("history-note");
  try {
    const r = await fetch("/api/v1/history", { headers: authHeaders() });
    if (!r.ok) return;
    const h = await r.json();
    window.iocWall.history = h.backend;
    el.textContent = h.backend === "memory"
      ? "Lịch sử: chỉ giữ tạm trong bộ nhớ, mất khi tắt (history in memory only, lost on exit)."
      : h.backend === "none" ? "Lịch sử: không lưu (no history store)."
      : `Lịch sử: ${h.backend === "timescale" ? "TimescaleDB" : "PostgreSQL"}${h.ready ? "" : " — chưa sẵn sàng"}.`;
  } catch (e) { /* shown again on the next connect */ }
}

// The last 24 h of a station's main parameter as a min–max band and an average line.
async function loadChart(f, el) {
  const param = f.properties.kind === "salinity" ? "salinity" : "pm25";
  const q = `/api/v1/stations/${encodeURIComponent(f.id.replace(/^station:/, ""))}/series?param=${param}&max_points=120`;
  const r = await fetch(q, { headers: authHeaders() });
  if (!r.ok) { el.textContent = "không tải được lịch sử"; return; }
  const s = await r.json(), pts = s.points;
  if (!pts.length) { el.textContent = "chưa có lịch sử 24 giờ"; return; }
  // Salinity: the next 24 h forecast, dashed, after the history.
  let fc = [];
  if (param === "salinity") {
    const fr = await fetch(q.replace("/series?", "/forecast?").replace("max_points=120", "hours=24"), { headers: authHeaders() });
    if (fr.ok) fc = (await fr.json()).points.map(p => ({ t: p.t, avg: p.value, min: p.value, max: p.value }));
  }
  const W = 240, H = 70, t0 = Date.parse(s.from), t1 = fc.length ? Date.parse(fc[fc.length - 1].t) : Date.parse(s.to);
  const all = pts.concat(fc);
  const lo = Math.min(...all.map(p => p.min)), hi = Math.max(...all.map(p => p.max)) || 1;
  const x = t => ((Date.parse(t) - t0) / (t1 - t0) * W).toFixed(1);
  const y = v => (H - (v - lo) / ((hi - lo) || 1) * (H - 4) - 2).toFixed(1);
  const band = pts.map(p => `${x(p.t)},${y(p.max)}`).concat(pts.slice().reverse().map(p => `${x(p.t)},${y(p.min)}`)).join(" ");
  const line = pts.map(p => `${x(p.t)},${y(p.avg)}`).join(" ");
  el.innerHTML = `<svg width="${W}" height="${H}" class="chart"><polygon points="${band}" fill="#3a6ea555"/>` +
    `<polyline points="${line}" fill="none" stroke="#7fb2e5" stroke-width="1.5"/>` +
    (fc.length ? `<polyline class="forecast" points="${fc.map(p => `${x(p.t)},${y(p.avg)}`).join(" ")}" fill="none" stroke="#e5b97f" stroke-width="1.5" stroke-dasharray="3 2"/>` : "") +
    `</svg><div class="small">24 giờ qua${fc.length ? " + dự báo 24 giờ (nét đứt)" : ""}: ${lo.toFixed(2)}–${hi.toFixed(2)} ${esc(s.unit)} · <a href="#" class="csv">tải CSV</a></div>`;
  el.querySelector(".csv").onclick = async ev => {
    ev.preventDefault();
    const c = await fetch(q.replace("max_points=120", "format=csv"), { headers: authHeaders() });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await c.blob());
    a.download = `${f.id.replace(/^station:/, "")}_${param}.csv`;
    a.click();
  };
  window.iocWall.charts = (window.iocWall.charts || 0) + 1;
}

const map = baseMap("map", [[10.05, 106.0], 9]);
const unitLayer = L.layerGroup().addTo(map);
const stationLayer = L.layerGroup().addTo(map);
const units = new Map();     // entity -> leaflet layer
const stations = new Map();  // entity -> circle marker
// What the page test reads (a module has no globals).
window.iocWall = { stations, units, deltas: 0, map };

function aqiLine(a, what) {
  if (!a) return "";
  const when = new Date(a.period).toLocaleString("vi-VN", { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit" });
  if (a.value === undefined) return `<br><span class="small">${what} ${esc(when)}: không tính được (${esc(a.absent || "")})</span>`;
  return `<br>${what} ${esc(when)}: <b class="aqi-${esc(a.band)}">${esc(a.value)}</b> ${esc(a.band_vi)} <span class="small">(chính: ${esc(a.dominant)})</span>`;
}

function popup(f) {
  const p = f.properties, l = p.latest || {};
  const rows = Object.entries(l).map(([k, v]) =>
    `<tr><td>${esc(k)}</td><td><b>${esc(v.value.toFixed(2))}</b> ${esc(v.unit)}</td><td class="small">${esc(vnTime(v.ts))}</td></tr>`).join("");
  const level = (p.salinity_level_vi ? `<br>Mức độ mặn: <b>${esc(p.salinity_level_vi)}</b>` : "") +
    aqiLine(p.aqi, "VN_AQI giờ") + aqiLine(p.aqi_daily, "VN_AQI ngày");
  return `<b>${esc(p.name)}</b><br><span class="small">${esc((p.unit_names || []).join(", "))}${p.river ? " · " + esc(p.river) : ""}</span>${level}` +
    `<table>${rows || "<tr><td>chưa có số liệu</td></tr>"}</table><div class="chart-box small">đang tải lịch sử…</div>` +
    `<span class="small">${esc(f.id)} · ${p.readings || 0} bản tin</span>`;
}

function upsertStation(f) {
  const [lon, lat] = f.geometry.coordinates;
  let m = stations.get(f.id);
  if (!m) {
    m = L.circleMarker([lat, lon], { radius: 8, weight: 2, color: "#0b1420", fillOpacity: 0.95 }).addTo(stationLayer);
    stations.set(f.id, m);
  }
  m.setStyle({ fillColor: stationColor(f.properties) });
  m.setLatLng([lat, lon]);
  m.feature = f;
  if (!m.getPopup()) {
    m.bindPopup(() => popup(m.feature));
    m.on("popupopen", e => {
      const box = e.popup.getElement().querySelector(".chart-box");
      if (box) loadChart(m.feature, box).catch(() => { box.textContent = "không tải được lịch sử"; });
    });
  }
}

function replaceStations(features) {
  const keep = new Set(features.map(f => f.id));
  for (const id of [...stations.keys()]) if (!keep.has(id)) removeStation(id);
  features.forEach(upsertStation);
}

// Rivers (salinity reach and risk) and operators' zones, drawn under the stations.
const areaLayer = L.layerGroup().addTo(map);
const areas = window.iocWall.areas = new Map();
const RISK = ["#3a8f5c", "#d4a017", "#e67e22", "#c0392b", "#8e44ad"];
function reachText(r) {
  if (!r) return "không rõ";
  return { at: `km ${r.km.toFixed(1)}`, at_least: `≥ km ${r.km.toFixed(1)}`, short_of: `< km ${r.km.toFixed(1)}` }[r.kind] || "";
}
function upsertArea(f) {
  const old = areas.get(f.id); if (old) areaLayer.removeLayer(old);
  const p = f.properties;
  let layer;
  if (f.id.startsWith("report:")) {
    // Field reports: open ones only, red when overdue, by state otherwise.
    if (p.status === "closed") { areas.delete(f.id); return; }
    const color = p.overdue ? "#e74c3c" : ({ received: "#bdc3c7", assigned: "#3498db", in_progress: "#9b59b6" })[p.state] || "#95a5a6";
    layer = L.geoJSON(f, { pointToLayer: (_, ll) => L.circleMarker(ll, { radius: 5, color, weight: 2, fillColor: color, fillOpacity: 0.6 }) })
      .bindTooltip(`<b>${esc(p.service_name)}</b>${p.overdue ? " · <b>quá hạn</b>" : ""}<br>${esc(p.description || "")}<br>` +
        `<span class="small">${esc(p.state_vi)} · ${esc(p.agency_name || "Trung tâm IOC")} · hạn ${esc(vnTime(p.deadline))}` +
        `${p.duplicate_of ? " · có thể trùng " + esc(p.duplicate_of) : p.duplicates_total ? " · " + p.duplicates_total + " phản ánh trùng" : ""}</span>`, { sticky: true })
      // A click offers the cameras nearest the report, as an alert's line does.
      .bindPopup(() => {
        const box = document.createElement("div");
        box.innerHTML = `<b>${esc(p.service_name)}</b><br><span class="small">${esc(p.address || "")}</span><br>`;
        const b = document.createElement("button");
        b.type = "button"; b.className = "near-btn"; b.textContent = "Camera gần nhất";
        b.onclick = () => nearCameras(box, f.geometry.coordinates);
        box.append(b);
        return box;
      });
  } else if (f.id.startsWith("river:")) {
    const color = p.risk_level === null || p.risk_level === undefined ? "#6c7a89" : RISK[Math.min(p.risk_level, 4)];
    // A river with one station is a point: a ring, not Leaflet's default marker image.
    layer = L.geoJSON(f, { style: { color, weight: 4, opacity: 0.8 },
      pointToLayer: (_, ll) => L.circleMarker(ll, { radius: 13, color, weight: 3, fill: false }) })
      .bindTooltip(`<b>${esc(p.name)}</b><br>ranh 1‰: ${esc(reachText(p.reach_1))} · ranh 4‰: ${esc(reachText(p.reach_4))}<br>${esc(p.risk_vi || "")}`, { sticky: true });
  } else {
    layer = L.geoJSON(f, { style: { color: "#f1c40f", weight: 2, dashArray: "6 4", fillOpacity: 0.05 } })
      .bindTooltip(`Vùng: <b>${esc(p.name)}</b>`, { sticky: true });
  }
  layer.addTo(areaLayer);
  areas.set(f.id, layer);
}
function removeArea(id) { const a = areas.get(id); if (a) { areaLayer.removeLayer(a); areas.delete(id); } }

function removeStation(id) { const m = stations.get(id); if (m) { stationLayer.removeLayer(m); stations.delete(id); } }

// Cameras: a dot per camera, coloured by state; the popup fetches the latest snapshot with the
// viewer's token (the server decides and audits; 403/503 are shown as they are).
const cameraLayer = L.layerGroup().addTo(map);
const cameras = window.iocWall.cameras = new Map();
const CAM_COLOR = { online: "#2ecc71", stalled: "#f39c12", offline: "#e74c3c" };
function upsertCamera(f) {
  const p = f.properties;
  const color = CAM_COLOR[p.state] || "#95a5a6";
  const [lon, lat] = f.geometry.coordinates;
  let m = cameras.get(f.id);
  if (!m) {
    m = L.circleMarker([lat, lon], { radius: 4, weight: 1, color: "#222", fillOpacity: 0.9 }).addTo(cameraLayer);
    m.on("click", () => openCamera(f.id));
    cameras.set(f.id, m);
  }
  m.setStyle({ fillColor: color });
  m.camera = p;
  const s = p.stats || {};
  m.bindTooltip(`<b>${esc(p.name)}</b><br>${esc(p.purpose_vi)} · <b>${esc(p.state_vi)}</b>` +
    `${p.reason ? " (" + esc(p.reason) + ")" : ""}<br><span class="small">` +
    `${s.width ? s.width + "×" + s.height + " · " + s.fps + " khung/s · " : ""}khung cuối ${esc(vnTime(p.last_frame))}</span>`, { sticky: true });
}
function removeCamera(id) { const m = cameras.get(id); if (m) { cameraLayer.removeLayer(m); cameras.delete(id); } }
window.iocWall.openCamera = openCamera;
async function openCamera(id) {
  const m = cameras.get(id); if (!m) return;
  const p = m.camera;
  const el = document.createElement("div");
  el.innerHTML = `<b>${esc(p.name)}</b><br><span class="small">${esc(p.state_vi)}</span><br><i class="small">đang tải ảnh…</i>`;
  m.bindPopup(el, { maxWidth: 360 }).openPopup();
  const r = await fetch(p.snapshot_url, { headers: authHeaders() });
  const note = el.querySelector("i");
  if (r.ok) {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(await r.blob()); img.style.width = "320px";
    note.textContent = "ảnh lúc " + vnTime(r.headers.get("x-capture-time"));
    el.append(img);
    const btn = document.createElement("button");
    btn.textContent = "Xem trực tiếp"; btn.className = "live-btn";
    btn.onclick = () => watchLive(img, note, btn, m);
    el.append(document.createElement("br"), btn);
  } else if (r.status === 403) note.textContent = "không có quyền xem hình ảnh camera này";
  else {
    const b = await r.json().catch(() => ({}));
    note.textContent = `không có hình: ${b.state || ""} ${b.last_frame_age_s != null ? "(khung cuối " + Math.round(b.last_frame_age_s) + " s trước)" : ""}`;
  }
}

// Live view in the popup: an <img> cannot send the bearer header, so the page asks the API
// for a short media ticket and points the image at the MJPEG URL that carries it. Closing the
// popup drops the stream, which frees the camera's viewer slot.
async function watchLive(img, note, btn, m) {
  btn.disabled = true;
  const r = await fetch(m.camera.live_url.replace(/live\.mjpeg$/, "tickets"), {
    method: "POST", headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify({ use: "live_view" }),
  });
  if (!r.ok) {
    btn.disabled = false;
    note.textContent = r.status === 403 ? "không có quyền xem trực tiếp camera này" : "không mở được hình trực tiếp";
    return;
  }
  const t = await r.json();
  img.onerror = () => { note.textContent = "hình trực tiếp đã ngắt (camera bận hoặc mất tín hiệu)"; btn.disabled = false; };
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = t.url;
  img.dataset.live = "1";
  note.textContent = "đang xem trực tiếp";
  m.once("popupclose", () => { img.onerror = null; img.removeAttribute("src"); delete img.dataset.live; });
}

function upsertUnit(f) {
  const old = units.get(f.id); if (old) unitLayer.removeLayer(old);
  const deep = f.properties.parent !== null;
  const layer = L.geoJSON(f, { style: unitStyle(f.properties, map) })
    .bindTooltip(() => {
      const r = f.properties.reports;
      const kpi = r && (r.open || r.resolved) ? `<br><span class="small">phản ánh: ${r.open} đang mở · ${r.overdue} quá hạn · ` +
        `${r.on_time_pct === null ? "chưa có kết quả" : r.on_time_pct + "% đúng hạn"}</span>` : "";
      return esc(f.properties.name) + kpi;
    }, { sticky: true });
  layer.addTo(unitLayer);
  if (!deep) layer.bringToBack();
  units.set(f.id, layer);
}

function tick(f) {
  const l = f.properties.latest || {};
  const main = f.properties.kind === "salinity" ? l.salinity : l.pm25;
  if (!main) return;
  const li = document.createElement("li");
  li.innerHTML = `${esc(f.properties.name)}: <b>${esc(main.value.toFixed(2))} ${esc(main.unit)}</b> <span class="small">${esc(vnTime(main.ts))}</span>`;
  li.style.borderLeftColor = stationColor(f.properties);
  const ul = document.getElementById("ticker");
  ul.prepend(li);
  while (ul.children.length > 12) ul.lastChild.remove();
}

let framed = false;
let ws, epoch = null, lastSeq = { units: 0, live: 0, alerts: 0, areas: 0, cameras: 0 }, retry = 500;
let allowedLayers = [];

// Active alerts, newest first; acknowledged ones stay listed until they clear.
const activeAlerts = window.iocWall.alerts = new Map();
function onAlert(f) {
  const a = f.properties;
  if (f.geometry && f.geometry.type === "Point" && (f.geometry.coordinates[0] || f.geometry.coordinates[1])) a.point = f.geometry.coordinates;
  if (a.state === "cleared") activeAlerts.delete(a.id); else activeAlerts.set(a.id, a);
  const ul = document.getElementById("alerts");
  ul.innerHTML = "";
  [...activeAlerts.values()].sort((x, y) => y.raised_at.localeCompare(x.raised_at)).slice(0, 30).forEach(x => {
    const li = document.createElement("li");
    li.className = `${x.state} ${x.severity}`;
    li.innerHTML = `<b>${esc(x.title)}</b><br>${esc(x.entity_name)} <span class="small">· ${esc(x.state_vi || x.state)} · ${esc(vnTime(x.raised_at))}` +
      `${x.escalation ? " · leo thang " + x.escalation : ""}${x.acked_by ? " · " + esc(x.acked_by) : ""}</span>`;
    if (x.point) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "near-btn"; b.textContent = "Camera gần nhất";
      b.onclick = () => nearCameras(li, x.point);
      li.append(document.createElement("br"), b);
    }
    ul.append(li);
  });
  document.getElementById("alert-count").textContent = activeAlerts.size ? String(activeAlerts.size) : "";
}

// The cameras nearest an alert (those this viewer may see), and the camera map opened there.
window.iocWall.nearCameras = nearCameras;
async function nearCameras(li, [lon, lat]) {
  let box = li.querySelector(".near");
  if (!box) { box = document.createElement("div"); box.className = "near small"; li.append(box); }
  box.textContent = "đang tìm camera…";
  const r = await fetch(`/api/v1/cameras/near?lon=${lon}&lat=${lat}&radius_m=3000&limit=4`, { headers: authHeaders() });
  if (!r.ok) { box.textContent = "không tìm được camera gần"; return; }
  const v = await r.json();
  box.innerHTML = v.cameras.length
    ? v.cameras.map(c => `${esc(c.name)} · ${Math.round(c.distance_m)} m · ${esc(c.state_vi || c.state)}`).join("<br>")
    : "không có camera nào trong 3 km mà bạn được xem";
  if (v.cameras.length) {
    const open = document.createElement("button");
    open.type = "button"; open.className = "near-btn"; open.textContent = "Mở bản đồ camera tại đây";
    open.onclick = () => window.open(`/cameras?near=${lon},${lat},3000`);
    box.append(document.createElement("br"), open);
  }
}

const bbox = () => viewBox(map);

function subscribeAll(resume) {
  const subs = [["units", ["units"], null], ["live", ["salinity", "air_quality"], bbox()], ["alerts", ["alerts"], null],
    ["areas", ["rivers", "zones", "reports"], null]];
  if (allowedLayers.includes("cameras")) subs.push(["cameras", ["cameras"], null]);
  for (const [id, layers, bb] of subs) {
    const msg = { id, layers, bbox: bb };
    if (resume && epoch && lastSeq[id]) Object.assign(msg, { op: "resume", since: lastSeq[id], epoch });
    else msg.op = "subscribe";
    ws.send(JSON.stringify(msg));
  }
}

// Replay: the map as it was, from history. Live deltas are set aside while it runs; when it
// ends, the live subscription is renewed and its snapshot brings the present back.
const REPLAY_ID = "wall-replay";
const replay = window.iocWall.replay = { state: "idle", frames: 0, at: null };
const vnNow = offsetH => new Date(Date.now() + (7 + offsetH) * 3600e3).toISOString().slice(0, 16);
document.getElementById("replay-from").value = vnNow(-1);

function replayStatus(text) { document.getElementById("replay-status").textContent = text; }

function startReplay() {
  if (!ws || ws.readyState !== 1) return;
  const from = new Date(document.getElementById("replay-from").value + ":00+07:00");
  if (isNaN(from)) { replayStatus("chọn thời điểm bắt đầu"); return; }
  const to = new Date(from.getTime() + Number(document.getElementById("replay-span").value) * 3600e3);
  const speed = Number(document.getElementById("replay-speed").value);
  Object.assign(replay, { state: "running", frames: 0, at: from.toISOString(), from: from.toISOString(), to: to.toISOString(), bbox: bbox() });
  ws.send(JSON.stringify({ op: "replay", id: REPLAY_ID, layers: ["salinity", "air_quality"], bbox: bbox(), from: from.toISOString(), to: to.toISOString(), speed }));
  document.getElementById("replay-btn").textContent = "Dừng";
  modeEl.textContent = "PHÁT LẠI"; modeEl.className = "pill replay";
  replayStatus(`từ ${vnTime(from)}, ${speed}×`);
}

function endReplay(state, note) {
  if (replay.state !== "running") return;
  replay.state = state;
  document.getElementById("replay-btn").textContent = "Phát lại";
  modeEl.textContent = mode === "demo" ? "DEMO: dữ liệu mô phỏng" : "trực tiếp";
  modeEl.className = "pill " + (mode === "demo" ? "demo" : "ok");
  replayStatus(note);
  if (ws && ws.readyState === 1) ws.send(JSON.stringify({ op: "update", id: "live", layers: ["salinity", "air_quality"], bbox: bbox() }));
}

function onReplay(m) {
  if (m.replay !== REPLAY_ID || replay.state !== "running") return;
  if (m.op === "replay_start") {
    replay.stations = m.features.features.length;
    replaceStations(m.features.features);
  } else if (m.op === "replay_delta") {
    replay.frames++;
    m.upsert.forEach(upsertStation);
  } else if (m.op === "replay_end") {
    endReplay("done", `đã phát lại ${m.readings} bản tin đến ${vnTime(m.at)}; trở lại trực tiếp`);
    return;
  } else if (m.op === "replay_error") {
    endReplay("failed", "lỗi phát lại: " + m.reason);
    return;
  }
  replay.at = m.at;
  replayStatus(`đang phát lại: ${new Date(m.at).toLocaleString("vi-VN", { timeZone: "Asia/Ho_Chi_Minh" })}`);
}

document.getElementById("replay-btn").onclick = () => {
  if (replay.state === "running") {
    ws.send(JSON.stringify({ op: "replay_stop", id: REPLAY_ID }));
    endReplay("stopped", "đã dừng; trở lại trực tiếp");
  } else startReplay();
};

function setConn(text, cls) { const el = document.getElementById("conn"); el.textContent = text; el.className = "pill " + cls; }

async function connect(resume) {
  if (!signedIn()) { showLogin(); return; }
  try {
    ws = await openSocket();
  } catch (e) {
    if (e.status === 401) { expired(); return; }
    setConn("mất kết nối — đang thử lại", "bad");
    setTimeout(() => connect(true), retry); retry = Math.min(retry * 2, 10000);
    return;
  }
  ws.onopen = () => { setConn("đã kết nối", "ok"); retry = 500; showHistoryNote(); };
  ws.onmessage = ev => {
    const m = JSON.parse(ev.data);
    if (m.op === "hello") { allowedLayers = m.layers || []; if (epoch && m.epoch !== epoch) resume = false; subscribeAll(resume); epoch = m.epoch; }
    else if (m.op === "snapshot") {
      // Replace the picture, but keep markers that stay (an open popup survives a pan).
      if (m.sub === "live") replaceStations(m.features.features);
      else if (m.sub === "areas") { for (const id of [...areas.keys()]) removeArea(id); m.features.features.forEach(upsertArea); }
      else if (m.sub === "cameras") { for (const id of [...cameras.keys()]) removeCamera(id); m.features.features.forEach(upsertCamera); }
      else if (m.sub === "alerts") { activeAlerts.clear(); m.features.features.forEach(onAlert); if (!m.features.features.length) onAlert({ properties: { state: "cleared" } }); }
      else {
        m.features.features.forEach(upsertUnit);
        // Frame the jurisdictions once, on the first boundaries snapshot.
        if (!framed && units.size) { framed = true; map.fitBounds(L.featureGroup([...units.values()]).getBounds(), { padding: [20, 20] }); }
      }
      lastSeq[m.sub] = m.seq;
    } else if (m.op === "alert") { onAlert(m.alert); }
    else if (m.op.startsWith("replay_")) { onReplay(m); }
    else if (m.op === "delta" && m.sub === "areas") {
      m.upsert.forEach(upsertArea);
      m.remove.forEach(removeArea);
      lastSeq.areas = m.seq;
    }
    else if (m.op === "delta" && m.sub === "cameras") {
      m.upsert.forEach(upsertCamera);
      m.remove.forEach(removeCamera);
      lastSeq.cameras = m.seq;
    }
    else if (m.op === "delta" && m.sub === "alerts") {
      m.upsert.forEach(onAlert);
      for (const id of m.remove) onAlert({ properties: { id: id.replace(/^alert:/, ""), state: "cleared" } });
      lastSeq.alerts = m.seq;
    }
    else if (m.op === "delta") {
      window.iocWall.deltas++;
      if (replay.state === "running" && m.sub === "live") return; // the past is on screen
      for (const f of m.upsert) { if (m.sub === "live") { upsertStation(f); tick(f); } else upsertUnit(f); }
      for (const id of m.remove) { if (m.sub === "live") removeStation(id); else { const u = units.get(id); if (u) { unitLayer.removeLayer(u); units.delete(id); } } }
      lastSeq[m.sub] = m.seq;
    } else if (m.op === "error") {
      console.warn("server error", m);
      if (m.id === REPLAY_ID) endReplay("failed", `không phát lại được (${m.field}): ${m.reason}`);
    }
    document.getElementById("counts").textContent = `${stations.size} trạm · ${units.size} đơn vị`;
    const camsDown = [...cameras.values()].filter(c => c.camera.state !== "online").length;
    document.getElementById("camera-counts").textContent = cameras.size ? `${cameras.size} camera` + (camsDown ? ` · ${camsDown} không có hình` : "") : "";
    document.getElementById("seq").textContent = `seq ${Math.max(lastSeq.units, lastSeq.live)}`;
  };
  ws.onclose = ev => {
    endReplay("stopped", "mất kết nối; phát lại đã dừng");
    // The socket ended with its token: a renewed session carries on where it was.
    if (ev.code === 4001) { renewSession().then(ok => ok ? connect(true) : expired()); return; }
    setConn("mất kết nối — đang thử lại", "bad");
    if (ev.code === 1006 && !epoch) { /* refused at upgrade: probably a bad token */ }
    setTimeout(() => connect(true), retry); retry = Math.min(retry * 2, 10000);
  };
}

function showLogin() {
  offerLogin(document.getElementById("login-form"));
  document.getElementById("login").style.display = "flex";
}

// The session ended (PROTOCOL.md): ask to sign in again, then resume where we were.
function expired() {
  window.iocWall.expired = true;
  setConn("phiên hết hạn — cần đăng nhập lại", "bad");
  sessionStorage.removeItem("ioc-token");
  history.replaceState(null, "", location.pathname);
  showLogin();
}
onSessionLost(expired);

map.on("moveend", () => {
  if (ws && ws.readyState === 1) ws.send(JSON.stringify({ op: "update", id: "live", layers: ["salinity", "air_quality"], bbox: bbox() }));
});

document.getElementById("login-form").onsubmit = ev => {
  ev.preventDefault();
  setToken(document.getElementById("token-input").value);
  document.getElementById("login").style.display = "none";
  connect(false);
};
document.getElementById("sign-out").onclick = () => signOut();

sessionReady.then(() => connect(false));
