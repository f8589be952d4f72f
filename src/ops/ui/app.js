// gtmd status page: polls /status twice a second and acts through the same admin API as
// `gtmd ctl`. Every value from the server is put in the page as text, never as markup. The
// token is kept in this tab's sessionStorage only.
"use strict";

const POLL_MS = 500;
const $ = (id) => document.getElementById(id);
let pending = null; // the target the action form disables
let names = [];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function secs(s) {
  if (s == null) return "";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function pct(x) {
  return `${(x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0)}%`;
}

function say(text, ok) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "";
}

function token() {
  return $("token").value.trim();
}

async function change(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) {
    say(`refused (${r.status}): ${text.trim()}`, false);
    return false;
  }
  say(`done: ${body.target}`, true);
  poll();
  return true;
}

function actions(target, overridden) {
  const td = el("td", {});
  if (overridden) {
    td.append(el("button", { class: "enable", type: "button", onclick: () => change("/overrides/clear", { target }) }, "Enable"));
  } else {
    td.append(el("button", { class: "disable", type: "button", onclick: () => openAction(target) }, "Disable"));
  }
  return td;
}

function openAction(target) {
  pending = target;
  $("action-target").textContent = target;
  $("action").hidden = false;
  $("reason").focus();
}

function stateCell(cls, text) {
  return el("td", { class: `state state-${cls}` }, text);
}

function none(cols, text) {
  return el("tr", {}, el("td", { class: "mute", colSpan: cols }, text));
}

function overrideFor(overrides, target) {
  return overrides.find((o) => o.target === target);
}

function render(s) {
  const up = s.members.filter((m) => m.answered).length;
  $("summary").textContent = `${s.ready ? "serving" : "waiting for the first probes"} · ${up} of ${s.members.length} members in answers · config ${s.config_generation}`;
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;

  const nb = $("names").tBodies[0];
  nb.replaceChildren(...s.names.map((n) => {
    const state = n.all_down ? (n.fail_open ? "all down: answering every member" : "all down") : n.degraded ? "degraded" : "ok";
    const cls = n.all_down ? "down" : n.degraded ? "warn" : "up";
    const answers = n.shares.map((a) => `${a.answer} ${pct(a.share)}`).join(", ") || "(none)";
    return el("tr", { "data-name": n.name }, el("td", {}, n.name), el("td", {}, n.policy), el("td", {}, n.ttl), stateCell(cls, state), el("td", { class: "answer" }, answers), el("td", { class: "recovery" }, n.recovery ? n.recovery.words : ""));
  }));

  const mb = $("members").tBodies[0];
  mb.replaceChildren(...s.members.map((m) => {
    const target = `${m.pool}/${m.name}`;
    const last = m.last_ok == null ? "not yet" : m.last_ok ? `ok ${m.last_latency_ms == null ? "" : m.last_latency_ms.toFixed(1) + " ms"}` : `failed: ${m.last_error || ""}`;
    const checks = (m.checks || []).map((c) => `${c.check}: ${c.state}${c.last_error ? " (" + c.last_error + ")" : ""}${c.decided ? " ✓" : ""}`).join("; ");
    const hold = m.held_down_secs ? `held ${secs(m.held_down_secs)} more` : "";
    const o = m.override;
    const ov = o ? `${o.action} by ${o.target}: ${o.reason}${o.ends_in_secs != null ? ", ends in " + secs(o.ends_in_secs) : ""}` : "";
    const state = m.state + (m.state === "up" && !m.answered ? " (not in answers)" : m.suspect ? " (failing)" : "");
    const row = el("tr", { "data-member": target },
      el("td", {}, target),
      el("td", {}, m.address || (m.resolved && m.resolved.length ? `${m.cname} → ${m.resolved.join(", ")}` : m.cname) || ""),
      el("td", { class: `state state-${m.state}` }, state),
      el("td", { class: "last" }, last),
      el("td", {}, checks + (m.require ? ` (need ${m.require})` : "")),
      el("td", {}, hold),
      el("td", { class: "override" }, ov),
      actions(target, o && o.target === target));
    return row;
  }));

  const pb = $("pools").tBodies[0];
  pb.replaceChildren(...s.pools.map((p) => {
    const target = `pool:${p.name}`;
    return el("tr", { "data-pool": p.name }, el("td", {}, p.name), el("td", {}, `${p.healthy} of ${p.members}`), el("td", {}, p.answered), el("td", {}, p.capacity == null ? "" : `${p.capacity}%`), actions(target, overrideFor(s.overrides, target)));
  }));

  const rb = $("regions").tBodies[0];
  if (!s.regions.length) rb.replaceChildren(none(4, "no [regions] in the configuration"));
  else rb.replaceChildren(...s.regions.map((r) => {
    const target = `region:${r.name}`;
    return el("tr", { "data-region": r.name }, el("td", {}, r.name), el("td", {}, `${r.healthy} of ${r.members}`), stateCell(r.removed ? "down" : "up", r.removed ? "removed" : "in answers"), actions(target, overrideFor(s.overrides, target)));
  }));

  if (typeof showEvents === "function") showEvents(s.events || []);

  const list = s.names.map((n) => n.name);
  if (list.join() !== names.join()) {
    names = list;
    $("explain-name").replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }

}

