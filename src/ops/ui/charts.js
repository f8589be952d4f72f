// gtmd status page, history: polls /history every 5 s and draws it as SVG made here (no
// library, nothing from another origin). Per member a state band and its probe latency
// (average line, min–max band); per name its answer shares stacked and its query rate; per
// pool its healthy members. The changes kept are marked on every chart and listed below with
// filters. Every value from the server is put in the page as text, never as markup.
"use strict";

const HISTORY_MS = 5000;
// Members drawn at most: those whose state changed first (/history's `limit`).
const MEMBERS_DRAWN = 40;
const SVG = "http://www.w3.org/2000/svg";
const W = 1200; // viewBox width; the chart scales to the page
// The window drawn: how many steps wide, and where the first step kept falls in it.
let view = { steps: 1, offset: 0 };
const STATE_CLASS = { up: "up", suspect: "suspect", down: "down", disabled: "disabled", unknown: "unknown" };
let lastHistory = null;

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "tabindex") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// A step's start as the browser's local time, and in UTC for the hover text.
function when(ms) {
  const d = new Date(ms);
  return { local: d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }), utc: d.toISOString().replace(".000", "") };
}

// A chart as wide as the page and as tall as its kind says (app.css), whatever the width:
// the drawing stretches to it.
function chart(height, label, kind) {
  return svg("svg", { viewBox: `0 0 ${W} ${height}`, preserveAspectRatio: "none", class: `chart chart-${kind}`, role: "img", "aria-label": label, tabindex: 0 });
}

// Vertical marks at the changes kept that fall in the window.
function marks(c, hist, height, events) {
  const from = hist.start_ms - view.offset * hist.step * 1000;
  const span = view.steps * hist.step * 1000;
  for (const e of events) {
    const t = Date.parse(e.time);
    if (!(t >= from && t <= from + span)) continue;
    const x = ((t - from) / span) * W;
    const w = when(t);
    c.append(svg("line", { x1: x, x2: x, y1: 0, y2: height, class: "mark" }, svg("title", {}, `${w.local} (${w.utc} UTC): ${e.event} ${e.member || e.name || e.pool || e.region || e.target || ""}`)));
  }
}

// The member's state per step as coloured bands, each with its time and state on hover.
function stateBand(hist, m, events) {
  const c = chart(12, `${m.member}: ${describeStates(hist, m.state)}`, "band");
  const dx = W / view.steps;
  m.state.forEach((s, k) => {
    if (!s) return;
    const w = when(hist.start_ms + k * hist.step * 1000);
    c.append(svg("rect", { x: (view.offset + k) * dx, y: 0, width: dx + 0.5, height: 12, class: `band band-${STATE_CLASS[s] || "unknown"}`, "data-state": s },
      svg("title", {}, `${w.local} (${w.utc} UTC): ${s}`)));
  });
  marks(c, hist, 12, events);
  return c;
}

// In words, for screen readers: each run of one state with its start.
function describeStates(hist, states) {
  const runs = [];
  states.forEach((s, k) => {
    if (!s) return;
    if (!runs.length || runs[runs.length - 1].s !== s) runs.push({ s, k });
  });
  if (!runs.length) return "no data yet";
  return runs.map((r) => `${r.s} from ${when(hist.start_ms + r.k * hist.step * 1000).local}`).join(", ");
}

function polyline(values, dx, y, cls) {
  const pts = [];
  const out = [];
  values.forEach((v, k) => {
    if (v == null) {
      if (pts.length) out.push(svg("polyline", { points: pts.join(" "), class: cls }));
      pts.length = 0;
      return;
    }
    pts.push(`${(view.offset + k + 0.5) * dx},${y(v)}`);
  });
  if (pts.length) out.push(svg("polyline", { points: pts.join(" "), class: cls }));
  return out;
}

