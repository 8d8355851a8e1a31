// The police camera map: the cameras the caller may see (the websocket's cameras layer keeps
// them live), found by name, street or ward without diacritics mattering, filtered by unit,
// group and state, on a map and in a list; up to 1, 4 or 9 of them watched at once (snapshots,
// or live MJPEG per tile); the selected camera's health and the caller's own recent views.

import { api, signedIn, sessionReady, setToken, forgetToken, offerLogin, onSessionLost, signOut } from "./js/api.js";
import { Feed } from "./js/feed.js";
import { esc, fold, spanVi, vnDateTime, vnNumber } from "./js/format.js";
import { CameraTile, STATE_COLOR, stateVi } from "./js/camera_tile.js";
import { baseMap, unitStyle } from "./js/map.js";

const $ = id => document.getElementById(id);
const cams = new Map();          // local id -> {id, p, lon, lat, text}
const tiles = new Map();         // local id -> CameraTile
const page = window.iocCameras = { cams, tiles, view: 4, selected: null, messages: 0 };

const demo = document.body.dataset.mode === "demo";
$("mode").textContent = demo ? "DEMO: dữ liệu mô phỏng" : "trực tiếp";
$("mode").className = "pill " + (demo ? "demo" : "ok");
function setConn(text, cls) { $("conn").textContent = text; $("conn").className = "pill " + cls; }

const map = baseMap("map", [[9.8, 105.6], 9]);
const unitLayer = L.layerGroup().addTo(map);
const camLayer = L.layerGroup().addTo(map);
const markers = new Map();
let framed = false;

const GROUP_VI = { police: "An ninh", traffic: "Giao thông" };
function groupVi(g) { return GROUP_VI[g] || (g && g.startsWith("school:") ? "Trường học" : g || ""); }
const localId = entity => entity.replace(/^camera:/, "");
// A state as a class of cameras.css (the page's CSP refuses style attributes in markup).
const stateClass = st => "s-" + (STATE_COLOR[st] ? st : "unknown");

function upsert(f) {
  const id = localId(f.id), p = f.properties, [lon, lat] = f.geometry.coordinates;
  const units = p.unit_names || [];
  cams.set(id, { id, p, lon, lat, text: fold([p.name, id, p.purpose_vi, ...units].join(" ")) });
  let m = markers.get(id);
  if (!m) {
    m = L.circleMarker([lat, lon], { radius: 6, weight: 1, color: "#111", fillOpacity: 0.95 }).addTo(camLayer);
    m.on("click", () => pick(id));
    markers.set(id, m);
  }
  m.setStyle({ fillColor: STATE_COLOR[p.state] || STATE_COLOR.unknown });
  const t = tiles.get(id);
  if (t) t.update(p);
  if (page.selected === id) showHealth(id);
}

function remove(entity) {
  const id = localId(entity);
  cams.delete(id);
  const m = markers.get(id);
  if (m) { camLayer.removeLayer(m); markers.delete(id); }
  const t = tiles.get(id);
  if (t) { t.close(); tiles.delete(id); }
}

function matches(c) {
  const q = fold($("q").value.trim());
  if (q && !q.split(/\s+/).every(w => c.text.includes(w))) return false;
  const unit = $("f-unit").value, group = $("f-group").value, st = $("f-state").value;
  if (unit && !(c.p.unit_names || []).includes(unit)) return false;
  if (group && groupVi(c.p.group) !== group) return false;
  if (st === "online" && c.p.state !== "online") return false;
  if (st === "down" && c.p.state === "online") return false;
  return true;
}

function fillFilters() {
  const fill = (el, values) => {
    const keep = el.value;
    const have = new Set([...el.options].map(o => o.value));
    for (const v of [...values].sort((a, b) => a.localeCompare(b, "vi"))) {
      if (!have.has(v)) el.append(new Option(v, v));
    }
    el.value = keep;
  };
  const units = new Set(), groups = new Set();
  for (const c of cams.values()) { (c.p.unit_names || []).forEach(u => units.add(u)); groups.add(groupVi(c.p.group)); }
  fill($("f-unit"), units);
  fill($("f-group"), groups);
}