async function poll() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error(`status ${r.status}`);
    render(await r.json());
  } catch (e) {
    $("summary").textContent = `cannot reach gtmd: ${e.message}`;
  }
}

function explainWords(x) {
  const out = [];
  out.push(`${x.name}: policy ${x.policy}, TTL ${x.ttl} s${x.degraded ? " (degraded)" : ""}${x.client ? ", for client " + x.client : ""}.`);
  if (x.topology) out.push(x.topology.nearest ? `A nearest rule orders the pools by distance from this client (ECS scope /${x.topology.scope}).` : x.topology.rule == null ? "No topology rule matches this client." : `Topology rule ${x.topology.rule} matches (ECS scope /${x.topology.scope}).`);
  if (x.topology && x.topology.place) out.push(`Where the client is: ${x.topology.place}.`);
  if (x.order && x.order.length) out.push("Tried in order: " + x.order.map((g) => `${g.group} (${g.healthy} of ${g.members} healthy${g.enough ? "" : ", not enough"})`).join(", ") + ".");
  for (const f of x.families) {
    const odds = f.answers.map((a) => `${(a.addresses || a.names || []).join(" + ") || "nothing"} ${pct(a.probability)}`).join(", ");
    out.push(`${f.rtype}: ${f.servfail ? "SERVFAIL" : odds}${f.all_down ? " (all down)" : ""}.`);
  }
  if (x.overload) out.push(`Overload: ${x.overload}.`);
  if (x.recovery) out.push(`Recovery: ${x.recovery.words}.`);
  for (const m of x.members) out.push(`${m.pool}/${m.member} (${m.address || m.cname}): ${m.why}; in ${pct(m.in_answer)} of answers.`);
  return out;
}

async function explain(ev) {
  ev.preventDefault();
  const q = new URLSearchParams({ name: $("explain-name").value });
  if ($("explain-client").value.trim()) q.set("client", $("explain-client").value.trim());
  const r = await fetch(`/explain?${q}`);
  const box = $("explain");
  if (!r.ok) {
    box.replaceChildren(el("p", { class: "state-down" }, (await r.text()).trim()));
    return;
  }
  box.replaceChildren(...explainWords(await r.json()).map((t) => el("p", {}, t)));
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("gtmd-token") || "";
  $("token").addEventListener("input", () => sessionStorage.setItem("gtmd-token", token()));
  $("action-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { target: pending, action: "disable", reason: $("reason").value };
    if ($("for").value) body.for = $("for").value;
    if (await change("/overrides", body)) {
      $("action").hidden = true;
      $("reason").value = "";
    }
  });
  $("cancel").addEventListener("click", () => { $("action").hidden = true; });
  $("explain-form").addEventListener("submit", explain);
  poll();
  setInterval(poll, POLL_MS);
});
