// poulpe's dashboard: reads the JSON routes every few seconds and builds the page with DOM calls only.
// Every value that comes from a job (id, name, error, result) may be hostile: it only ever becomes text
// (textContent, text nodes, setAttribute), never markup. Paths are relative, so the page works behind a
// reverse proxy that serves poulpe under a prefix.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "poulpe-token";
const STATUSES = ["scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled"];
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "EXEC", "MAIL_TO", "QUEUE"];
const WAITING = new Set(["scheduled", "queued", "retrying"]);
const JOB_PAGE = 20;
const DEAD_PAGE = 20;

const view = { jobsPage: 1, deadPage: 1, status: "", method: "", name: "", selected: null, timer: null };

class NeedToken extends Error {}

function $(id) {
  return document.getElementById(id);
}

// el("td", {class: "x"}, "text", otherNode): children that are not nodes become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child === null || child === undefined ? "" : String(child)));
  }
  return node;
}

function fill(tbody, rows, empty, columns) {
  if (rows.length === 0) rows = [el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty))];
  tbody.replaceChildren(...rows);
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 90) return `${s.toFixed(0)} s ago`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

async function api(path, options) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { cache: "no-store", ...options, headers });
  if (response.status === 401) {
    askToken();
    throw new NeedToken();
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { status: response.status, body };
}

function askToken() {
  const form = $("login");
  if (form.hidden) {
    form.hidden = false;
    $("token").focus();
  }
}

// --- sections ---------------------------------------------------------------------------------------------
function showOverview(info) {
  $("node").textContent = `${info.version} · ${info.store} · ${info.node} · up ${Math.round(info.uptime_s)} s`;
  const tiles = STATUSES.map((status) =>
    el("div", { class: `tile status-${status}`, id: `count-${status}` },
      el("span", { class: "n" }, info.counts[status] ?? 0), el("span", { class: "label" }, status)));
  tiles.push(el("div", { class: "tile", id: "count-today-succeeded" },
    el("span", { class: "n" }, info.today.succeeded ?? 0), el("span", { class: "label" }, "succeeded today")));
  tiles.push(el("div", { class: "tile", id: "count-today-failed" },
    el("span", { class: "n" }, info.today.failed ?? 0), el("span", { class: "label" }, "failed today")));
  $("counts").replaceChildren(...tiles);
  const rows = info.workers.map((w) =>
    el("tr", { "data-worker": w.id }, el("td", {}, w.id),
      el("td", {}, w.running ? jobLink(w.running) : el("span", { class: "muted" }, "idle")), el("td", {}, w.queue)));
  fill($("workers").tBodies[0], rows, "no workers", 3);
}

function jobLink(id) {
  const link = el("a", { href: "#" }, id);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openJob(id);
  });
  return link;
}

async function showJobs() {
  const query = new URLSearchParams({ page: view.jobsPage, size: JOB_PAGE });
  if (view.status) query.set("status", view.status);
  if (view.method) query.set("method", view.method);
  if (view.name) query.set("name", view.name);
  const { status, body } = await api(`jobs?${query}`);
  if (status !== 200) {
    fill($("jobs").tBodies[0], [], body?.error ?? `error ${status}`, 7);
    return;
  }
  const rows = body.jobs.map((job) => {
    const row = el("tr", { "data-id": job.id },
      el("td", {}, job.id), el("td", {}, job.method), el("td", {}, job.name),
      el("td", { class: `status-${job.status}` }, job.status), el("td", {}, job.attempts),
      el("td", {}, when(job.run_at)), el("td", {}, when(job.finished_at)));
    row.addEventListener("click", () => openJob(job.id));
    return row;
  });
  fill($("jobs").tBodies[0], rows, "no jobs", 7);
  const pages = Math.max(1, Math.ceil(body.total / JOB_PAGE));
  $("jobs-total").textContent = `(${body.total})`;
  $("jobs-page").textContent = `page ${view.jobsPage} of ${pages}`;
  $("jobs-prev").disabled = view.jobsPage <= 1;
  $("jobs-next").disabled = view.jobsPage >= pages;
}

async function openJob(id) {
  view.selected = id;
  await showDetail();
  $("detail").scrollIntoView({ block: "nearest" });
}

// Bursts and windows (SPEC 10.2): shown only when the job has them.
function windowFields(body) {
  const debounce = body.debounce;
  return [
    ["deadline", body.deadline ? when(body.deadline) : null],
    ["unique", body.unique ? `${body.unique.key} until ${when(body.unique.until)}` : null],
    ["debounce", debounce ? `${debounce.key}${debounce.until ? `, runs by ${when(debounce.until)}` : ""}` : null],
    ["retry budget", body.retry?.max_duration != null ? `${body.retry.max_duration} s after the first attempt` : null],
  ].filter(([, value]) => value !== null);
}

