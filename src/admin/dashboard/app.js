// keygate's dashboard: the live flows, the requests held for an answer (network.ask)
// with their Allow once / Allow always / Deny buttons, the refusals with their Allow
// host / Deny buttons, the secrets' use counts and the effective policy, from the admin
// API.
//
// SECURITY: hosts, paths, reasons and client names come from the traffic, which an
// attacker may choose. The DOM is built with createElement and textContent only; no
// data is ever parsed as HTML, and the Content-Security-Policy allows no inline
// script. The API holds no secret value, so neither does this page.
"use strict";

const MAX_FLOWS = 1000; // the server's ring holds as many
const SECRETS_EVERY_MS = 5000;
const POLICY_EVERY_MS = 15000;
const APPROVALS_EVERY_MS = 1000; // a held request waits for network.ask_timeout

const state = {
  flows: [], // newest first
  ids: new Set(),
  refusals: new Map(), // host -> {count, last, allow, code, reason}
  resolved: new Map(), // host -> id of the newest flow when a rule was added for it
  secretNames: new Set(),
  pending: false,
  approvals: new Map(), // id (string) -> its list item, oldest first
  answered: new Set(), // ids answered here that the last GET may still have listed
  approvalsBusy: false,
  approvalsFailing: false,
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

// ---- approvals ----

async function refreshApprovals() {
  // One GET at a time: answers arrive in the order they were asked.
  if (state.approvalsBusy) return;
  state.approvalsBusy = true;
  try {
    renderApprovals((await api("/api/approvals")) || {});
    state.approvalsFailing = false;
  } catch (e) {
    // Said once, not every second.
    if (!state.approvalsFailing) notice(`approvals: ${e.message}`);
    state.approvalsFailing = true;
  } finally {
    state.approvalsBusy = false;
  }
}

// Rows are added and removed, never rebuilt: a button under the pointer stays the same
// node between two polls, and a row keeps its error until its request is gone.
function renderApprovals(body) {
  const pending = Array.isArray(body.pending) ? body.pending : [];
  const listed = new Set();
  const list = $("approval-list");
  for (const held of pending) {
    if (!held || typeof held.id !== "number") continue;
    const id = String(held.id);
    listed.add(id);
    if (state.approvals.has(id) || state.answered.has(id)) continue;
    const item = approvalItem(held);
    state.approvals.set(id, item);
    list.appendChild(item);
  }
  for (const [id, item] of state.approvals) {
    if (listed.has(id)) continue;
    item.remove();
    state.approvals.delete(id);
  }
  // Ids are never reused: one the server no longer lists will not come back.
  for (const id of state.answered) {
    if (!listed.has(id)) state.answered.delete(id);
  }
  const empty = $("approvals-empty");
  empty.textContent =
    body.ask === false ? "Nothing is waiting (network.ask is off: refused requests are not held)." : "Nothing is waiting.";
  if (typeof body.ask_timeout_secs === "number") empty.title = `a request is held up to ${body.ask_timeout_secs} s`;
  empty.hidden = state.approvals.size > 0;
}

function approvalItem(held) {
  const item = el("li", null, "approval");
  item.dataset.id = String(held.id);
  item.dataset.host = held.host || "";
  const what = held.what || `${held.host}:${held.port}`;
  item.appendChild(el("div", what, "what"));
  const meta = el("div", null, "meta");
  meta.appendChild(el("span", held.client, "client"));
  const since = el("span", `since ${time(held.since)}`, "since");
  since.title = String(held.since || "");
  meta.appendChild(since);
  item.appendChild(meta);
  const actions = el("div", null, "actions");
  const buttons = [
    ["Allow once", "once", "approve-once allow", "let this request through, this once"],
    ["Allow always", "always", "approve-always allow", `add ${held.allow || held.host} to network.allow`],
    ["Deny", "deny", "approve-deny deny", "refuse this request"],
  ];
  for (const [label, decision, className, title] of buttons) {
    const button = el("button", label, className);
    button.type = "button";
    button.title = title;
    button.addEventListener("click", () => answerApproval(held, decision, item));
    actions.appendChild(button);
  }
  item.appendChild(actions);
  const problem = el("p", null, "approval-error");
  problem.setAttribute("role", "alert");
  problem.hidden = true;
  item.appendChild(problem);
  return item;
}

const ANSWERED = { once: "allowed once", always: "allowed always", deny: "denied" };

async function answerApproval(held, decision, item) {
  const id = String(held.id);
  const buttons = item.querySelectorAll("button");
  for (const button of buttons) button.disabled = true;
  const problem = item.querySelector(".approval-error");
  problem.hidden = true;
  problem.textContent = "";
  const what = held.what || held.host;
  try {
    await api(`/api/approvals/${encodeURIComponent(id)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ decision }),
    });
    state.answered.add(id);
    state.approvals.delete(id);
    item.remove();
    $("approvals-empty").hidden = state.approvals.size > 0;
    notice(decision === "always" ? `${what}: added ${held.allow || held.host} to network.allow` : `${what}: ${ANSWERED[decision]}`);
    if (decision === "always") refreshPolicy();
  } catch (e) {
    problem.textContent = `could not answer (${ANSWERED[decision]}): ${e.message}`;
    problem.hidden = false;
    notice(`${what}: ${e.message}`);
    for (const button of buttons) button.disabled = false;
  }
  refreshApprovals();
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
  refreshApprovals();
  setInterval(refreshApprovals, APPROVALS_EVERY_MS);
  setInterval(refreshSecrets, SECRETS_EVERY_MS);
  setInterval(refreshPolicy, POLICY_EVERY_MS);
}

start();
