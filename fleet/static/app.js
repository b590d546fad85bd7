// edgefleet dashboard v2: plain JS, no CDN. Hash-routed pages; every list is paged and
// filtered on the server; a cheap /updates poll says what changed, and only that is refetched.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const ROLES = ["viewer", "operator", "admin"];
const S = { token: localStorage.getItem("edgefleet-token") || "", me: null, since: 0, view: null,
  range: Number(localStorage.getItem("edgefleet-range") || 3600) };
const can = (role) => S.me && ROLES.indexOf(S.me.role) >= ROLES.indexOf(role);
const fmtTime = (v) => (v ? new Date(typeof v === "number" ? v * 1000 : v.endsWith("Z") || v.includes("+") ? v : v + "Z").toLocaleString() : "");
const ago = (v) => { if (!v) return "never"; const s = (Date.now() - new Date(v.endsWith("Z") || v.includes("+") ? v : v + "Z")) / 1000;
  return s < 90 ? `${Math.max(0, s).toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : fmtTime(v); };

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${S.token}`, ...(opts.headers || {}) };
  if (opts.body && !(opts.body instanceof FormData)) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...opts, headers });
  if (!r.ok) {
    let detail = r.statusText;
    try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail : j.detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; "); } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r.status === 204 ? null : r.json();
}
const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body || {}) });
const put = (path, body) => api(path, { method: "PUT", body: JSON.stringify(body) });
function showError(e) { $("#error").textContent = e ? String(e.message || e) : ""; }
async function guard(fn) { try { await fn(); showError(null); } catch (e) { showError(e); } }

function confirmDialog(text) {
  const d = $("#confirm");
  $("#confirm-text").textContent = text;
  d.returnValue = "";
  d.showModal();
  return new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true }));
}

// ------------------------------------------------------------------ charts per version

const RANGES = [[900, "15 min"], [3600, "1 hour"], [6 * 3600, "6 hours"], [86400, "24 hours"], [7 * 86400, "7 days"]];
const METRICS = [["p95_ms", "p95 latency", "ms"], ["error_rate", "error rate", "fraction of calls"],
  ["throughput_per_s", "throughput", "calls/s"], ["cache_hit_rate", "cache hit rate", "fraction"]];
// Generative models' figures (the tokens/s and TTFT gates): charted only when some version has them.
const GEN_METRICS = [["ttft_p95_ms", "time to first token p95", "ms"], ["decode_tps", "decode speed", "tokens/s"]];
function rangePicker() {
  return `<label class="muted">time range <select id="range">${RANGES.map(([s, l]) => `<option value="${s}" ${s === S.range ? "selected" : ""}>${l}</option>`).join("")}</select></label>`;
}
function bindRange(onChange) {
  $("#range").addEventListener("change", (ev) => { S.range = Number(ev.target.value); localStorage.setItem("edgefleet-range", S.range); onChange(); });
}
function windowNow() { const until = Date.now() / 1000; return { since: until - S.range, until, bucket: Math.max(10, Math.round(S.range / 60)) }; }

async function drawVersionCharts(host, device) {
  const w = windowNow();
  const q = `since=${w.since}&until=${w.until}&bucket_s=${w.bucket}${device ? `&device=${encodeURIComponent(device)}` : ""}`;
  const data = await api(`/api/v1/telemetry/by-version?${q}`);
  const gen = GEN_METRICS.filter(([k]) => data.versions.some((v) => v.series.some((p) => p[k] !== null && p[k] !== undefined)));
  const metrics = [...METRICS, ...gen];
  host.innerHTML = metrics.map(([k]) => `<div data-metric="${k}"></div>`).join("");
  for (const [key, title, unit] of metrics) {
    const series = data.versions.map((v) => ({ name: v.model, points: v.series.map((p) => [p.t, p[key]]) }));
    Charts.render($(`[data-metric="${key}"]`, host), series, { title, unit, t0: w.since, t1: w.until });
  }
  host.dataset.versions = data.versions.map((v) => v.model).join(",");
}

// ------------------------------------------------------------------ fleet page (devices)

