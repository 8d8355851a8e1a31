// The leaders' tablet page: the province's indicators by sector against their targets, what
// needs attention, and for one indicator its units (map, table, trend, revisions,
// explanations), with drill-down to the units below. One REST answer draws the overview
// (/api/v1/dashboard); the websocket's indicators layer says when a figure changed, and the
// page asks again, so tiles move without a reload.

import { api, signedIn, sessionReady, setToken, forgetToken, offerLogin, onSessionLost, signOut } from "./js/api.js";
import { Feed } from "./js/feed.js";
import { esc, vnNumber, vnDateTime, daysAgo, periodName, statusOf } from "./js/format.js";
import { baseMap } from "./js/map.js";

const state = { unit: new URLSearchParams(location.search).get("unit"), path: [], dashboard: null, open: null, loads: 0 };
window.iocLeader = state;

const $ = id => document.getElementById(id);
const modeEl = $("mode");
const demo = document.body.dataset.mode === "demo";
modeEl.textContent = demo ? "DEMO: dữ liệu mô phỏng" : "trực tiếp";
modeEl.className = "pill " + (demo ? "demo" : "ok");

function setConn(text, cls) { $("conn").textContent = text; $("conn").className = "pill " + cls; }

// A sparkline of the last periods (gaps where nothing was reported), the target as a line.
function spark(series, cls) {
  const vals = series.map(s => s.value).filter(v => v !== null && v !== undefined);
  if (!vals.length) return "";
  const targets = series.map(s => s.target).filter(v => v !== null && v !== undefined);
  const lo = Math.min(...vals, ...targets), hi = Math.max(...vals, ...targets);
  const W = 200, H = 34, n = series.length;
  const x = i => (i / Math.max(n - 1, 1) * (W - 4) + 2).toFixed(1);
  const y = v => (H - 3 - (v - lo) / ((hi - lo) || 1) * (H - 6)).toFixed(1);
  let d = "", pen = false;
  series.forEach((s, i) => {
    if (s.value === null || s.value === undefined) { pen = false; return; }
    d += `${pen ? "L" : "M"}${x(i)},${y(s.value)}`; pen = true;
  });
  const t = targets.length ? `<line x1="2" x2="${W - 2}" y1="${y(targets[targets.length - 1])}" y2="${y(targets[targets.length - 1])}" stroke="#9fb0c3" stroke-dasharray="3 3"/>` : "";
  return `<svg class="spark" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${t}<path d="${d}" fill="none" stroke="${cls === "missed" ? "#e74c3c" : cls === "watch" ? "#f1c40f" : "#7fb2e5"}" stroke-width="2"/></svg>`;
}

// "no data for Tháng 11/2026", "cập nhật 12 ngày trước".
function freshness(ind) {
  const l = ind.latest;
  if (!l) return `<span class="stale">chưa có số liệu</span>`;
  const revs = l.revisions || [];
  const last = revs.length ? revs[revs.length - 1].at : null;
  const missing = (ind.missing || []).length ? ` · <span class="stale">thiếu ${esc(periodName(ind.missing[ind.missing.length - 1]))}</span>` : "";
  return `${esc(periodName(l.period))}${last ? " · cập nhật " + esc(daysAgo(last)) : ""}${missing}`;
}

function completeness(l) {
  if (!l || l.completeness === null || l.completeness === undefined) return "";
  return `${l.reported}/${l.expected} đơn vị`;
}

function keyIndicator(sector) {
  return sector.indicators.find(i => i.status === "missed") || sector.indicators.find(i => i.status === "watch") ||
    sector.indicators.find(i => i.latest && i.latest.target !== null && i.latest.target !== undefined) || sector.indicators[0];
}

