// keygate's dashboard: the live flows, the refusals with their Allow host / Deny
// buttons, the secrets' use counts and the effective policy, from the admin API.
//
// SECURITY: hosts, paths, reasons and client names come from the traffic, which an
// attacker may choose. The DOM is built with createElement and textContent only; no
// data is ever parsed as HTML, and the Content-Security-Policy allows no inline
// script. The API holds no secret value, so neither does this page.
"use strict";

const MAX_FLOWS = 1000; // the server's ring holds as many
const SECRETS_EVERY_MS = 5000;
const POLICY_EVERY_MS = 15000;

const state = {
  flows: [], // newest first
  ids: new Set(),
  refusals: new Map(), // host -> {count, last, allow, code, reason}
  resolved: new Map(), // host -> id of the newest flow when a rule was added for it
  secretNames: new Set(),
  pending: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const reason = body && body.reason ? body.reason : `${response.status} ${response.statusText}`;
    throw new Error(reason);
  }
  return body;
}

function notice(text) {
  $("notice").textContent = text;
}

// ---- flows ----

function addFlow(flow, live) {
  if (!flow || typeof flow.id !== "number" || state.ids.has(flow.id)) return;
  state.ids.add(flow.id);
  if (live || state.flows.length === 0 || flow.id > state.flows[0].id) {
    state.flows.unshift(flow);
  } else {
    state.flows.push(flow);
    state.flows.sort((a, b) => b.id - a.id);
  }
  while (state.flows.length > MAX_FLOWS) state.ids.delete(state.flows.pop().id);
  if (flow.secret && !state.secretNames.has(flow.secret)) {
    state.secretNames.add(flow.secret);
    renderSecretFilter();
  }
  if (flow.decision === "deny" && flow.host) noteRefusal(flow);
  schedule();
}

function noteRefusal(flow) {
  const seen = state.refusals.get(flow.host);
  if (!seen) {
    state.refusals.set(flow.host, { count: 1, last: flow });
  } else {
    seen.count += 1;
    if (flow.id > seen.last.id) seen.last = flow;
  }
}

function schedule() {
  if (state.pending) return;
  state.pending = true;
  requestAnimationFrame(() => {
    state.pending = false;
    renderFlows();
    renderRefusals();
  });
}

function filters() {
  return {
    host: $("filter-host").value.trim().toLowerCase(),
    decision: $("filter-decision").value,
    secret: $("filter-secret").value,
  };
}

function shown(flow, f) {
  if (f.host && !(flow.host || "").toLowerCase().includes(f.host)) return false;
  if (f.decision && flow.decision !== f.decision) return false;
  if (f.secret && flow.secret !== f.secret) return false;
  return true;
}

function time(ts) {
  const date = new Date(ts);
  return Number.isNaN(date.getTime()) ? String(ts || "") : date.toLocaleTimeString();
}