function renderList() {
  const shown = [...cams.values()].filter(matches).sort((a, b) => a.p.name.localeCompare(b.p.name, "vi"));
  const list = $("list");
  list.replaceChildren(...shown.slice(0, 300).map(c => {
    const li = document.createElement("li");
    const down = c.p.state !== "online";
    li.innerHTML = `<button type="button" data-id="${esc(c.id)}" class="${tiles.has(c.id) ? "sel" : ""}">` +
      `<span class="dot ${stateClass(c.p.state)}"></span>` +
      `<span><b>${esc(c.p.name)}</b><br><span class="small">${esc(groupVi(c.p.group))} · ${esc((c.p.unit_names || [])[0] || "")}` +
      `${down ? " · " + esc(stateVi(c.p)) : ""}</span></span></button>`;
    li.firstChild.onclick = () => pick(c.id);
    return li;
  }));
  for (const [id, m] of markers) {
    const c = cams.get(id);
    m.setStyle({ opacity: c && matches(c) ? 1 : 0.15, fillOpacity: c && matches(c) ? 0.95 : 0.15 });
  }
  const down = [...cams.values()].filter(c => c.p.state !== "online").length;
  $("count").textContent = `${shown.length}/${cams.size} camera${down ? ` · ${down} không có hình` : ""}`;
  page.listed = shown.map(c => c.id);
}

// The multi-view: a camera picked goes into the first free tile, or replaces the oldest.
function pick(id) {
  const c = cams.get(id);
  if (!c) return;
  if (!tiles.has(id)) {
    while (tiles.size >= page.view) {
      const [oldest] = tiles.keys();
      tiles.get(oldest).close();
      tiles.delete(oldest);
    }
    const el = document.createElement("div");
    $("grid").append(el);
    tiles.set(id, new CameraTile(el, id, c.p, { onClose: t => { tiles.delete(t.id); layoutGrid(); renderList(); } }));
  }
  map.panTo([c.lat, c.lon]);
  showHealth(id);
  layoutGrid();
  renderList();
}

function layoutGrid() {
  const grid = $("grid");
  grid.className = "v" + page.view;
  grid.querySelectorAll(".empty").forEach(e => e.remove());
  for (let i = tiles.size; i < page.view; i++) {
    const e = document.createElement("div");
    e.className = "empty";
    e.textContent = "Chọn camera trong danh sách hoặc trên bản đồ";
    grid.append(e);
  }
}

function setView(n) {
  page.view = n;
  document.querySelectorAll(".views button").forEach(b => b.classList.toggle("on", Number(b.dataset.view) === n));
  while (tiles.size > n) {
    const [oldest] = tiles.keys();
    tiles.get(oldest).close();
    tiles.delete(oldest);
  }
  layoutGrid();
  renderList();
}

// The camera's time online today (Vietnam day), from its tally and the state it has held
// since: "7 giờ 12 phút (96,4 %)".
function onlineToday(t) {
  const today = new Date(Date.now() + 7 * 3600e3).toISOString().slice(0, 10);
  if (!t || t.day !== today) return "—";
  const more = Math.max(0, Date.now() - Date.parse(t.upto));
  const on = t.online_s * 1000 + (t.online ? more : 0), seen = t.observed_s * 1000 + more;
  return seen > 0 ? `${spanVi(on)} (${vnNumber(100 * on / seen)} %)` : "—";
}

async function showHealth(id) {
  const c = cams.get(id);
  if (!c) return;
  const first = page.selected !== id;
  page.selected = id;
  const p = c.p, s = p.stats || {};
  $("health").hidden = false;
  document.querySelector("main").classList.remove("no-health");
  $("h-name").textContent = p.name;
  const since = p.since ? `${vnDateTime(p.since)} (${spanVi(Date.now() - Date.parse(p.since))})` : "—";
  const facts = [
    ["Trạng thái", `<b class="${stateClass(p.state)}">${esc(stateVi(p))}</b>${p.reason ? " — " + esc(p.reason) : ""}`],
    ["Từ lúc", esc(since)],
    ["Khung hình cuối", p.last_frame ? `${esc(vnDateTime(p.last_frame))} (${esc(spanVi(Date.now() - Date.parse(p.last_frame)))} trước)` : "—"],
    ["Độ phân giải", s.width ? `${s.width}×${s.height}` : "—"],
    ["Tốc độ khung", s.fps !== undefined ? `${vnNumber(s.fps)} khung/s` : "—"],
    ["Bitrate", s.bitrate_kbps !== undefined ? `${vnNumber(s.bitrate_kbps, 0)} kbit/s` : "—"],
    ["Kết nối lại", p.reconnects !== undefined ? String(p.reconnects) : "—"],
    ["Trực tuyến hôm nay", onlineToday(p.today)],
    ["Nhóm", esc(groupVi(p.group))],
    ["Đơn vị", esc((p.unit_names || []).join(", "))],
  ];
  $("h-facts").innerHTML = facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("");
  // The views list again when another camera is picked, or at most every 5 s for this one.
  if (!first && Date.now() - (page.viewsAt || 0) < 5000) return;
  page.viewsAt = Date.now();
  if (first) $("h-views").innerHTML = "<li>đang tải…</li>";
  try {
    const v = await api(`/api/v1/cameras/${encodeURIComponent(id)}/views`);
    const ACTION = { snapshot: "Xem ảnh", live_view: "Xem trực tiếp", layer: "Xem trên bản đồ" };
    $("h-views").innerHTML = v.views.length
      ? v.views.map(r => `<li>${esc(vnDateTime(r.at))} — ${esc(ACTION[r.action] || r.action)}${r.allowed ? "" : " (bị từ chối)"}${r.count > 1 ? ` ×${r.count}` : ""}</li>`).join("")
      : "<li>chưa có lượt xem nào</li>";
  } catch (e) {
    $("h-views").innerHTML = `<li>${esc(e.message)}</li>`;
  }
}