// Probe latency: the average as a line over the min–max band, on a scale to the window's max.
function latencyChart(hist, m, events) {
  const l = m.latency_ms;
  const hi = topOf(l.max);
  const H = 50;
  const y = (v) => H - 2 - (v / hi) * (H - 4);
  const dx = W / view.steps;
  const last = l.avg.filter((v) => v != null).slice(-1)[0];
  const c = chart(H, `${m.member} probe latency: up to ${hi.toFixed(1)} ms in the window${last != null ? `, ${last.toFixed(1)} ms last` : ""}`, "latency");
  l.max.forEach((hi, k) => {
    const lo = l.min[k];
    if (hi == null || lo == null) return;
    c.append(svg("rect", { x: (view.offset + k) * dx, y: y(hi), width: dx + 0.5, height: Math.max(0.5, y(lo) - y(hi)), class: "range" }));
  });
  c.append(...polyline(l.avg, dx, y, "avg"));
  marks(c, hist, H, events);
  return c;
}

// Answer shares stacked (each answer a band, in the order given), with the answers named.
function sharesChart(hist, n, events) {
  const H = 40;
  const dx = W / view.steps;
  const now = n.shares.map((s) => `${s.answer} ${Math.round((s.share[s.share.length - 1] || 0) * 100)}%`).join(", ");
  const c = chart(H, `${n.name} answer shares, now ${now || "none"}`, "shares");
  const base = new Array(hist.steps).fill(0);
  n.shares.forEach((s, i) => {
    s.share.forEach((v, k) => {
      if (!v) return;
      // A name answers both families: each family's shares add to 1, so scale by the
      // families present in the step.
      const total = n.shares.reduce((t, o) => t + (o.share[k] || 0), 0) || 1;
      const hgt = (v / total) * H;
      const w = when(hist.start_ms + k * hist.step * 1000);
      c.append(svg("rect", { x: (view.offset + k) * dx, y: H - base[k] - hgt, width: dx + 0.5, height: hgt, class: `share share-${i % 6}`, "data-answer": s.answer },
        svg("title", {}, `${w.local} (${w.utc} UTC): ${s.answer} ${Math.round(v * 100)}%`)));
      base[k] += hgt;
    });
  });
  marks(c, hist, H, events);
  return c;
}

function rateChart(hist, n, events) {
  const H = 30;
  const hi = topOf(n.qps);
  const dx = W / view.steps;
  const last = n.qps.filter((v) => v != null).slice(-1)[0];
  const c = chart(H, `${n.name} queries: up to ${hi.toFixed(1)} per second${last != null ? `, ${last.toFixed(1)} last` : ""}`, "rate");
  c.append(...polyline(n.qps, dx, (v) => H - 2 - (v / hi) * (H - 4), "qps"));
  marks(c, hist, H, events);
  return c;
}

function legend(n) {
  return h("p", { class: "legend" }, ...n.shares.map((s, i) => h("span", { class: `key share-${i % 6}` }, s.answer)));
}

function topOf(values) {
  return Math.max(1, ...values.filter((v) => v != null));
}

function renderHistory(hist) {
  lastHistory = hist;
  const asked = document.getElementById("history-window").value;
  // "auto": as wide as what is kept (at least a minute), else the window asked.
  const wide = asked === "auto" ? Math.max(hist.steps, 12) : Math.max(hist.steps, Math.round(Number(asked) / hist.step), 1);
  view = { steps: wide, offset: wide - hist.steps };
  const from = when(hist.start_ms - view.offset * hist.step * 1000);
  const to = when(hist.start_ms + hist.steps * hist.step * 1000);
  const kept = view.offset ? `; kept since ${when(hist.start_ms).local}` : "";
  document.getElementById("history-range").textContent = `${from.local} to ${to.local} (steps of ${hist.step} s${kept}; hover for UTC)`;
  const ev = (filter) => hist.events.filter(filter);
  document.getElementById("history-members").replaceChildren(...hist.members.map((m) => {
    const mine = ev((e) => (e.pool && e.member && `${e.pool}/${e.member}` === m.member) || e.target === m.member || e.target === `pool:${m.member.split("/")[0]}`);
    return h("div", { class: "series", "data-history-member": m.member },
      h("h3", {}, m.member), stateBand(hist, m, mine),
      h("p", { class: "caption" }, `probe latency, ms (line: average; band: min to max), up to ${topOf(m.latency_ms.max).toFixed(1)}`),
      latencyChart(hist, m, mine),
      ...(m.checks || []).flatMap((c) => [
        h("p", { class: "caption" }, `check ${c.member}: state, and latency up to ${topOf(c.latency_ms.max).toFixed(1)} ms`),
        stateBand(hist, { ...c, member: `${m.member} check ${c.member}` }, mine),
        latencyChart(hist, { ...c, member: `${m.member} check ${c.member}` }, mine),
      ]));
  }));
  document.getElementById("history-names").replaceChildren(...hist.names.map((n) => {
    const mine = ev((e) => e.name === n.name || (e.member && n.shares.some((s) => s.answer === e.address)));
    return h("div", { class: "series", "data-history-name": n.name },
      h("h3", {}, n.name), sharesChart(hist, n, mine), legend(n),
      h("p", { class: "caption" }, `queries per second, up to ${topOf(n.qps).toFixed(1)}`),
      rateChart(hist, n, mine));
  }));
  document.getElementById("history-count").textContent = hist.members_total > hist.members.length
    ? `${hist.members.length} of ${hist.members_total} members drawn: those whose state changed first (gtmd ctl history MEMBER gives any other)`
    : "";
  document.getElementById("history-pools").replaceChildren(...hist.pools.map((p) => {
    const last = p.healthy.filter((v) => v != null).slice(-1)[0];
    const least = Math.min(...p.healthy.filter((v) => v != null));
    return h("li", {}, `${p.name}: ${last ?? "?"} healthy now, ${Number.isFinite(least) ? least : "?"} at the fewest in the window`);
  }));
  renderEvents();
}