const FILTERS = ["profile", "tag", "online", "version", "state"];
function fleetView() {
  const q = { q: "", offset: 0, limit: 50, ...JSON.parse(sessionStorage.getItem("edgefleet-devq") || "{}") };
  let lastPage = 0, lastCharts = 0, lastFacets = 0;
  $("#view").innerHTML = `<div class="cards" id="summary"></div>
    <section><h2>Devices <small id="device-count"></small></h2>
      <div class="toolbar"><input type="search" id="device-search" placeholder="search device id" value="${esc(q.q)}">
        ${FILTERS.map((f) => `<label>${f} <select name="${f}" data-filter="${f}"><option value="">any</option></select></label>`).join("")}</div>
      <table id="devices"><thead><tr><th>id</th><th>online</th><th>profile</th><th>tags</th><th>active model</th><th>slot A</th><th>slot B</th><th>deployment</th><th>last seen</th></tr></thead><tbody></tbody></table>
      <div class="pager"><button id="prev">‹ prev</button><span id="page-info"></span><button id="next">next ›</button></div></section>
    <section><h2>Telemetry per version ${rangePicker()}</h2><div class="charts" id="charts"></div></section>`;
  const save = () => sessionStorage.setItem("edgefleet-devq", JSON.stringify(q));
  async function loadPage() {
    lastPage = Date.now();
    const params = new URLSearchParams({ q: q.q, offset: q.offset, limit: q.limit });
    FILTERS.forEach((f) => { if (q[f]) params.set(f, q[f]); });
    const page = await api(`/api/v1/devices/search?${params}`);
    $("#devices tbody").innerHTML = page.items.map((d) => `<tr data-device="${esc(d.id)}">
      <td><a href="#/devices/${encodeURIComponent(d.id)}">${esc(d.id)}</a></td>
      <td class="${d.online ? "online" : "offline"}">${d.online ? "online" : "offline"}</td><td>${esc(d.profile)}</td>
      <td>${(d.tags || []).map((t) => `<span class="tag">${esc(t)}</span>`).join("")}</td>
      <td class="active-model">${esc(d.active_model)}</td><td>${esc(d.slot_a)}</td><td>${esc(d.slot_b)}</td>
      <td class="state-${esc(d.deployment_state)}" title="${esc(d.deployment_detail)}">${d.rollout_id ? `<a href="#/rollouts/${d.rollout_id}">#${d.rollout_id}</a> ` : ""}${esc(d.deployment_state)}</td>
      <td>${esc(ago(d.last_seen))}</td></tr>`).join("") || `<tr><td colspan="9">No device matches.</td></tr>`;
    const end = Math.min(page.total, q.offset + page.items.length);
    $("#page-info").textContent = page.total ? `${q.offset + 1}–${end} of ${page.total}` : "0 devices";
    $("#device-count").textContent = `(${page.total} matching)`;
    $("#prev").disabled = q.offset === 0;
    $("#next").disabled = end >= page.total;
  }
  async function loadFacets() {
    lastFacets = Date.now();
    const f = await api("/api/v1/devices/facets");
    const opts = { profile: f.profiles, tag: f.tags, version: f.versions, state: f.states, online: ["true", "false"] };
    for (const name of FILTERS) {
      const sel = $(`select[data-filter="${name}"]`);
      sel.innerHTML = `<option value="">any</option>` + opts[name].slice(0, 500).map((v) => `<option value="${esc(v)}">${esc(name === "online" ? (v === "true" ? "online" : "offline") : v)}</option>`).join("");
      sel.value = q[name] || "";
    }
    $("#summary").innerHTML = `<div class="card">devices<b id="total-devices">${f.total}</b></div><div class="card">online<b>${f.online}</b></div>
      <div class="card">profiles<b>${f.profiles.length}</b></div><div class="card">versions running<b>${f.versions.length}</b></div>`;
  }
  async function loadCharts() { lastCharts = Date.now(); await drawVersionCharts($("#charts")); }
  let timer = null;
  $("#device-search").addEventListener("input", (ev) => {
    clearTimeout(timer);
    timer = setTimeout(() => { q.q = ev.target.value.trim(); q.offset = 0; save(); guard(loadPage); }, 150);
  });
  $("#view").addEventListener("change", (ev) => {
    const f = ev.target.dataset.filter;
    if (f) { q[f] = ev.target.value; q.offset = 0; save(); guard(loadPage); }
  });
  $("#prev").addEventListener("click", () => { q.offset = Math.max(0, q.offset - q.limit); save(); guard(loadPage); });
  $("#next").addEventListener("click", () => { q.offset += q.limit; save(); guard(loadPage); });
  bindRange(() => guard(loadCharts));
  // Table and charts first; the filter values (a pass over every device) right after.
  guard(() => Promise.all([loadPage(), loadCharts()]).then(loadFacets));
  return {
    nav: "fleet",
    update(u) {
      const now = Date.now();
      const work = [];
      if (u.devices_changed && now - lastPage > 10_000) work.push(loadPage());
      if (now - lastFacets > 30_000) work.push(loadFacets());
      if (now - lastCharts > 15_000) work.push(loadCharts());
      return Promise.all(work);
    },
  };
}

// ------------------------------------------------------------------ device page

function deviceView(id) {
  let last = 0;
  $("#view").innerHTML = `<p><a href="#/">‹ all devices</a></p><div id="device"></div>
    <section><h2>Telemetry of this device ${rangePicker()}</h2><div class="charts" id="device-charts"></div></section>`;
  async function load() {
    last = Date.now();
    const d = await api(`/api/v1/devices/${encodeURIComponent(id)}/detail`);
    const inv = d.inventory || {};
    const edit = can("operator");
    $("#device").innerHTML = `<div class="cols"><section><h2 id="device-title">${esc(d.id)} <span class="${d.online ? "online" : "offline"}">${d.online ? "online" : "offline"}</span></h2>
      <dl class="kv" id="inventory"><dt>profile</dt><dd>${esc(d.profile)}</dd><dt>board</dt><dd>${esc(inv.model)}</dd>
      <dt>arch / OS</dt><dd>${esc(inv.arch)} ${esc(inv.os)}</dd><dt>CPU / RAM / disk free</dt><dd>${esc(inv.cpu_count)} cores · ${esc(inv.ram_mb)} MB · ${esc(inv.disk_free_mb)} MB</dd>
      <dt>accelerators</dt><dd>${esc((inv.accelerators || []).join(", ") || "none")}</dd>
      <dt>runtimes</dt><dd id="runtimes">${esc(Object.entries(inv.runtimes || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none reported")}</dd>
      <dt>agent version</dt><dd>${esc(d.agent_version)}</dd><dt>last seen</dt><dd>${esc(fmtTime(d.last_seen))}</dd>
      <dt>slot A / B</dt><dd>${esc(d.slot_a)} / ${esc(d.slot_b)}</dd><dt>active</dt><dd class="active-model">${esc(d.active_model)} (slot ${esc(d.active_slot)})</dd></dl></section>
      <section><h2>Tags</h2><div id="tags">${(d.tags || []).map((t) => `<span class="tag">${esc(t)}</span>`).join("") || "none"}</div>
      ${edit ? `<form id="tags-form" class="grid"><input id="tags-input" value="${esc((d.tags || []).join(", "))}" style="width:20rem"><button type="submit">Save tags</button></form>` : ""}
      <h2>Maintenance windows</h2><div id="windows">${(d.maintenance_windows || []).map((w) => `<div class="muted">cron <code>${esc(w.cron)}</code> for ${esc(w.duration_s)} s (${esc(w.timezone)})</div>`).join("") || `<span class="muted">none given (the device's own apply)</span>`}</div>
      ${(inv.maintenance_windows || []).length ? `<div id="own-windows" class="muted">declared by the device: ${inv.maintenance_windows.map((w) => `<code>${esc(w.cron)}</code> ${esc(w.duration_s)} s ${esc(w.timezone)}`).join("; ")}</div>` : ""}
      ${edit ? `<form id="windows-form" class="grid"><input name="cron" placeholder="cron, e.g. 0 2 * * *"><input name="duration" type="number" min="60" placeholder="duration s"><input name="tz" placeholder="UTC" value="UTC"><button type="submit">Set window</button><button type="button" id="windows-clear">Clear</button></form>` : ""}
      ${can("admin") && !d.decommissioned ? `<h2>Danger</h2><button class="danger" id="decommission">Decommission</button>` : ""}</section></div>
      <section><h2>Deployment history</h2><table id="history"><thead><tr><th>rollout</th><th>model</th><th>wave</th><th>state</th><th>reason</th><th>updated</th></tr></thead><tbody>
      ${d.deployments.map((h) => `<tr data-rollout="${h.rollout_id}"><td><a href="#/rollouts/${h.rollout_id}">#${h.rollout_id} ${esc(h.rollout_name)}</a> <span class="status ${esc(h.rollout_status)}">${esc(h.rollout_status)}</span></td>
        <td>${esc(h.model)}</td><td>${h.wave + 1}</td><td class="state-${esc(h.state)}">${esc(h.state)}</td><td>${esc(h.detail)}</td><td>${esc(fmtTime(h.updated_at))}</td></tr>`).join("") || `<tr><td colspan="6">No deployments yet.</td></tr>`}</tbody></table></section>`;
    if (edit) {
      $("#tags-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard(async () => {
        await put(`/api/v1/devices/${encodeURIComponent(id)}/tags`, { tags: $("#tags-input").value.split(",").map((s) => s.trim()).filter(Boolean) }); await load(); }); });
      $("#windows-form").addEventListener("submit", (ev) => { ev.preventDefault(); const f = new FormData(ev.target); guard(async () => {
        const windows = [...(d.maintenance_windows || []), { cron: f.get("cron"), duration_s: Number(f.get("duration")), timezone: f.get("tz") || "UTC" }];
        await put(`/api/v1/devices/${encodeURIComponent(id)}/maintenance-windows`, { windows }); await load(); }); });
      $("#windows-clear").addEventListener("click", () => guard(async () => { await put(`/api/v1/devices/${encodeURIComponent(id)}/maintenance-windows`, { windows: [] }); await load(); }));
    }
    const dec = $("#decommission");
    if (dec) dec.addEventListener("click", async () => {
      if (await confirmDialog(`Decommission ${id}? Its credentials are revoked and it is ignored from now on.`)) {
        // A decommissioned device is gone from the API (404): say so here, no reload.
        guard(async () => { await api(`/api/v1/devices/${encodeURIComponent(id)}`, { method: "DELETE" });
          dec.previousElementSibling.remove(); dec.replaceWith(Object.assign(document.createElement("p"), { className: "muted", id: "decommissioned", textContent: "Decommissioned: credentials revoked, the fleet ignores this device." })); });
      }
    });
  }
  const charts = () => drawVersionCharts($("#device-charts"), id);
  bindRange(() => guard(charts));
  guard(() => Promise.all([load(), charts()]));
  return { nav: "fleet", update(u) { return u.devices_changed && Date.now() - last > 5000 ? Promise.all([load(), charts()]) : null; } };
}

// ------------------------------------------------------------------ rollouts

const ACTIONS = { DRAFT: ["start", "abort"], RUNNING: ["pause", "abort", "rollback"],
  PAUSED: ["resume", "abort", "rollback"], COMPLETED: ["rollback"], ABORTED: [], ROLLED_BACK: [] };
const CONFIRM = { abort: "Abort rollout #{id}? In-flight deployments are canceled.",
  rollback: "Roll back rollout #{id}? Every device it touched returns to its previous model." };

function waveBar(w) {
  const pct = (n) => (w.size ? (100 * n) / w.size : 0);
  const busy = w.size - w.active - w.failed - (w.states.PENDING || 0);
  return `<div class="wave" data-wave="${w.index}"><span>wave ${w.index + 1}</span>
    <span class="bar"><span class="ok" style="width:${pct(w.active)}%"></span><span class="busy" style="width:${pct(Math.max(0, busy))}%"></span><span class="bad" style="width:${pct(w.failed)}%"></span></span>
    <span class="wave-text">${w.active}/${w.size} active, ${w.failed} failed</span></div>`;
}
function actionButtons(r) {
  return can("operator") ? (ACTIONS[r.status] || []).map((a) => `<button data-action="${a}" data-id="${r.id}" class="${a in CONFIRM ? "danger" : ""}">${a}</button>`).join(" ") : "";
}
async function runAction(b, after) {
  const { action, id } = b.dataset;
  if (CONFIRM[action] && !(await confirmDialog(CONFIRM[action].replace("{id}", id)))) return;
  await guard(async () => { await post(`/api/v1/rollouts/${id}/${action}`, { reason: `${action} from dashboard` }); await after(); });
}

function rolloutsView() {
  $("#view").innerHTML = `${can("operator") ? `<section><h2>New rollout</h2><form id="create" class="grid">
      <label>name <input name="name" required value="rollout"></label>
      <label>model <select name="model" id="model-select" required></select></label>
      <label>target tag <input name="tag" placeholder="tag"></label>
      <label>profile <input name="profile" placeholder="e.g. raspberry-pi-5"></label>
      <label>device ids <input name="ids" placeholder="id1,id2"></label>
      <label>strategy <select name="strategy"><option value="canary">canary</option><option value="waves">waves</option><option value="all_at_once">all at once</option></select></label>
      <label>canary / waves <input name="waves" value="1" title="e.g. 1 or 1,25%,50%"></label>
      <label>soak s <input name="soak" type="number" min="0" value="0"></label>
      <label>max p95 regression % <input name="p95" type="number" min="0" placeholder="off"></label>
      <label>max error rate increase % <input name="err" type="number" min="0" placeholder="off"></label>
      <label>on failure <select name="on_failure"><option value="pause">pause</option><option value="rollback">rollback</option></select></label>
      <label>health window s <input name="health" type="number" min="0" value="10"></label>
      <label>start at <input name="start_at" type="datetime-local" title="empty: a DRAFT you start by hand"></label>
      <button type="submit" id="create-btn">Create rollout</button></form></section>` : ""}
    <section><h2>Rollouts</h2><div id="rollouts"></div></section>`;
  async function load() {
    const list = await api("/api/v1/rollouts");
    $("#rollouts").innerHTML = list.map((r) => `<div class="rollout" data-rollout="${r.id}">
      <a href="#/rollouts/${r.id}"><b>#${r.id} ${esc(r.name)}</b></a> → ${esc(r.model)} <span class="status ${esc(r.status)}">${esc(r.status)}</span>
      ${r.start_at && r.status === "DRAFT" ? `<span class="muted">starts ${esc(fmtTime(r.start_at))}</span>` : ""} ${actionButtons(r)}
      <div class="reason">${esc(r.reason)} · wave ${Math.min(r.current_wave + 1, r.wave_count)}/${r.wave_count} · ${r.device_count} devices</div></div>`).join("") || "<p>No rollouts yet.</p>";
  }
  if (can("operator")) {
    api("/api/v1/models").then((models) => {
      $("#model-select").innerHTML = models.map((m) => `<option value="${esc(m.name)}@${esc(m.version)}">${esc(m.name)} ${esc(m.version)}</option>`).join("");
    }).catch(showError);
    $("#create").addEventListener("submit", (ev) => { ev.preventDefault(); guard(async () => {
      const f = new FormData(ev.target);
      const [model, version] = String(f.get("model")).split("@");
      const target = {};
      if (f.get("tag")) target.tags = [f.get("tag")];
      if (f.get("profile")) target.profile = f.get("profile");
      if (f.get("ids")) target.device_ids = String(f.get("ids")).split(",").map((s) => s.trim()).filter(Boolean);
      const strategy = f.get("strategy");
      const sizes = String(f.get("waves")).split(",").map((s) => s.trim()).filter(Boolean).map((s) => (s.endsWith("%") ? { percent: parseFloat(s) } : { count: parseInt(s, 10) }));
      const spec = { strategy, soak_s: Number(f.get("soak") || 0), on_failure: f.get("on_failure"), health_window_s: Number(f.get("health") || 0) };
      if (strategy === "canary" && sizes.length) spec.canary = sizes[0];
      if (strategy === "waves") spec.waves = sizes;
      if (f.get("p95")) spec.max_p95_regression = Number(f.get("p95")) / 100;
      if (f.get("err")) spec.max_error_rate_increase = Number(f.get("err")) / 100;
      const body = { name: f.get("name"), model, version, target, spec };
      if (f.get("start_at")) body.start_at = new Date(String(f.get("start_at"))).toISOString();
      const ro = await post("/api/v1/rollouts", body);
      location.hash = `#/rollouts/${ro.id}`;
    }); });
  }
  $("#rollouts").addEventListener("click", (ev) => { const b = ev.target.closest("button[data-action]"); if (b) runAction(b, load); });
  guard(load);
  return { nav: "rollouts", update(u) { return u.rollouts_changed.length ? load() : null; } };
}