function upsertUnit(f) {
  if (!f.geometry || f.geometry.type === "Point") return;
  L.geoJSON(f, { style: unitStyle(f.properties, map), interactive: false }).addTo(unitLayer);
}

// `?near=lon,lat[,radius_m]` (an incident, from an alert or a report): the cameras nearest to
// it fill the multi-view, nearest first, and the incident is marked on the map.
const nearParam = new URLSearchParams(location.search).get("near");
async function openNear() {
  const [lon, lat, radius] = (nearParam || "").split(",").map(Number);
  if (!Number.isFinite(lon) || !Number.isFinite(lat)) return;
  L.circleMarker([lat, lon], { radius: 16, color: "#e74c3c", weight: 3, fill: false }).addTo(map);
  map.setView([lat, lon], 15);
  try {
    const q = `lon=${lon}&lat=${lat}&radius_m=${Number.isFinite(radius) ? radius : 1000}&limit=${page.view}`;
    const r = await api(`/api/v1/cameras/near?${q}`);
    page.near = r.cameras.map(c => ({ id: c.id, distance_m: c.distance_m }));
    r.cameras.forEach(c => pick(c.id));
    $("count").textContent += ` · ${r.cameras.length} camera trong ${vnNumber(r.radius_m, 0)} m`;
  } catch (e) {
    $("count").textContent = `không tìm được camera gần: ${e.message}`;
  }
}

let listSoon = null;
function refreshSoon() {
  if (listSoon) return;
  listSoon = setTimeout(() => { listSoon = null; fillFilters(); renderList(); }, 150);
}

const feed = new Feed(m => {
  page.messages++;
  if (m.op === "snapshot" && m.sub === "cams") {
    for (const id of [...cams.keys()]) remove("camera:" + id);
    m.features.features.forEach(upsert);
    if (!framed && cams.size) {
      framed = true;
      if (nearParam) openNear();
      else map.fitBounds(L.latLngBounds([...cams.values()].map(c => [c.lat, c.lon])).pad(0.1));
    }
    refreshSoon();
  } else if (m.op === "delta" && m.sub === "cams") {
    m.upsert.forEach(upsert);
    m.remove.forEach(remove);
    refreshSoon();
  } else if (m.op === "snapshot" && m.sub === "units") {
    unitLayer.clearLayers();
    m.features.features.forEach(upsertUnit);
  }
}, state => {
  if (state === "open") setConn("trực tuyến", "ok");
  else if (state === "retrying") setConn("mất kết nối — đang thử lại", "bad");
  else askLogin();
});

function askLogin() { setConn("cần đăng nhập", "bad"); forgetToken(); offerLogin($("login-form")); $("login").hidden = false; }
onSessionLost(askLogin);
$("sign-out").onclick = () => signOut();

$("q").oninput = renderList;
for (const id of ["f-unit", "f-group", "f-state"]) $(id).onchange = renderList;
document.querySelectorAll(".views button").forEach(b => { b.onclick = () => setView(Number(b.dataset.view)); });
$("login-form").onsubmit = ev => {
  ev.preventDefault();
  setToken($("token-input").value);
  $("login").hidden = true;
  feed.connect();
};
document.querySelector("main").classList.add("no-health");
layoutGrid();
// Subscriptions are sent on connect (and again on every reconnect, resumed where possible).
feed.subs.set("cams", { layers: ["cameras"] });
feed.subs.set("units", { layers: ["units"] });
sessionReady.then(() => { if (signedIn()) feed.connect(); else askLogin(); });
