// Map helpers the pages share (Leaflet is loaded by the page as a classic script, `L`): a
// map over the configured basemap (`ui.basemap`, given by the server in <body
// data-basemap>), the unit polygons drawn over it, station colours by salinity level and
// VN_AQI band, and the visible box as the feeds want it.

const L = window.L;

// The basemap the server configured: null (polygons on a dark ground) or {url, attribution, max_zoom}.
export function basemapConfig() {
  try { return JSON.parse(document.body.dataset.basemap || "null"); } catch (e) { return null; }
}

// A Leaflet map in `el` (an id or an element) opened on `view` ([lat, lon], zoom), with the
// basemap under everything else. `options` go to L.map.
export function baseMap(el, view = [[9.8, 105.6], 9], options = {}) {
  const base = basemapConfig();
  const map = L.map(el, { zoomControl: true, preferCanvas: true, attributionControl: !!(base && base.attribution), ...options });
  if (view) map.setView(view[0], view[1]);
  if (base && base.url) {
    L.tileLayer(base.url, { maxZoom: base.max_zoom || 18, attribution: base.attribution || "", className: "basemap" }).addTo(map);
    map.getContainer().classList.add("has-basemap");
  }
  map.iocBasemap = base;
  return map;
}

// A unit polygon's style: provinces outlined, lower units filled lightly — less fill over a
// basemap, so that the streets stay readable.
export function unitStyle(props, map) {
  const deep = props.parent !== null && props.parent !== undefined;
  const over = map && map.iocBasemap;
  return { color: deep ? "#3a4f6b" : "#7aa2d6", weight: deep ? 1 : 2.5, fillColor: "#16263b",
           fillOpacity: deep ? (over ? 0.08 : 0.35) : 0 };
}

const SAL = [[1, "rgb(0,228,0)"], [4, "rgb(255,200,0)"], [Infinity, "rgb(255,0,0)"]];
// VN_AQI PM2.5 breakpoints (µg/m³) and band colours.
export const PM25 = [[25, "rgb(0,228,0)", "Tốt"], [50, "rgb(255,255,0)", "Trung bình"], [80, "rgb(255,126,0)", "Kém"],
  [150, "rgb(255,0,0)", "Xấu"], [250, "rgb(143,63,151)", "Rất xấu"], [Infinity, "rgb(126,0,35)", "Nguy hại"]];

export function band(table, v) { for (const row of table) if (v < row[0]) return row; return table[table.length - 1]; }

// A station's colour: its salinity level (own thresholds, with hysteresis) or its official
// hourly VN_AQI; the latest value as an indication before the core gives either.
export function stationColor(props) {
  const l = props.latest || {};
  if (props.kind === "salinity") {
    const byLevel = { normal: SAL[0][1], watch: SAL[1][1], warning: SAL[2][1] };
    if (props.salinity_level) return byLevel[props.salinity_level];
    return l.salinity ? band(SAL, l.salinity.value)[1] : "#777";
  }
  if (props.aqi && props.aqi.color) return props.aqi.color;
  return l.pm25 ? band(PM25, l.pm25.value)[1] : "#777";
}

// Is the station in warning: salinity at its warning level, or VN_AQI poor or worse?
export function stationWarns(props) {
  if (props.kind === "salinity") return props.salinity_level === "warning";
  const b = props.aqi && props.aqi.band;
  return ["poor", "bad", "very_bad", "hazardous"].includes(b);
}

// The map's visible box as [w, s, e, n], clamped to the world.
export function viewBox(map) {
  const b = map.getBounds();
  return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(v => Math.max(-180, Math.min(180, v)));
}
