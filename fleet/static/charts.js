// Time-series charts in plain SVG: time axis with labels, y axis with ticks, a legend,
// several series on one chart (canary vs baseline), dashed limit lines and a hover tooltip.
"use strict";

const Charts = (() => {
  const W = 440, H = 190, L = 46, R = 10, T = 10, B = 26;
  const COLORS = ["#2463eb", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#495057"];
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function timeTicks(t0, t1) {
    const span = Math.max(1, t1 - t0);
    const step = STEPS.find((s) => span / s <= 6) || 86400 * Math.ceil(span / 86400 / 6);
    const out = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
    return { ticks: out, step };
  }

  function timeLabel(t, step) {
    const d = new Date(t * 1000), p = (n) => String(n).padStart(2, "0");
    const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
    if (step >= 86400) return `${p(d.getMonth() + 1)}-${p(d.getDate())}`;
    return step < 60 ? `${hm}:${p(d.getSeconds())}` : hm;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v))), f = v / e;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
  }

  // series: [{name, points: [[t, y|null], ...], color?, dash?}]; opts: {title, unit, fmt, t0, t1}
  function render(host, series, opts) {
    const fmt = opts.fmt || ((y) => (Math.abs(y) >= 100 ? y.toFixed(0) : y.toPrecision(3)));
    const drawn = series.filter((s) => s.points.some((p) => p[1] !== null && p[1] !== undefined));
    const all = drawn.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
    const t0 = opts.t0 ?? Math.min(...all.map((p) => p[0]));
    const t1 = opts.t1 ?? Math.max(...all.map((p) => p[0]));
    const ymax = niceMax(Math.max(0, ...all.map((p) => p[1])) * 1.05);
    const sx = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
    const sy = (y) => T + (1 - y / ymax) * (H - T - B);
    const { ticks, step } = timeTicks(t0, t1);
    let svg = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(opts.title)}">`;
    for (let i = 0; i <= 4; i++) {
      const y = (ymax * i) / 4;
      svg += `<line class="grid" x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}"/>`
        + `<text class="ylabel" x="${L - 4}" y="${sy(y) + 3}" text-anchor="end">${esc(fmt(y))}</text>`;
    }
    for (const t of ticks) {
      svg += `<line class="tick" x1="${sx(t)}" x2="${sx(t)}" y1="${H - B}" y2="${H - B + 4}"/>`
        + `<text class="xlabel" x="${sx(t)}" y="${H - B + 15}" text-anchor="middle">${timeLabel(t, step)}</text>`;
    }
    svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>`
      + `<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>`;
    drawn.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      let d = "", pen = false;
      for (const [t, y] of s.points) {
        if (y === null || y === undefined) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${sx(t).toFixed(1)},${sy(y).toFixed(1)}`;
        pen = true;
      }
      svg += `<path class="line" data-series="${esc(s.name)}" d="${d}" stroke="${color}"${s.dash ? ' stroke-dasharray="5 4"' : ""}/>`;
      if (!s.dash) {
        for (const [t, y] of s.points) {
          if (y !== null && y !== undefined) svg += `<circle cx="${sx(t).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2" fill="${color}"/>`;
        }
      }
    });
    svg += `<line class="cursor" x1="0" x2="0" y1="${T}" y2="${H - B}" visibility="hidden"/></svg>`;
    const legend = drawn.map((s, i) => `<span class="key"><i style="background:${s.color || COLORS[i % COLORS.length]}${s.dash ? ";opacity:.5" : ""}"></i>${esc(s.name)}</span>`).join("");
    host.innerHTML = `<div class="chart" data-title="${esc(opts.title)}"><div class="chart-title">${esc(opts.title)}${opts.unit ? ` <small>(${esc(opts.unit)})</small>` : ""}</div>
      ${drawn.length ? svg : `<div class="empty">no data in this time range</div>`}
      <div class="legend">${legend}</div><div class="tooltip" hidden></div></div>`;
    if (!drawn.length) return;
    const el = host.querySelector("svg"), tip = host.querySelector(".tooltip"), cur = host.querySelector(".cursor");
    const times = [...new Set(all.map((p) => p[0]))].sort((a, b) => a - b);
    el.addEventListener("mousemove", (ev) => {
      const box = el.getBoundingClientRect();
      const x = ((ev.clientX - box.left) / box.width) * W;
      const t = t0 + ((x - L) / (W - L - R)) * (t1 - t0);
      const near = times.reduce((a, b) => (Math.abs(b - t) < Math.abs(a - t) ? b : a), times[0]);
      cur.setAttribute("x1", sx(near)); cur.setAttribute("x2", sx(near)); cur.setAttribute("visibility", "visible");
      const rows = drawn.map((s, i) => {
        const p = s.points.find((q) => q[0] === near);
        const v = p && p[1] !== null && p[1] !== undefined ? fmt(p[1]) : "–";
        return `<div><i style="background:${s.color || COLORS[i % COLORS.length]}"></i>${esc(s.name)}: <b>${esc(v)}</b></div>`;
      }).join("");
      tip.innerHTML = `<div class="when">${new Date(near * 1000).toLocaleString()}</div>${rows}`;
      tip.hidden = false;
      tip.style.left = `${Math.min(ev.clientX - box.left + 12, box.width - 180)}px`;
      tip.style.top = `${ev.clientY - box.top + 8}px`;
    });
    el.addEventListener("mouseleave", () => { tip.hidden = true; cur.setAttribute("visibility", "hidden"); });
  }

  return { render, COLORS };
})();