function rolloutView(id) {
  let lastCompare = 0;
  $("#view").innerHTML = `<p><a href="#/rollouts">‹ all rollouts</a></p><section id="rollout"></section>
    <section><h2>Gated figures: canary vs baseline</h2><div class="charts" id="compare"></div></section>
    <div class="cols"><section><h2>Devices <small id="rd-count"></small></h2><table id="rollout-devices"><thead><tr><th>device</th><th>wave</th><th>state</th><th>reason</th><th>previous model</th></tr></thead><tbody></tbody></table></section>
    <section><h2>Event log</h2><table id="events"><thead><tr><th>when</th><th>from</th><th>to</th><th>reason</th><th>by</th></tr></thead><tbody></tbody></table></section></div>`;
  async function load() {
    const r = await api(`/api/v1/rollouts/${id}`);
    const gates = Object.entries(r.gates || {}).filter(([, v]) => v !== null)
      .map(([k, v]) => `${esc(k)}=${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : esc(v)}`).join(" · ");
    $("#rollout").dataset.status = r.status;
    $("#rollout").innerHTML = `<h2>#${r.id} ${esc(r.name)} → ${esc(r.model)} <span class="status ${esc(r.status)}">${esc(r.status)}</span> ${actionButtons(r)}</h2>
      <div class="reason">${esc(r.reason)}</div>${r.start_at ? `<div class="muted">scheduled start ${esc(fmtTime(r.start_at))}</div>` : ""}
      <div id="waves">${r.waves.map(waveBar).join("")}</div><div class="gates" id="gates">${gates ? "gates: " + gates : "gates: none yet"}</div>
      <div class="muted">strategy ${esc(r.spec.strategy)} · soak ${esc(r.spec.soak_s)} s · on failure ${esc(r.spec.on_failure)}</div>`;
    $("#rollout-devices tbody").innerHTML = r.devices.slice(0, 500).map((d) => `<tr data-device="${esc(d.device_id)}"><td><a href="#/devices/${encodeURIComponent(d.device_id)}">${esc(d.device_id)}</a></td>
      <td>${d.wave + 1}</td><td class="state-${esc(d.state)}">${esc(d.state)}</td><td>${esc(d.detail)}</td><td>${esc(d.previous_model)}</td></tr>`).join("");
    $("#rd-count").textContent = `(${r.devices.length}${r.devices.length > 500 ? ", first 500 shown" : ""})`;
    $("#events tbody").innerHTML = r.events.slice().reverse().map((e) => `<tr><td>${esc(fmtTime(e.at))}</td><td>${esc(e.from_status)}</td><td>${esc(e.to_status)}</td><td>${esc(e.reason)}</td><td>${esc(e.actor)}</td></tr>`).join("");
  }
  async function compare() {
    lastCompare = Date.now();
    const c = await api(`/api/v1/rollouts/${id}/compare?bucket_s=10`);
    const at = (s, k) => s.map((p) => [p.t, p[k]]);
    const host = $("#compare");
    host.innerHTML = `<div id="cmp-p95"></div><div id="cmp-err"></div><div id="cmp-tput"></div>`;
    const p95 = [{ name: `canary ${c.canary}`, points: at(c.canary_series, "p95_ms") }];
    const err = [{ name: `canary ${c.canary}`, points: at(c.canary_series, "error_rate") }];
    if (c.baseline) {
      p95.push({ name: `baseline ${c.baseline}`, points: at(c.baseline_series, "p95_ms") });
      err.push({ name: `baseline ${c.baseline}`, points: at(c.baseline_series, "error_rate") });
      if (c.max_p95_regression) p95.push({ name: `gate limit (+${(c.max_p95_regression * 100).toFixed(0)}%)`, color: "#d9453b", dash: true, points: at(c.baseline_series, "p95_ms").map(([t, y]) => [t, y === null ? null : y * (1 + c.max_p95_regression)]) });
      if (c.max_error_rate_increase !== null && c.max_error_rate_increase !== undefined) err.push({ name: "gate limit", color: "#d9453b", dash: true, points: at(c.baseline_series, "error_rate").map(([t, y]) => [t, y === null ? null : y + c.max_error_rate_increase]) });
    }
    const opts = { t0: c.since, t1: c.until };
    Charts.render($("#cmp-p95"), p95, { ...opts, title: "p95 latency", unit: "ms" });
    Charts.render($("#cmp-err"), err, { ...opts, title: "error rate", unit: "fraction of calls" });
    Charts.render($("#cmp-tput"), [{ name: `canary ${c.canary}`, points: at(c.canary_series, "throughput_per_s") },
      ...(c.baseline ? [{ name: `baseline ${c.baseline}`, points: at(c.baseline_series, "throughput_per_s") }] : [])], { ...opts, title: "throughput", unit: "calls/s" });
  }
  $("#rollout").addEventListener("click", (ev) => { const b = ev.target.closest("button[data-action]"); if (b) runAction(b, load); });
  guard(() => Promise.all([load(), compare()]));
  return { nav: "rollouts", update(u) {
    const work = [];
    if (u.rollouts_changed.includes(Number(id))) work.push(load());
    if (Date.now() - lastCompare > 10_000) work.push(compare());
    return Promise.all(work);
  } };
}

