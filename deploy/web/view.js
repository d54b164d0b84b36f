// Agora's live view: asks /api/state once a second and draws it with Plotly (the chart) and
// plain DOM tables. Ids come from users: they go into the page as text (textContent), and
// into the chart escaped -- Plotly reads a little HTML in its labels, and "%{...}" templates
// in its legend names, so <, >, & and % become character references.
"use strict";

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;")
  .replace(/>/g, "&gt;").replace(/%/g, "&#37;");

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "–" : String(value);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(id, rows, build) {
  const body = document.querySelector(`#${id} tbody`);
  const fresh = document.createElement("tbody");
  for (const r of rows) fresh.appendChild(build(r));
  body.replaceWith(fresh);
}

function drawGantt(s) {
  const byJob = new Map();
  for (const b of s.bars) {
    if (!byJob.has(b.job)) byJob.set(b.job, []);
    byJob.get(b.job).push(b);
  }
  const traces = [];
  window.agoraTraceJobs = [...byJob.keys()];   // the job of each trace, in order (for tests)
  for (const [job, bars] of byJob) {
    traces.push({
      type: "bar", orientation: "h", name: esc(job),
      y: bars.map((b) => b.row),
      base: bars.map((b) => new Date(b.start * 1000)),
      x: bars.map((b) => Math.max(1, (b.end - b.start) * 1000)),
      customdata: bars.map((b) => b.site),
      text: bars.map((b) => esc(`${b.task}[${b.instance}]`)),
      hovertext: bars.map((b) => esc(`${b.job}/${b.task}[${b.instance}] ${b.state} on ${b.node}`)),
      hoverinfo: "text", textposition: "inside",
      marker: { line: { width: bars.map((b) => (b.state === "running" ? 2 : 0)), color: "#000" } },
    });
  }
  const layout = {
    barmode: "overlay", height: Math.max(260, 60 + 36 * s.rows.length),
    margin: { l: 110, r: 20, t: 10, b: 40 }, showlegend: true,
    xaxis: { type: "date", title: "time" },
    yaxis: { type: "category", categoryorder: "array", categoryarray: s.rows.slice().reverse(),
             range: [-0.5, s.rows.length - 0.5], title: "site/node" },
    uirevision: "keep",
  };
  Plotly.react("gantt", traces, layout, { displaylogo: false, responsive: true });
}

function draw(s) {
  window.agoraState = s;
  drawGantt(s);
  fill("jobs", s.jobs.slice().reverse(), (j) => {
    const tr = document.createElement("tr");
    tr.dataset.job = j.job;
    tr.dataset.sites = j.running_on.join(",");
    cell(tr, j.job); cell(tr, j.origin); cell(tr, j.outcome + (j.reason ? ` (${j.reason})` : ""));
    cell(tr, Object.entries(j.instances).map(([k, v]) => `${v} ${k}`).join(", "));
    cell(tr, j.running_on.join(", "));
    return tr;
  });
  fill("replicas", s.replicas, (r) => {
    const tr = document.createElement("tr");
    cell(tr, r.replica);
    if (r.error) { cell(tr, r.error).colSpan = 8; return tr; }
    if (r.primary === r.replica) tr.className = "primary";
    for (const k of ["view", "primary", "last_committed", "last_executed", "stable_checkpoint",
                     "view_changes"]) cell(tr, r[k], "num");
    cell(tr, r.decision_latency_samples ? `${r.decision_latency_ms_p50} / ${r.decision_latency_ms_p99}` : null, "num");
    cell(tr, r.decision_latency_samples ? `${r.decision_latency_ready_ms_p50} / ${r.decision_latency_ready_ms_p99}` : null, "num");
    return tr;
  });
  fill("agents", s.agents, (a) => {
    const tr = document.createElement("tr");
    cell(tr, a.site);
    if (a.error) { cell(tr, a.error).colSpan = 4; return tr; }
    for (const k of ["messages_sent", "messages_suppressed", "decisions", "decision_ms_mean"])
      cell(tr, a[k], "num");
    return tr;
  });
  const st = document.getElementById("status");
  st.className = "";
  st.textContent = `schedule version ${s.version} · ${s.sites.length} sites · ` +
    `${s.jobs.length} jobs · updated ${new Date(s.now * 1000).toLocaleTimeString()}`;
}

async function tick() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    const s = await r.json();
    if (!r.ok) throw new Error(s.error || r.statusText);
    draw(s);
  } catch (e) {
    const st = document.getElementById("status");
    st.className = "error";
    st.textContent = `not answering: ${e.message}`;
  } finally {
    setTimeout(tick, 1000);
  }
}

tick();