function renderTiles(d) {
  const box = $("tiles");
  box.replaceChildren();
  for (const s of d.sectors) {
    const key = keyIndicator(s), st = statusOf(key.status);
    const tile = document.createElement("article");
    tile.className = "tile " + st.cls;
    tile.dataset.sector = s.sector;
    const l = key.latest;
    tile.innerHTML = `<h2>${esc(s.name)}</h2>` +
      `<button type="button" class="row key-row" data-code="${esc(key.code)}"><span class="dot ${st.cls}"></span><span class="key">${esc(key.name)}</span></button>` +
      `<div><span class="value">${l ? esc(vnNumber(l.value)) : "—"}</span> <span class="small">${esc(key.measure)}</span></div>` +
      `<div class="small">${l && l.target !== null && l.target !== undefined ? "chỉ tiêu " + esc(vnNumber(l.target)) + " · " : ""}<span class="status ${st.cls}">${esc(st.vi)}</span>${completeness(l) ? " · " + esc(completeness(l)) : ""}</div>` +
      spark(key.series || [], st.cls) +
      `<div class="small">${freshness(key)}</div>` +
      `<div class="rows">${s.indicators.filter(i => i !== key).map(i => {
        const c = statusOf(i.status).cls;
        return `<button type="button" class="row" data-code="${esc(i.code)}"><span class="dot ${c}"></span><span>${esc(i.name)}</span><span class="small">${i.latest ? esc(vnNumber(i.latest.value)) : "—"}</span></button>`;
      }).join("")}</div>`;
    box.append(tile);
  }
  box.querySelectorAll("button[data-code]").forEach(b => { b.onclick = () => openIndicator(b.dataset.code); });
}

// One line per indicator: the unit on screen first if it is among them, then how many units
// under it share the problem (a leader reads 20 lines, not 114).
function grouped(list) {
  const by = new Map();
  for (const m of list) {
    const g = by.get(m.indicator) || { first: m, units: [] };
    if (m.unit === state.unit) g.first = m;
    g.units.push(m);
    by.set(m.indicator, g);
  }
  return [...by.values()];
}

function renderAttention(d) {
  const a = d.attention;
  const line = (g, cls, extra) => {
    const m = g.first, others = g.units.length - 1;
    return `<li><button type="button" class="row" data-code="${esc(m.indicator)}" data-unit="${esc(state.unit)}"><span class="dot ${cls}"></span>` +
      `<span>${esc(m.name)} — ${esc(m.unit_name)}${others > 0 ? ` và ${others} đơn vị khác` : ""}${extra(m)}</span></button></li>`;
  };
  const missed = grouped(a.missed), late = grouped(a.missing);
  $("attention-body").innerHTML =
    `<h3>Không đạt chỉ tiêu (${missed.length} chỉ tiêu)</h3><ul>${missed.map(g => line(g, "missed", () => "")).join("") || "<li class='small'>không có</li>"}</ul>` +
    `<h3>Chưa báo cáo đúng hạn (${late.length})</h3><ul>${late.map(g => line(g, "watch", m => `: thiếu ${esc(periodName((m.missing || []).slice(-1)[0]))}`)).join("") || "<li class='small'>không có</li>"}</ul>` +
    `<h3>Phản ánh quá hạn</h3><div>${esc(a.reports_overdue)}</div>` +
    `<h3>Cảnh báo đang có (${a.warnings.length})</h3><ul>${a.warnings.slice(0, 20).map(w => `<li>${esc(w.title)}</li>`).join("") || "<li class='small'>không có</li>"}</ul>`;
  $("attention-body").querySelectorAll("button[data-code]").forEach(b => { b.onclick = () => openIndicator(b.dataset.code, b.dataset.unit); });
}

function renderCrumbs() {
  const nav = $("crumbs");
  nav.replaceChildren();
  state.path.forEach((u, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = u.name;
    b.onclick = () => { state.path = state.path.slice(0, i + 1); go(u.id); };
    nav.append(b);
  });
}