// ------------------------------------------------------------------ models, tokens, audit

function modelsView() {
  let count = -1;
  $("#view").innerHTML = `${can("operator") ? `<section><h2>Upload a package</h2><div id="dropzone">Drop a signed <b>.efpkg</b> here, or <label><u>choose a file</u><input type="file" id="upload-file" accept=".efpkg,.zip" hidden></label>
      <div id="upload-status" class="muted"></div></div></section>` : ""}
    <section><h2>Models</h2><table id="models"><thead><tr><th>model</th><th>task</th><th>signed by</th><th>artifacts</th><th>size</th><th>uploaded</th></tr></thead><tbody></tbody></table></section>`;
  async function load() {
    const models = await api("/api/v1/models");
    count = models.length;
    $("#models tbody").innerHTML = models.map((m) => `<tr data-model="${esc(m.name)}@${esc(m.version)}"><td>${esc(m.name)}@${esc(m.version)}</td><td>${esc(m.task)}</td><td>${esc(m.signed_by)}</td>
      <td>${esc(m.artifacts.map((a) => `${a.format}/${a.precision}`).join(", "))}</td><td>${(m.size / 1024).toFixed(1)} KiB</td><td>${esc(fmtTime(m.created_at))}</td></tr>`).join("") || `<tr><td colspan="6">No models yet.</td></tr>`;
  }
  async function upload(file) {
    const fd = new FormData();
    fd.append("file", file, file.name);
    $("#upload-status").textContent = `uploading ${file.name}…`;
    try {
      const m = await api("/api/v1/models", { method: "POST", body: fd });
      $("#upload-status").textContent = `uploaded ${m.name}@${m.version} (signature and hashes checked)`;
      showError(null);
      await load();
    } catch (e) { $("#upload-status").textContent = ""; showError(e); }
  }
  const dz = $("#dropzone");
  if (dz) {
    dz.addEventListener("dragover", (ev) => { ev.preventDefault(); dz.classList.add("over"); });
    dz.addEventListener("dragleave", () => dz.classList.remove("over"));
    dz.addEventListener("drop", (ev) => { ev.preventDefault(); dz.classList.remove("over"); const f = ev.dataTransfer.files[0]; if (f) upload(f); });
    $("#upload-file").addEventListener("change", (ev) => { const f = ev.target.files[0]; if (f) upload(f); });
  }
  guard(load);
  return { nav: "models", update(u) { return u.models !== count ? load() : null; } };
}

