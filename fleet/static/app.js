// edgefleet dashboard: plain JS, no CDN, polls the fleet API with the stored token.
"use strict";
const $ = (sel) => document.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
let token = localStorage.getItem("edgefleet-token") || "";

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(opts.headers || {}) };
  if (opts.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...opts, headers });
  if (!r.ok) {
    let detail = r.statusText;
    try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r.status === 204 ? null : r.json();
}

function showError(e) { $("#error").textContent = e ? String(e.message || e) : ""; }

function renderDevices(devs) {
  $("#device-count").textContent = `(${devs.filter((d) => d.online).length}/${devs.length} online)`;
  $("#devices tbody").innerHTML = devs.map((d) => `<tr data-device="${esc(d.id)}">
    <td>${esc(d.id)}</td><td class="${d.online ? "online" : "offline"}">${d.online ? "online" : "offline"}</td>
    <td>${esc(d.profile)}</td><td>${esc((d.tags || []).join(", "))}</td>
    <td>${esc(d.slot_a)}</td><td>${esc(d.slot_b)}</td><td class="active-model">${esc(d.active_model)}</td></tr>`).join("");
}

function renderModels(models) {
  $("#models tbody").innerHTML = models.map((m) => `<tr><td>${esc(m.name)}</td><td>${esc(m.version)}</td>
    <td>${esc(m.signed_by)}</td><td>${esc(m.artifacts.map((a) => `${a.format}/${a.precision}`).join(", "))}</td>
    <td>${(m.size / 1024).toFixed(1)} KiB</td></tr>`).join("");
  const sel = $("#model-select");
  const current = sel.value;
  sel.innerHTML = models.map((m) => `<option value="${esc(m.name)}@${esc(m.version)}">${esc(m.name)} ${esc(m.version)}</option>`).join("");
  if (current) sel.value = current;
}

const ACTIONS = { DRAFT: ["start", "abort"], RUNNING: ["pause", "abort", "rollback"],
  PAUSED: ["resume", "abort", "rollback"], COMPLETED: ["rollback"], ABORTED: [], ROLLED_BACK: [] };

function waveBar(w) {
  const pct = (n) => (w.size ? (100 * n) / w.size : 0);
  const busy = Object.entries(w.states).filter(([k]) => !["PENDING", "ACTIVE"].includes(k) && !k.match(/FAIL|ROLLED|REJECT|CANCEL|TIMED/))
    .reduce((a, [, v]) => a + v, 0);
  return `<div class="wave" data-wave="${w.index}"><span>wave ${w.index + 1}</span>
    <span class="bar"><span class="ok" style="width:${pct(w.active)}%"></span><span class="busy" style="width:${pct(busy)}%"></span><span class="bad" style="width:${pct(w.failed)}%"></span></span>
    <span class="wave-text">${w.active}/${w.size} active, ${w.failed} failed</span></div>`;
}

function deviceList(devs) {
  // Devices that are not (yet) ACTIVE, with the reason they reported: why a wave halted.
  const notable = devs.filter((d) => d.state !== "ACTIVE" && d.state !== "PENDING");
  if (!notable.length) return "";
  return `<details class="devices"><summary>${notable.length} device(s) not active</summary><ul>
    ${notable.slice(0, 50).map((d) => `<li data-device-state="${esc(d.state)}">${esc(d.device_id)} (wave ${d.wave + 1}): <b>${esc(d.state)}</b> ${esc(d.detail)}</li>`).join("")}</ul></details>`;
}

function renderRollouts(list) {
  // Re-rendering every second must not close a device list the operator opened.
  const open = new Set([...document.querySelectorAll(".rollout details[open]")]
    .map((d) => d.closest(".rollout").dataset.rollout));
  $("#rollouts").innerHTML = list.map((r) => {
    const gates = Object.entries(r.gates || {}).filter(([, v]) => v !== null)
      .map(([k, v]) => `${esc(k)}=${typeof v === "number" ? v.toFixed(3) : esc(v)}`).join(" · ");
    return `<div class="rollout" data-rollout="${r.id}">
      <b>#${r.id} ${esc(r.name)}</b> → ${esc(r.model)} <span class="status ${esc(r.status)}">${esc(r.status)}</span>
      ${(ACTIONS[r.status] || []).map((a) => `<button data-action="${a}" data-id="${r.id}">${a}</button>`).join(" ")}
      <div class="reason">${esc(r.reason)}</div>
      ${(r.waves || []).map(waveBar).join("")}
      <div class="gates">${gates ? "gates: " + gates : ""}</div>
      ${deviceList(r.devices || [])}</div>`;
  }).join("") || "<p>No rollouts yet.</p>";
  open.forEach((id) => {
    const d = document.querySelector(`.rollout[data-rollout="${id}"] details`);
    if (d) d.open = true;
  });
}