async function showDetail() {
  if (view.selected === null) return;
  const section = $("detail");
  section.hidden = false;
  $("detail-id").textContent = view.selected;
  const { status, body } = await api(`jobs/${encodeURIComponent(view.selected)}`);
  if (status === 404) {
    $("detail-fields").replaceChildren(el("dt", {}, "error"), el("dd", { class: "error" }, body?.error ?? "no such job"));
    $("detail-actions").replaceChildren();
    fill($("detail-history").tBodies[0], [], "", 6);
    $("detail-result").textContent = "";
    return;
  }
  const fields = [
    ["method", body.method], ["name", body.name], ["status", body.status], ["attempts", body.attempts],
    ["created", when(body.created_at)], ["run at", when(body.run_at)], ["started", when(body.started_at)],
    ["finished", when(body.finished_at)], ["error", body.error ?? ""], ["meta", body.meta ? JSON.stringify(body.meta) : ""],
    ...windowFields(body),
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
  const actions = [];
  if (WAITING.has(body.status)) {
    const cancel = el("button", { type: "button", id: "detail-cancel" }, "cancel job");
    cancel.addEventListener("click", () => act(`jobs/${encodeURIComponent(body.id)}`, "DELETE"));
    actions.push(cancel);
  }
  $("detail-actions").replaceChildren(...actions);
  const rows = (body.history ?? []).map((a) =>
    el("tr", {}, el("td", {}, a.n), el("td", {}, a.worker ?? ""), el("td", {}, when(a.started_at)),
      el("td", {}, a.finished_at ? `${((a.finished_at - a.started_at) * 1000).toFixed(1)} ms` : "running"),
      el("td", { class: a.ok ? "status-succeeded" : "status-dead" }, a.ok === null || a.ok === undefined ? "" : a.ok ? "yes" : "no"),
      el("td", {}, a.error ?? "")));
  fill($("detail-history").tBodies[0], rows, "no attempt yet", 6);
  const none = WAITING.has(body.status) || body.status === "running" ? "(none yet)" : "(none)";
  $("detail-result").textContent = body.result === null ? none : JSON.stringify(body.result, null, 2);
}

async function showDead() {
  const { status, body } = await api(`dead?page=${view.deadPage}&size=${DEAD_PAGE}`);
  if (status !== 200) {
    fill($("dead").tBodies[0], [], body?.error ?? `error ${status}`, 3);
    return;
  }
  const rows = body.dead.map((item) => {
    const retry = el("button", { type: "button", class: "retry" }, "retry");
    retry.addEventListener("click", () => act(`dead/${encodeURIComponent(item.id)}/retry`, "POST"));
    const remove = el("button", { type: "button", class: "delete" }, "delete");
    remove.addEventListener("click", () => {
      if (remove.dataset.armed) act(`dead/${encodeURIComponent(item.id)}`, "DELETE");
      else {
        remove.dataset.armed = "1";
        remove.textContent = "delete for good?";
      }
    });
    const id = el("td", {}, jobLink(item.id));
    return el("tr", { "data-dead": item.id }, id, el("td", {}, item.day), el("td", {}, retry, " ", remove));
  });
  fill($("dead").tBodies[0], rows, "none", 3);
  const pages = Math.max(1, Math.ceil(body.total / DEAD_PAGE));
  $("dead-total").textContent = `(${body.total})`;
  $("dead-page").textContent = `page ${view.deadPage} of ${pages}`;
  $("dead-prev").disabled = view.deadPage <= 1;
  $("dead-next").disabled = view.deadPage >= pages;
}

async function showCron() {
  const { status, body } = await api("cron");
  if (status !== 200) {
    fill($("cron").tBodies[0], [], body?.error ?? `error ${status}`, 9);
    return;
  }
  $("cron-zone").textContent = body.timezone ? `(times in your browser's zone; the file's is ${body.timezone})` : "";
  const rows = body.lines.map((line) => {
    const path = `cron/${encodeURIComponent(line.id)}`;
    const run = el("button", { type: "button", class: "run" }, "run now");
    run.addEventListener("click", () => act(`${path}/run`, "POST"));
    const toggle = el("button", { type: "button", class: line.paused ? "resume" : "pause" }, line.paused ? "resume" : "pause");
    toggle.addEventListener("click", () => act(path, "PUT", { paused: !line.paused }));
    const last = line.last ? el("span", { class: `status-${line.last.status}` }, jobLink(line.last.id), ` ${line.last.status}`) : "";
    return el("tr", { "data-cron": line.id }, el("td", {}, line.line), el("td", {}, el("code", {}, line.expr)),
      el("td", {}, line.timezone), el("td", {}, line.method), el("td", {}, line.name),
      el("td", {}, line.next.map(when).join(", ") || "never"), el("td", {}, last),
      el("td", { class: "state" }, line.paused ? "paused" : "running"), el("td", {}, run, " ", toggle));
  });
  fill($("cron").tBodies[0], rows, "none (no --cron file)", 9);
  const select = $("backfill-line");
  const chosen = select.value;
  select.replaceChildren(...body.lines.map((line) => el("option", { value: line.id }, `line ${line.line}: ${line.name}`)));
  if (body.lines.some((line) => line.id === chosen)) select.value = chosen;
  $("cron-backfill").hidden = body.lines.length === 0;
}

async function backfill(event) {
  event.preventDefault();
  const seconds = (id) => new Date($(id).value).getTime() / 1000;  // datetime-local: the browser's zone
  const range = { from: seconds("backfill-from"), to: seconds("backfill-to") };
  const out = $("backfill-result");
  if (!(range.from >= 0) || !(range.to >= 0)) {
    out.textContent = "give both times";
    out.className = "error";
    return;
  }
  try {
    const { status, body } = await api(`cron/${encodeURIComponent($("backfill-line").value)}/backfill`, { method: "POST", body: JSON.stringify(range) });
    out.textContent = status === 200 ? `${body.fires} fire times, ${body.created} new jobs` : body?.error ?? `error ${status}`;
    out.className = status === 200 ? "muted" : "error";
  } catch (error) {
    if (!(error instanceof NeedToken)) throw error;
  }
  await refresh();
}

async function showExternalWorkers() {
  const { status, body } = await api("workers");
  if (status === 404 || status === 405) {
    fill($("ext-workers").tBodies[0], [], "none", 4);
    return;
  }
  if (status !== 200 || !Array.isArray(body?.workers)) {
    fill($("ext-workers").tBodies[0], [], body?.error ?? `error ${status}`, 4);
    return;
  }
  const rows = body.workers.map((w) =>
    el("tr", {}, el("td", {}, w.type), el("td", {}, w.name), el("td", {}, ago(w.last_beat)),
      el("td", {}, (w.jobs ?? []).length)));
  fill($("ext-workers").tBodies[0], rows, "none", 4);
}

async function showKeys() {
  const { status, body } = await api("keys?size=100");
  if (status !== 200) {
    fill($("keys").tBodies[0], [], body?.error ?? `error ${status}`, 7);
    return;
  }
  const rows = body.keys.map((k) => {
    const path = `keys/${k.key.split("/").map(encodeURIComponent).join("/")}`;
    const toggle = el("button", { type: "button", class: k.paused ? "resume" : "pause" }, k.paused ? "resume" : "pause");
    toggle.addEventListener("click", () => act(path, "PUT", { paused: !k.paused }));
    const rate = k.rate === null ? "" : `${k.rate} / ${k.period} s`;
    return el("tr", { "data-key": k.key }, el("td", {}, k.key), el("td", {}, k.waiting), el("td", {}, k.running),
      el("td", {}, k.parallelism ?? ""), el("td", {}, rate), el("td", {}, k.paused ? "paused" : ""), el("td", {}, toggle));
  });
  fill($("keys").tBodies[0], rows, "none (jobs without a key only)", 7);
  $("keys-total").textContent = `(${body.total})`;
}

async function act(path, method, json) {
  try {
    const options = json === undefined ? { method } : { method, body: JSON.stringify(json) };
    const { status, body } = await api(path, options);
    $("updated").textContent = status < 300 ? `${method} ${decodeURIComponent(path)}: done` : `${body?.error ?? `error ${status}`}`;
    $("updated").className = status < 300 ? "muted" : "error";
  } catch (error) {
    if (!(error instanceof NeedToken)) throw error;
  }
  await refresh();
}

// --- charts: drawn on canvases from GET /history (no library, no network) -----------------------------------
const COLORS = { ok: "#17803d", bad: "#b42318", wait: "#9a6700", run: "#2563eb" };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

// lines: [{color, values}], all as long as times; gaps (null) break a line.
function drawChart(canvas, times, lines, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 44, bottom = 18, top = 6, right = 6;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  const all = lines.flatMap((line) => line.values.filter((v) => v !== null && v !== undefined));
  const max = niceMax(Math.max(0, ...all));
  const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
  const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1e-9)) * (w - left - right);
  const y = (v) => h - bottom - (v / max) * (h - top - bottom);
  ctx.strokeStyle = "#e3e6eb";
  ctx.fillStyle = "#6b7280";
  ctx.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    ctx.beginPath();
    ctx.moveTo(left, y(max * f));
    ctx.lineTo(w - right, y(max * f));
    ctx.stroke();
    ctx.fillText(`${+(max * f).toPrecision(3)}${unit}`, 2, y(max * f) + 4);
  }
  if (times.length) {
    ctx.fillText(new Date(t0 * 1000).toLocaleTimeString(), left, h - 4);
    const last = new Date(t1 * 1000).toLocaleTimeString();
    ctx.fillText(last, w - right - ctx.measureText(last).width, h - 4);
  } else {
    ctx.fillText("no data yet", left + 8, h / 2);
  }
  for (const line of lines) {
    ctx.strokeStyle = line.color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let pen = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      if (pen) ctx.lineTo(x(times[i]), y(v));
      else ctx.moveTo(x(times[i]), y(v));
      pen = true;
    });
    ctx.stroke();
  }
  canvas.dataset.points = String(times.length);
  canvas.dataset.peak = String(Math.max(0, ...all));
}