function tokensView() {
  if (!can("admin")) { $("#view").innerHTML = "<p>Token management needs the admin role.</p>"; return { nav: "tokens" }; }
  $("#view").innerHTML = `<section><h2>New API token</h2><form id="token-create" class="grid">
      <label>role <select name="role"><option>viewer</option><option>operator</option><option>admin</option></select></label>
      <label>name <input name="name" placeholder="label"></label><button type="submit">Create token</button></form>
      <p id="new-token"></p></section>
    <section><h2>API tokens</h2><table id="tokens"><thead><tr><th>id</th><th>name</th><th>role</th><th>created</th><th>state</th><th></th></tr></thead><tbody></tbody></table></section>`;
  async function load() {
    const toks = await api("/api/v1/tokens");
    $("#tokens tbody").innerHTML = toks.map((t) => `<tr data-token="${esc(t.id)}"><td><code>${esc(t.id)}</code></td><td>${esc(t.name)}</td><td>${esc(t.role)}</td><td>${esc(fmtTime(t.created_at))}</td>
      <td>${t.revoked ? "revoked" : "active"}</td><td>${t.revoked || t.id === S.me.id ? "" : `<button class="danger" data-revoke="${esc(t.id)}">revoke</button>`}</td></tr>`).join("");
  }
  $("#token-create").addEventListener("submit", (ev) => { ev.preventDefault(); const f = new FormData(ev.target); guard(async () => {
    const t = await post("/api/v1/tokens", { role: f.get("role"), name: f.get("name") });
    $("#new-token").innerHTML = `New ${esc(t.role)} token (shown once): <code class="secret">${esc(t.token)}</code>`;
    await load(); }); });
  $("#tokens").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-revoke]");
    if (b && (await confirmDialog(`Revoke token ${b.dataset.revoke}? Clients using it get 401 from now on.`))) {
      guard(async () => { await api(`/api/v1/tokens/${b.dataset.revoke}`, { method: "DELETE" }); await load(); });
    }
  });
  guard(load);
  return { nav: "tokens" };
}