// Each load is numbered: a live refresh still in flight when the leader taps a unit must
// not land after the tap's answer (it would put the old unit back on the breadcrumb).
let loadSeq = 0;
async function loadDashboard() {
  const seq = ++loadSeq;
  const q = state.unit ? `?unit=${encodeURIComponent(state.unit)}` : "";
  const d = await api(`/api/v1/dashboard${q}`);
  const name = d.unit_name || (await unitName(d.unit));
  if (seq !== loadSeq) return;
  state.dashboard = d;
  state.unit = d.unit;
  state.loads++;
  names.set(d.unit, name);
  if (!state.path.length || state.path[state.path.length - 1].id !== d.unit) state.path.push({ id: d.unit, name });
  $("title").textContent = `Chỉ tiêu điều hành — ${state.path[state.path.length - 1].name}`;
  $("fresh").textContent = `cập nhật lúc ${vnDateTime(d.generated_at)}`;
  renderCrumbs();
  renderTiles(d);
  renderAttention(d);
  // When the first screen was drawn, for the benchmark (navigation start = 0).
  if (state.firstDraw === undefined) state.firstDraw = performance.now();
  if (!feedStarted) startFeed();
  else feed.subscribe("ind", { layers: ["indicators"], filter: { unit: state.unit } });
}

const names = new Map();
async function unitName(id) {
  if (names.has(id)) return names.get(id);
  try {
    const fc = await api(`/api/v1/layers/units/features?unit=${encodeURIComponent(id)}&limit=200`);
    for (const f of fc.features) names.set(f.id.replace(/^unit:/, ""), f.properties.name);
  } catch (e) { /* the id is shown instead */ }
  return names.get(id) || id;
}

function go(unit) { state.unit = unit; closeDetail(); loadDashboard().catch(showError); }

// --- One indicator: trend, map, units, revisions, explanations.
let map = null, mapLayer = null;

function chart(series, measure) {
  const pts = series.filter(s => s.value !== null && s.value !== undefined);
  if (!pts.length) return `<p class="small">chưa có số liệu trong ${series.length} kỳ gần nhất</p>`;
  const vals = pts.map(s => s.value).concat(series.map(s => s.target).filter(v => v !== null && v !== undefined));
  const lo = Math.min(...vals), hi = Math.max(...vals);
  const W = 520, H = 220, L = 60, B = 28, n = series.length;
  const x = i => (L + i / Math.max(n - 1, 1) * (W - L - 10)).toFixed(1);
  const y = v => (H - B - (v - lo) / ((hi - lo) || 1) * (H - B - 14)).toFixed(1);
  let line = "", pen = false, tline = "", tpen = false;
  series.forEach((s, i) => {
    if (s.value === null || s.value === undefined) pen = false; else { line += `${pen ? "L" : "M"}${x(i)},${y(s.value)}`; pen = true; }
    if (s.target === null || s.target === undefined) tpen = false; else { tline += `${tpen ? "L" : "M"}${x(i)},${y(s.target)}`; tpen = true; }
  });
  const dots = series.map((s, i) => s.value === null || s.value === undefined ? "" :
    `<circle cx="${x(i)}" cy="${y(s.value)}" r="4" fill="${({ met: "#2ecc71", watch: "#f1c40f", missed: "#e74c3c" })[s.status] || "#7fb2e5"}"/>`).join("");
  const labels = series.map((s, i) => i % Math.ceil(n / 6) ? "" : `<text x="${x(i)}" y="${H - 8}" fill="#9fb0c3" font-size="11" text-anchor="middle">${esc(periodName(s.period))}</text>`).join("");
  return `<svg viewBox="0 0 ${W} ${H}"><text x="4" y="${y(hi)}" fill="#9fb0c3" font-size="11">${esc(vnNumber(hi))}</text>` +
    `<text x="4" y="${y(lo)}" fill="#9fb0c3" font-size="11">${esc(vnNumber(lo))}</text>` +
    `<path d="${tline}" fill="none" stroke="#9fb0c3" stroke-dasharray="5 4" stroke-width="1.5"/>` +
    `<path d="${line}" fill="none" stroke="#7fb2e5" stroke-width="2.5"/>${dots}${labels}</svg>` +
    `<div class="small">${esc(measure)} · nét đứt: chỉ tiêu</div>`;
}