function bytes(n) {
  const v = Number(n) || 0;
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} kB`;
  return `${(v / 1024 / 1024).toFixed(1)} MB`;
}

function flowRow(flow) {
  const row = el("tr");
  row.dataset.id = String(flow.id);
  row.dataset.host = flow.host || "";
  row.dataset.decision = flow.decision || "";
  if (flow.decision === "deny") row.className = "deny";
  const client = flow.command ? `${flow.command} (${flow.client})` : flow.client;
  const cells = [
    el("td", time(flow.ts)),
    el("td", client),
    el("td", flow.method || flow.kind),
    el("td", flow.port && flow.port !== 443 && flow.port !== 80 ? `${flow.host}:${flow.port}` : flow.host),
    el("td", flow.path, "path"),
    el("td", flow.code ? `${flow.decision} (${flow.code})` : flow.decision, `decision-${flow.decision}`),
    el("td", flow.secret),
    el("td", flow.status, "num"),
    el("td", `${bytes(flow.bytes_up)} / ${bytes(flow.bytes_down)}`, "num"),
    el("td", flow.ms, "num"),
  ];
  if (flow.reason) row.title = flow.reason;
  for (const cell of cells) row.appendChild(cell);
  return row;
}

function renderFlows() {
  const f = filters();
  const body = $("flow-rows");
  const rows = document.createDocumentFragment();
  let count = 0;
  for (const flow of state.flows) {
    if (!shown(flow, f)) continue;
    rows.appendChild(flowRow(flow));
    count += 1;
  }
  body.replaceChildren(rows);
  $("flow-count").textContent = `${count} of ${state.flows.length}`;
}

function renderSecretFilter() {
  const select = $("filter-secret");
  const chosen = select.value;
  const options = [el("option", "any secret")];
  options[0].value = "";
  for (const name of [...state.secretNames].sort()) {
    const option = el("option", name);
    option.value = name;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = chosen;
}

// ---- refusals ----

function renderRefusals() {
  const list = $("refusals");
  const items = [];
  const open = [...state.refusals.entries()]
    .filter(([host, r]) => !(state.resolved.get(host) >= r.last.id))
    .sort((a, b) => b[1].last.id - a[1].last.id);
  for (const [host, r] of open) {
    const item = el("li");
    item.dataset.host = host;
    const label = el("span", host, "host");
    if (r.last.reason) label.title = r.last.reason;
    item.appendChild(label);
    item.appendChild(el("span", `×${r.count}`, "count"));
    const allow = el("button", "Allow host", "allow");
    allow.type = "button";
    allow.title = `add ${r.last.allow || host} to network.allow`;
    allow.addEventListener("click", () => addRule("allow", r.last.allow || host, host, item));
    const deny = el("button", "Deny", "deny");
    deny.type = "button";
    deny.title = `add ${host} to network.deny`;
    deny.addEventListener("click", () => addRule("deny", host, host, item));
    item.appendChild(allow);
    item.appendChild(deny);
    items.push(item);
  }
  list.replaceChildren(...items);
  $("refusals-empty").hidden = items.length > 0;
}

async function addRule(list, pattern, host, item) {
  for (const button of item.querySelectorAll("button")) button.disabled = true;
  try {
    const answer = await api("/api/rules", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ [list]: pattern }),
    });
    const newest = state.flows.length ? state.flows[0].id : 0;
    state.resolved.set(host, newest);
    notice(answer && answer.changed === false ? `${pattern} was already in network.${list}` : `added ${pattern} to network.${list}`);
    renderRefusals();
  } catch (e) {
    notice(`could not add ${pattern} to network.${list}: ${e.message}`);
    for (const button of item.querySelectorAll("button")) button.disabled = false;
  }
  refreshPolicy();
}

// ---- secrets and policy ----

function join(list) {
  return Array.isArray(list) && list.length ? list.join(", ") : "—";
}

async function refreshSecrets() {
  try {
    const body = await api("/api/secrets");
    const rows = (body.secrets || []).map((s) => {
      const row = el("tr");
      row.dataset.name = s.name;
      const expiry = s.token_expires_at === undefined ? "" : s.token_expires_at || "no token yet";
      const cells = [
        el("td", s.stored ? s.name : `${s.name} (not stored)`),
        el("td", s.kind),
        el("td", join(s.hosts)),
        el("td", s.tripwires ? `${s.uses} (${s.tripwires} tripped)` : s.uses, "num"),
        el("td", s.last_use ? time(s.last_use) : "never"),
        el("td", expiry ? time(expiry) : ""),
      ];
      for (const cell of cells) row.appendChild(cell);
      if (!state.secretNames.has(s.name)) {
        state.secretNames.add(s.name);
        renderSecretFilter();
      }
      return row;
    });
    if (rows.length === 0) {
      const row = el("tr");
      const cell = el("td", "No secret registered.", "empty");
      cell.colSpan = 6;
      row.appendChild(cell);
      rows.push(row);
    }
    $("secret-rows").replaceChildren(...rows);
  } catch (e) {
    notice(`secrets: ${e.message}`);
  }
}

async function refreshPolicy() {
  try {
    const p = await api("/api/policy");
    const pairs = [
      ["mode", p.mode],
      ["allow", join(p.allow)],
      ["deny", join(p.deny)],
      ["secret hosts", join(p.secret_hosts)],
      ["intercept", p.intercept],
      ["private addresses", p.private_addresses],
      ["config", p.config_file],
    ];
    const nodes = [];
    for (const [name, value] of pairs) {
      if (value === undefined) continue;
      nodes.push(el("dt", name));
      const dd = el("dd", value);
      dd.dataset.key = name;
      nodes.push(dd);
    }
    $("policy").replaceChildren(...nodes);
  } catch (e) {
    notice(`policy: ${e.message}`);
  }
}

// ---- the live feed ----

async function loadRecent() {
  try {
    const body = await api("/api/flows?limit=200");
    for (const flow of body.flows || []) addFlow(flow, false);
  } catch (e) {
    notice(`flows: ${e.message}`);
  }
}

function connect() {
  const live = $("live");
  const source = new EventSource("/api/flows/stream");
  let dropped = false;
  source.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.remove("off");
    // Flows made while the feed was down come from the ring.
    if (dropped) loadRecent();
  });
  source.addEventListener("error", () => {
    dropped = true;
    live.textContent = "reconnecting";
    live.classList.add("off");
  });
  source.addEventListener("message", (event) => {
    try {
      addFlow(JSON.parse(event.data), true);
    } catch (_) {
      // not a flow: ignore it
    }
  });
}

function start() {
  for (const id of ["filter-host", "filter-decision", "filter-secret"]) {
    $(id).addEventListener("input", schedule);
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  connect();
  loadRecent();
  refreshSecrets();
  refreshPolicy();
  setInterval(refreshSecrets, SECRETS_EVERY_MS);
  setInterval(refreshPolicy, POLICY_EVERY_MS);
}

start();