function auditView() {
  let shown = -1;
  $("#view").innerHTML = `<section><h2>Audit log <small>who did what, newest first</small></h2><table id="audit"><thead><tr><th>when</th><th>who</th><th>role</th><th>action</th><th>target</th><th>detail</th></tr></thead><tbody></tbody></table></section>`;
  const link = (e) => (e.target_type === "rollout" ? `<a href="#/rollouts/${esc(e.target_id)}">rollout #${esc(e.target_id)}</a>`
    : e.target_type === "device" ? `<a href="#/devices/${encodeURIComponent(e.target_id)}">device ${esc(e.target_id)}</a>` : `${esc(e.target_type)} ${esc(e.target_id)}`);
  async function load() {
    const page = await api("/api/v1/audit?limit=200");
    shown = page.last_id;
    $("#audit tbody").innerHTML = page.items.map((e) => `<tr data-audit="${e.id}"><td>${esc(fmtTime(e.at))}</td><td>${e.actor_id ? `<code>${esc(e.actor_id)}</code>` : `<span class="muted">(hidden)</span>`}</td>
      <td>${esc(e.actor_role)}</td><td>${esc(e.action)}</td><td>${link(e)}</td><td class="muted">${esc(JSON.stringify(e.detail))}</td></tr>`).join("") || `<tr><td colspan="6">Nothing yet.</td></tr>`;
  }
  guard(load);
  return { nav: "audit", update(u) { return u.audit_last_id !== shown ? load() : null; } };
}