function lineChart(title, series, key, fmt) {
  const W = 260, H = 90, pts = series.filter((p) => p[key] !== null && p[key] !== undefined);
  if (!pts.length) return `<div class="chart"><div>${esc(title)}</div><svg width="${W}" height="${H}"></svg></div>`;
  const xs = pts.map((p) => p.t), ys = pts.map((p) => p[key]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1, y1 = Math.max(...ys) || 1;
  const sx = (x) => (x1 === x0 ? W / 2 : ((x - x0) / (x1 - x0)) * (W - 10) + 5);
  const sy = (y) => H - 12 - (y / y1) * (H - 24);
  const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p.t).toFixed(1)},${sy(p[key]).toFixed(1)}`).join(" ");
  return `<div class="chart"><div>${esc(title)} (max ${fmt(y1)})</div><svg width="${W}" height="${H}" role="img">
    <rect width="${W}" height="${H}" fill="#fafbfc" stroke="#e3e6ea"/><path d="${d}" fill="none" stroke="#2463eb" stroke-width="1.5"/>
    ${pts.map((p) => `<circle cx="${sx(p.t).toFixed(1)}" cy="${sy(p[key]).toFixed(1)}" r="2" fill="#2463eb"/>`).join("")}</svg></div>`;
}

function renderCharts(versions) {
  $("#charts").innerHTML = versions.map((v) => `<div class="version" data-model="${esc(v.model)}"><h3>${esc(v.model)}</h3>
    ${lineChart("p95 latency ms", v.series, "p95_ms", (y) => y.toFixed(1))}
    ${lineChart("throughput /s", v.series, "throughput_per_s", (y) => y.toFixed(1))}
    ${lineChart("cache hit rate", v.series, "cache_hit_rate", (y) => y.toFixed(2))}
    ${lineChart("errors", v.series, "errors", (y) => y.toFixed(0))}
    ${v.series.some((p) => p.decode_tps != null) ? lineChart("decode tokens/s", v.series, "decode_tps", (y) => y.toFixed(0)) +
      lineChart("TTFT p95 ms", v.series, "ttft_p95_ms", (y) => y.toFixed(1)) : ""}</div>`).join("") || "<p>No telemetry yet.</p>";
}

async function refresh() {
  if (!token) { showError("Enter an API token to see the fleet."); return; }
  try {
    const [devs, models, rollouts, versions] = await Promise.all([
      api("/api/v1/devices"), api("/api/v1/models"), api("/api/v1/rollouts"), api("/api/v1/telemetry/versions"),
    ]);
    const details = await Promise.all(rollouts.slice(0, 10).map((r) => api(`/api/v1/rollouts/${r.id}`)));
    renderDevices(devs); renderModels(models); renderRollouts(details); renderCharts(versions);
    showError(null);
  } catch (e) { showError(e); }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem("edgefleet-token", token);
  refresh();
});

$("#rollouts").addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-action]");
  if (!b) return;
  try { await api(`/api/v1/rollouts/${b.dataset.id}/${b.dataset.action}`, { method: "POST", body: JSON.stringify({ reason: `${b.dataset.action} from dashboard` }) }); }
  catch (e) { showError(e); }
  refresh();
});

function waveSizes(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean)
    .map((s) => (s.endsWith("%") ? { percent: parseFloat(s) } : { count: parseInt(s, 10) }));
}

$("#create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const [model, version] = String(f.get("model")).split("@");
  const target = {};
  if (f.get("tag")) target.tags = [f.get("tag")];
  if (f.get("profile")) target.profile = f.get("profile");
  if (f.get("ids")) target.device_ids = String(f.get("ids")).split(",").map((s) => s.trim()).filter(Boolean);
  const strategy = f.get("strategy"), sizes = waveSizes(String(f.get("waves")));
  const spec = { strategy, soak_s: Number(f.get("soak") || 0), on_failure: f.get("on_failure"),
    health_window_s: Number(f.get("health") || 0) };
  if (strategy === "canary" && sizes.length) spec.canary = sizes[0];
  if (strategy === "waves") spec.waves = sizes;
  if (f.get("p95")) spec.max_p95_regression = Number(f.get("p95")) / 100;
  try {
    await api("/api/v1/rollouts", { method: "POST", body: JSON.stringify({ name: f.get("name"), model, version, target, spec }) });
    showError(null);
  } catch (e) { showError(e); }
  refresh();
});

$("#token").value = token;
refresh();
setInterval(refresh, 1000);
