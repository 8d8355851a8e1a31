// Vietnamese formatting shared by the pages: numbers with "," for decimals and "." between
// thousands, times and dates in Vietnam time whatever the device's zone, DHIS2 periods in
// words, and HTML escaping for text that comes from the server.

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function vnNumber(v, maxFraction = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  return Number(v).toLocaleString("vi-VN", { maximumFractionDigits: maxFraction });
}

const ZONE = { timeZone: "Asia/Ho_Chi_Minh" };

export function vnTime(ts) { return new Date(ts).toLocaleTimeString("vi-VN", ZONE); }

export function vnDateTime(ts) {
  return new Date(ts).toLocaleString("vi-VN", { ...ZONE, hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", year: "numeric" });
}

// "hôm nay", "hôm qua", "12 ngày trước".
export function daysAgo(ts, now = Date.now()) {
  const d = Math.floor((now - Date.parse(ts)) / 86400e3);
  return d <= 0 ? "hôm nay" : d === 1 ? "hôm qua" : `${d} ngày trước`;
}

// A DHIS2 period as a Vietnamese reader says it.
export function periodName(p) {
  if (!p) return "";
  let m;
  if ((m = p.match(/^(\d{4})(\d{2})(\d{2})$/))) return `${m[3]}/${m[2]}/${m[1]}`;
  if ((m = p.match(/^(\d{4})W(\d{1,2})$/))) return `Tuần ${Number(m[2])}/${m[1]}`;
  if ((m = p.match(/^(\d{4})Q(\d)$/))) return `Quý ${m[2]}/${m[1]}`;
  if ((m = p.match(/^(\d{4})S(\d)$/))) return `${m[2] === "1" ? "6 tháng đầu" : "6 tháng cuối"} ${m[1]}`;
  if ((m = p.match(/^(\d{4})(\d{2})$/))) return `Tháng ${Number(m[2])}/${m[1]}`;
  if ((m = p.match(/^(\d{4})$/))) return `Năm ${m[1]}`;
  return p;
}

export const STATUS = {
  met: { vi: "Đạt", cls: "met" },
  watch: { vi: "Cần theo dõi", cls: "watch" },
  missed: { vi: "Không đạt", cls: "missed" },
  no_target: { vi: "Chưa có chỉ tiêu", cls: "none" },
};

export function statusOf(s) { return STATUS[s] || STATUS.no_target; }

// Text folded for search, so "nga bay" finds "Ngã Bảy": lower case, no diacritics, đ as d.
export function fold(s) {
  return String(s ?? "").normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/[đĐ]/g, "d").toLowerCase();
}

// A span of time as a Vietnamese reader says it: "8 giây", "5 phút", "3 giờ 10 phút", "2 ngày".
export function spanVi(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} giây`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} phút`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} giờ ${m % 60} phút` : `${h} giờ`;
  return `${Math.floor(h / 24)} ngày`;
}
