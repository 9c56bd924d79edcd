// The console's live parts: the overview's figures and chart (every 5 s), an action's progress
// (every second until it ends), and "select all". The pages work without it.
"use strict";

const POINTS = 120;

function setFigure(root, name, text) {
  for (const el of root.querySelectorAll(`[data-figure="${name}"]`)) el.textContent = text;
}

function drawChart(svg, series) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const ns = "http://www.w3.org/2000/svg";
  for (const y of [45, 90, 135]) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", "0"); line.setAttribute("x2", "600"); line.setAttribute("y1", y); line.setAttribute("y2", y);
    line.setAttribute("class", "grid"); svg.appendChild(line);
  }
  for (const [name, values] of Object.entries(series)) {
    if (values.length < 2) continue;
    const top = Math.max(1, ...values);
    const step = 600 / (POINTS - 1);
    const start = 600 - step * (values.length - 1);
    const points = values.map((v, i) => `${(start + i * step).toFixed(1)},${(175 - (v / top) * 165).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", name);
    svg.appendChild(line);
  }
}

function overview() {
  const first = document.getElementById("first");
  const svg = document.getElementById("chart");
  if (!first || !svg) return;
  const series = { depth: [], rate: [], failed: [] };
  let last = JSON.parse(first.textContent);
  const push = (name, value) => { series[name].push(value); if (series[name].length > POINTS) series[name].shift(); };
  const main = (data) => (data.queues || []).find((q) => q.role === "queue") || {};
  push("depth", main(last).visible || 0);
  async function tick() {
    try {
      const response = await fetch("/api/overview", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const now = await response.json();
      for (const q of now.queues) {
        const row = document.querySelector(`#queues tr[data-role="${q.role}"]`);
        if (!row || q.problem) continue;
        setFigure(row, "visible", q.visible); setFigure(row, "in_flight", q.in_flight); setFigure(row, "delayed", q.delayed);
        setFigure(row, "oldest", q.oldest_age_seconds == null ? "n/a" : `${q.oldest_age_seconds} s`);
      }
      const seconds = Math.max(0.001, now.at - last.at);
      const p = now.processors, before = last.processors;
      if (p) {
        for (const name of ["handled", "failed", "dead_lettered", "in_flight", "running", "concurrency"]) {
          setFigure(document, name, Math.round(p[name] || 0));
        }
        const rate = before ? Math.max(0, (p.handled - before.handled) / seconds) : 0;
        const failed = before ? Math.max(0, ((p.failed || 0) - (before.failed || 0)) / seconds) : 0;
        setFigure(document, "handled_rate", rate.toFixed(1)); setFigure(document, "failed_rate", failed.toFixed(1));
        push("rate", rate); push("failed", failed);
      }
      const c = now.canary;
      if (c) {
        setFigure(document, "canary_up", c.canary_up === 1 ? "passed" : "failed");
        setFigure(document, "canary_success", Math.round(c.canary_success || 0));
        setFigure(document, "canary_failure", Math.round(c.canary_failure || 0));
        if (c.canary_last_success) setFigure(document, "canary_last_success", `${Math.round(now.at - c.canary_last_success)} s ago`);
      }
      push("depth", main(now).visible || 0);
      drawChart(svg, series);
      document.body.dataset.refreshed = String(now.at);
      last = now;
    } catch (error) {
      document.body.dataset.refreshError = String(error);
    }
  }
  drawChart(svg, series);
  tick();
  setInterval(tick, 5000);
}

function progress() {
  const el = document.getElementById("action");
  if (!el || el.dataset.state !== "running") return;
  const id = el.dataset.actionId;
  const timer = setInterval(async () => {
    const response = await fetch(`/api/actions/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const action = await response.json();
    el.dataset.state = action.state;
    el.querySelector('[data-field="state"]').textContent = action.state;
    for (const [name, n] of Object.entries(action.counts)) {
      const count = el.querySelector(`[data-count="${name}"]`);
      if (count) count.textContent = n;
    }
    document.querySelector('[data-field="lines"]').textContent = action.lines.join("\n");
    const problem = document.querySelector('[data-field="problem"]');
    problem.textContent = action.problem || ""; problem.hidden = !action.problem;
    const notes = document.querySelector('[data-field="notes"]');
    notes.replaceChildren(...action.notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
    if (action.state !== "running") clearInterval(timer);
  }, 1000);
}

function selectAll() {
  const all = document.querySelector("[data-select-all]");
  if (!all) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('#dead-letters tbody input[name="id"]')) box.checked = all.checked;
  });
}

function back() {
  for (const link of document.querySelectorAll("[data-back]")) {
    link.setAttribute("href", document.referrer && new URL(document.referrer).origin === location.origin ? document.referrer : "/");
  }
}

document.addEventListener("DOMContentLoaded", () => { overview(); progress(); selectAll(); back(); });