async function showCharts() {
  const { status, body } = await api("history");
  if (status !== 200) return;
  const range = document.querySelector('input[name="range"]:checked')?.value ?? "seconds";
  const rows = body[range];
  const col = (name) => rows.map((row) => row[body.fields.indexOf(name)]);
  const times = col("t");
  drawChart($("chart-rate"), times, [{ color: COLORS.ok, values: col("done") }, { color: COLORS.bad, values: col("failed") }], "");
  drawChart($("chart-late"), times, [{ color: COLORS.wait, values: col("late_p50") }, { color: COLORS.bad, values: col("late_p99") }], "s");
  drawChart($("chart-load"), times, [{ color: COLORS.wait, values: col("queued") }, { color: COLORS.run, values: col("running") }], "");
}

async function showAlerts() {
  const { status, body } = await api("alerts");
  if (status !== 200) return;
  const total = Object.values(body.counts).reduce((a, b) => a + b, 0);
  $("alert-count").textContent = total;
  $("alert-badge").className = total > 0 ? "badge on" : "badge";
  $("alert-counts").textContent = Object.entries(body.counts).map(([type, n]) => `${type} ${n}`).join(" · ");
  const rows = body.recent.map((a) =>
    el("tr", { "data-alert": a.type }, el("td", {}, when(a.at)), el("td", { class: "status-dead" }, a.type),
      el("td", {}, jobLink(a.id)), el("td", {}, a.name), el("td", {}, a.status)));
  fill($("alert-list").tBodies[0], rows, "no alerts", 5);
}