async function drawMap(children) {
  if (!map) {
    // The unit choropleth over the basemap, when the province has one.
    map = baseMap("d-map", null);
    mapLayer = L.layerGroup().addTo(map);
  }
  mapLayer.clearLayers();
  const byUnit = new Map(children.map(c => [c.unit, c]));
  const fc = await api(`/api/v1/layers/units/features?unit=${encodeURIComponent(state.open.unit)}&limit=500`);
  const color = s => ({ met: "#2ecc71", watch: "#f1c40f", missed: "#e74c3c" })[s] || "#7f8c8d";
  const shapes = fc.features.filter(f => byUnit.has(f.id.replace(/^unit:/, "")));
  const g = L.geoJSON({ type: "FeatureCollection", features: shapes }, {
    style: f => ({ color: "#0e1621", weight: 1, fillOpacity: 0.75, fillColor: color(byUnit.get(f.id.replace(/^unit:/, "")).status) }),
    onEachFeature: (f, layer) => {
      const c = byUnit.get(f.id.replace(/^unit:/, ""));
      layer.bindTooltip(`${esc(c.unit_name)}: ${c.latest ? esc(vnNumber(c.latest.value)) : "—"}`);
      layer.on("click", () => drillTo(c.unit, c.unit_name));
    },
  }).addTo(mapLayer);
  setTimeout(() => { map.invalidateSize(); if (shapes.length) map.fitBounds(g.getBounds(), { padding: [8, 8] }); }, 0);
}

function drillTo(unit, name) {
  state.path.push({ id: unit, name });
  names.set(unit, name);
  go(unit);
}