// ------------------------------------------------------------------ router and polling

function route() {
  if (!S.me) return;
  const h = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [page, arg] = h.split("/");
  S.view = page === "devices" && arg ? deviceView(arg) : page === "rollouts" && arg ? rolloutView(arg)
    : page === "rollouts" ? rolloutsView() : page === "models" ? modelsView() : page === "tokens" ? tokensView()
      : page === "audit" ? auditView() : fleetView();
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("current", a.dataset.nav === S.view.nav));
}

async function login() {
  if (!S.token) { showError("Enter an API token to see the fleet."); return; }
  try {
    const [me, u] = await Promise.all([api("/api/v1/whoami"), api("/api/v1/updates?since=0")]);
    S.me = me;
    S.since = u.now;
    document.body.dataset.role = S.me.role;
    $("#whoami").textContent = `token ${S.me.id} · ${S.me.role}`;
    document.querySelectorAll("[data-needs]").forEach((el) => { el.hidden = !can(el.dataset.needs); });
    showError(null);
    route();
  } catch (e) { S.me = null; showError(e); }
}

let polling = false;
async function poll() {
  if (!S.me || polling || document.hidden) return;
  polling = true;
  try {
    const u = await api(`/api/v1/updates?since=${S.since}`);
    S.since = u.now - 1;  // overlap a second: a change committed during the last poll is not lost
    if (S.view && S.view.update) await S.view.update(u);
  } catch (e) { showError(e); } finally { polling = false; }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  S.token = $("#token").value.trim();
  localStorage.setItem("edgefleet-token", S.token);
  login();
});
window.addEventListener("hashchange", route);
$("#token").value = S.token;
login();
setInterval(poll, 2000);