// The changes kept (as /status gives them, twice a second), filtered by member, name and kind.
let statusEvents = null;
function showEvents(events) {
  statusEvents = events;
  renderEvents();
}

function renderEvents() {
  const all = statusEvents || (lastHistory && lastHistory.events);
  if (!all) return;
  const f = (id) => document.getElementById(id).value.trim().toLowerCase();
  const [member, name, kind] = [f("filter-member"), f("filter-name"), f("filter-kind")];
  const shown = all.filter((e) => {
    const who = `${e.pool || ""}/${e.member || ""} ${e.address || ""}`.toLowerCase();
    return (!member || who.includes(member)) && (!name || (e.name || "").toLowerCase().includes(name)) && (!kind || e.event.toLowerCase().includes(kind));
  });
  document.getElementById("events").replaceChildren(...shown.map((e) => {
    const w = when(Date.parse(e.time));
    const what = [e.pool && e.member ? `${e.pool}/${e.member}` : e.pool || e.region || e.name || e.target || "", e.new_state ? `→ ${e.new_state}` : "", e.reason || e.error || ""].filter(Boolean).join(" ");
    return h("li", {}, h("time", { dateTime: e.time, title: `${w.utc} UTC` }, `${new Date(Date.parse(e.time)).toLocaleString()} `), h("b", {}, e.event), " ", what);
  }));
  document.getElementById("events-count").textContent = `${shown.length} of ${all.length} kept`;
}

// Asks again just after the next step closes (the steps end every `step` seconds), so that a
// change is drawn within a step of happening; at most every second, at least every step.
// The server's clock decides (its `now_ms`), not the browser's. A request made before the
// window changed is dropped when it answers, and only the latest request sets the next one.
let nextPoll = null;
let asking = 0;
async function pollHistory() {
  clearTimeout(nextPoll);
  const mine = ++asking;
  const asked = document.getElementById("history-window").value;
  const since = asked === "auto" ? 3600 : asked;
  let wait = HISTORY_MS;
  try {
    const r = await fetch(`/history?since=${encodeURIComponent(since)}&limit=${MEMBERS_DRAWN}`, { cache: "no-store" });
    if (!r.ok) throw new Error(`history ${r.status}`);
    const hist = await r.json();
    if (mine !== asking) return;
    renderHistory(hist);
    const closes = hist.start_ms + (hist.steps + 1) * hist.step * 1000 + 300;
    wait = Math.min(hist.step * 1000, Math.max(1000, closes - hist.now_ms));
  } catch (e) {
    if (mine !== asking) return;
    document.getElementById("history-range").textContent = `cannot read the history: ${e.message}`;
  }
  nextPoll = setTimeout(pollHistory, wait);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["history-form", "events-form"]) document.getElementById(id).addEventListener("submit", (ev) => ev.preventDefault());
  document.getElementById("history-window").addEventListener("change", pollHistory);
  for (const id of ["filter-member", "filter-name", "filter-kind"]) document.getElementById(id).addEventListener("input", renderEvents);
  pollHistory();
});