// Numbered like the dashboard loads: closing or drilling down drops an answer still coming.
let openSeq = 0;
async function openIndicator(code, unit) {
  const seq = ++openSeq;
  const u = unit || state.unit;
  const d = await api(`/api/v1/indicators/${encodeURIComponent(code)}?unit=${encodeURIComponent(u)}`);
  const f = d.figures || {};
  const unitLabel = f.unit_name || (await unitName(u));
  if (seq !== openSeq) return;
  state.open = { code, unit: u, data: d };
  const ind = d.indicator, l = f.latest, st = statusOf(f.status);
  $("d-title").textContent = `${ind.name} — ${unitLabel}`;
  $("d-summary").innerHTML = l
    ? `<p><span class="value">${esc(vnNumber(l.value))}</span> ${esc(ind.measure)} · ${esc(periodName(l.period))}${ind.cumulative ? " (lũy kế)" : ""}` +
      ` · ${l.target !== null && l.target !== undefined ? "chỉ tiêu " + esc(vnNumber(l.target)) + " · " : ""}<span class="status ${st.cls}">${esc(st.vi)}</span>` +
      ` · ${esc(completeness(l))} · ${l.origin === "rolled_up" ? "tổng hợp từ các đơn vị" : "đơn vị báo cáo"}</p>` +
      `<p class="small">${esc(ind.sector_name)} · ${esc(ind.agency_name || ind.agency)} · báo cáo theo ${esc({ day: "ngày", week: "tuần", month: "tháng", quarter: "quý", six_month: "6 tháng", year: "năm" }[ind.frequency] || ind.frequency)}</p>`
    : `<p class="stale">Chưa có số liệu cho ${esc(periodName(f.current_period || ""))}.</p>`;
  $("d-chart").innerHTML = chart(f.series || [], ind.measure);
  const tbody = $("d-units").querySelector("tbody");
  tbody.replaceChildren();
  for (const c of d.children) {
    const cs = statusOf(c.status), cl = c.latest;
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${esc(c.unit_name)}</td><td>${cl ? esc(vnNumber(cl.value)) + " <span class='small'>" + esc(periodName(cl.period)) + "</span>" : "<span class='stale'>chưa có</span>"}</td>` +
      `<td>${cl && cl.target !== null && cl.target !== undefined ? esc(vnNumber(cl.target)) : "—"}</td><td><span class="status ${cs.cls}">${esc(cs.vi)}</span></td>` +
      `<td>${(c.missing || []).length ? "<span class='stale'>thiếu " + esc(periodName(c.missing[c.missing.length - 1])) + "</span>" : esc(completeness(cl))}</td>`;
    tr.onclick = () => drillTo(c.unit, c.unit_name);
    tbody.append(tr);
  }
  const revs = (l && l.revisions) || [];
  $("d-revisions").innerHTML = revs.length > 1
    ? revs.slice(1).map(r => `<li>${esc(vnDateTime(r.at))}: ${esc(vnNumber(r.previous))} → <b>${esc(vnNumber(r.value))}</b> (${esc(r.by)})${r.note ? " — " + esc(r.note) : ""}</li>`).join("")
    : "<li>không có điều chỉnh</li>";
  const ex = Object.entries(f.explanations || {}).flatMap(([p, list]) => list.map(e => ({ p, ...e })));
  $("d-explanations").innerHTML = ex.length
    ? ex.map(e => `<li><b>${e.step === "request" ? "Yêu cầu" : "Giải trình"}</b> (${esc(periodName(e.p))}, ${esc(vnDateTime(e.at))}, ${esc(e.role)}): ${esc(e.note)}</li>`).join("")
    : "<li class='small'>chưa có</li>";
  $("ask").hidden = !l;
  $("ask-status").textContent = "";
  $("detail").hidden = false;
  drawMap(d.children).catch(() => { /* the table has the same */ });
}

function closeDetail() { openSeq++; $("detail").hidden = true; state.open = null; }
$("close").onclick = closeDetail;

$("ask").onsubmit = async ev => {
  ev.preventDefault();
  const o = state.open, l = o && o.data.figures && o.data.figures.latest;
  if (!l) return;
  try {
    await api(`/api/v1/indicators/${encodeURIComponent(o.code)}/explanations`, { method: "POST", body: { unit: o.unit, period: l.period, note: $("ask-note").value } });
    $("ask-status").textContent = "đã gửi yêu cầu giải trình";
    $("ask-note").value = "";
  } catch (e) { $("ask-status").textContent = `không gửi được: ${e.message}`; }
};

// --- Live: any change to a figure under the unit brings a fresh answer (coalesced).
let feed = null, feedStarted = false, pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await loadDashboard().catch(showError);
    if (state.open) openIndicator(state.open.code, state.open.unit).catch(showError);
  }, 400);
}

function startFeed() {
  feedStarted = true;
  feed = new Feed(m => {
    if (m.op === "delta" && m.sub === "ind" && (m.upsert.length || m.remove.length)) refreshSoon();
  }, s => {
    if (s === "open") setConn("đã kết nối", "ok");
    else if (s === "retrying") setConn("mất kết nối — đang thử lại (số liệu có thể đã cũ)", "bad");
    else askLogin();
  });
  feed.subs.set("ind", { layers: ["indicators"], filter: { unit: state.unit } });
  feed.connect();
}

function showError(e) {
  if (e.status === 401) { askLogin(); return; }
  $("attention-body").textContent = `không tải được: ${e.message}`;
}

$("login-form").onsubmit = ev => {
  ev.preventDefault();
  setToken($("token-input").value);
  $("login").hidden = true;
  loadDashboard().catch(showError);
};

function askLogin() { setConn("phiên hết hạn — cần đăng nhập lại", "bad"); forgetToken(); offerLogin($("login-form")); $("login").hidden = false; }
onSessionLost(askLogin);
$("sign-out").onclick = () => signOut();

sessionReady.then(() => { if (signedIn()) loadDashboard().catch(showError); else askLogin(); });