// --- refresh loop -----------------------------------------------------------------------------------------
async function refresh() {
  clearTimeout(view.timer);
  try {
    const { status, body } = await api("sys_info");
    if (status === 200) {
      showOverview(body);
      $("paused-all").hidden = !body.paused;
    }
    await Promise.all([showCharts(), showAlerts(), showKeys(), showJobs(), showDead(), showCron(), showExternalWorkers(), showDetail()]);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("updated").className = "muted";
  } catch (error) {
    if (!(error instanceof NeedToken)) {
      $("updated").textContent = `poulpe did not answer (${error.message}); trying again`;
      $("updated").className = "error";
    }
  }
  clearTimeout(view.timer); // a refresh started by a click may have ended first: one timer only
  view.timer = setTimeout(refresh, REFRESH_MS);
}

function setUp() {
  for (const s of STATUSES) $("f-status").append(el("option", { value: s }, s));
  for (const m of METHODS) $("f-method").append(el("option", { value: m }, m));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    view.status = $("f-status").value;
    view.method = $("f-method").value;
    view.name = $("f-name").value.trim();
    view.jobsPage = 1;
    const id = $("f-id").value.trim();
    if (id) openJob(id);
    refresh();
  });
  for (const input of document.querySelectorAll('input[name="range"]')) input.addEventListener("change", showCharts);
  $("jobs-prev").addEventListener("click", () => { view.jobsPage -= 1; refresh(); });
  $("jobs-next").addEventListener("click", () => { view.jobsPage += 1; refresh(); });
  $("cron-backfill").addEventListener("submit", backfill);
  $("dead-prev").addEventListener("click", () => { view.deadPage -= 1; refresh(); });
  $("dead-next").addEventListener("click", () => { view.deadPage += 1; refresh(); });
  $("pause-all").addEventListener("click", () => act("pause", "POST"));
  $("resume-all").addEventListener("click", () => act("resume", "POST"));
  $("detail-close").addEventListener("click", () => {
    view.selected = null;
    $("detail").hidden = true;
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("login").hidden = true;
    refresh();
  });
  refresh();
}

setUp();
