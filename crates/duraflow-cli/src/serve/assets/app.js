// The duraflow dashboard: a page over the /v1 API, with no build step and no dependency.
"use strict";

const STATUSES = ["pending", "running", "completed", "failed", "cancelled", "terminated"];
const TERMINAL = ["completed", "failed", "cancelled", "terminated"];
const REFRESH_MS = 2000;
const TOKEN_KEY = "duraflow-token";

let refreshTimer = null;
// Bumped at each navigation: a render of an earlier page schedules no refresh.
let generation = 0;
let listState = { status: "", name: "", queue: "", cursor: "", cursors: [], auto: true };

// ---- helpers ----

/** An element with attributes (on* as listeners) and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function time(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(3) + " s";
  const m = Math.floor(ms / 60000);
  if (m < 60) return m + " m " + ((ms % 60000) / 1000).toFixed(0) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " m";
}

function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

function status(s) {
  return h("span", { class: "status " + s, "data-status": s }, s);
}

function instanceLink(id) {
  return h("a", { href: "#/instance/" + encodeURIComponent(id), class: "instance-link" }, id);
}

function notice(text, ok) {
  const el = document.getElementById("notice");
  el.textContent = text || "";
  el.className = ok ? "ok" : "";
  el.hidden = !text;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API with the tab's token; errors carry the API's code and message. */
async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const err = (data && data.error) || {};
    if (response.status === 401) showTokenPanel(true);
    throw new ApiError(response.status, err.code || "http_" + response.status,
      err.message || response.statusText);
  }
  return data;
}

// ---- token ----

function showTokenPanel(show) {
  document.getElementById("token-panel").hidden = !show;
  if (show) document.getElementById("token-input").focus();
}

function setupToken() {
  document.getElementById("token-button").addEventListener("click", () =>
    showTokenPanel(document.getElementById("token-panel").hidden));
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("token-input").value = "";
    showTokenPanel(false);
    notice("");
    route();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    notice("Token forgotten.", true);
  });
}

// ---- confirmation ----

/** Asks before an action; resolves with the fields' values, or null when declined. */
function confirmAction(title, text, fields) {
  return new Promise((resolve) => {
    const modal = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    const box = document.getElementById("confirm-fields");
    box.replaceChildren(...fields.map((f) => h("label", { class: "field" }, f.label,
      f.multiline
        ? h("textarea", { name: f.name, rows: 4 }, f.value || "")
        : h("input", { name: f.name, value: f.value || "" }))));
    const form = document.getElementById("confirm-form");
    const done = (values) => {
      modal.hidden = true;
      form.onsubmit = null;
      document.getElementById("confirm-no").onclick = null;
      resolve(values);
    };
    form.onsubmit = (e) => {
      e.preventDefault();
      const values = {};
      for (const f of fields) values[f.name] = form.elements[f.name].value;
      done(values);
    };
    document.getElementById("confirm-no").onclick = () => done(null);
    modal.hidden = false;
    document.getElementById("confirm-yes").focus();
  });
}

// ---- counts ----

async function loadCounts() {
  const nav = document.getElementById("counts");
  try {
    const stats = await api("GET", "/v1/stats");
    nav.replaceChildren(
      h("a", { href: "#/", "data-status": "all", class: listState.status ? "" : "active" },
        "all", h("b", {}, stats.total)),
      ...STATUSES.map((s) => h("a", {
        href: "#/?status=" + s, "data-status": s, class: listState.status === s ? "active" : "",
      }, s, h("b", { class: "count" }, stats.instances[s] || 0))));
  } catch (e) {
    nav.replaceChildren();
  }
}

// ---- the list ----

function readListQuery() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  listState.status = query.get("status") || "";
  listState.name = query.get("name") || "";
  listState.queue = query.get("queue") || "";
}

async function renderList() {
  const gen = generation;
  readListQuery();
  const view = document.getElementById("view");
  const statusSelect = h("select", { id: "filter-status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: listState.status === s }, s)));
  const nameInput = h("input", { id: "filter-name", placeholder: "workflow name", value: listState.name });
  const queueInput = h("input", { id: "filter-queue", placeholder: "queue", value: listState.queue });
  const searchInput = h("input", { id: "search-id", placeholder: "instance id" });
  const apply = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (statusSelect.value) q.set("status", statusSelect.value);
    if (nameInput.value.trim()) q.set("name", nameInput.value.trim());
    if (queueInput.value.trim()) q.set("queue", queueInput.value.trim());
    listState.cursor = "";
    listState.cursors = [];
    location.hash = "#/" + (q.toString() ? "?" + q : "");
  };
  const search = async (e) => {
    e.preventDefault();
    const id = searchInput.value.trim();
    if (!id) return;
    try {
      await api("GET", "/v1/instances/" + encodeURIComponent(id));
      location.hash = "#/instance/" + encodeURIComponent(id);
    } catch (err) {
      notice(err.message);
    }
  };
  const auto = h("input", { type: "checkbox", id: "auto-refresh", checked: listState.auto,
    onchange: (e) => { listState.auto = e.target.checked; schedule(renderRows, gen); } });
  const rows = h("tbody", { id: "instances" });
  const pager = h("div", { class: "pager" });
  view.replaceChildren(
    h("h1", {}, "Instances"),
    h("div", { class: "filters" },
      h("form", { class: "filters", onsubmit: apply },
        h("label", {}, "Status", statusSelect),
        h("label", {}, "Name", nameInput),
        h("label", {}, "Queue", queueInput),
        h("button", { type: "submit", id: "apply-filters" }, "Filter")),
      h("form", { class: "filters", onsubmit: search },
        h("label", {}, "Search by id", searchInput),
        h("button", { type: "submit", id: "search" }, "Open")),
      h("label", { class: "hint" }, h("span", {}, "Refresh every 2 s"), auto)),
    h("table", {},
      h("thead", {}, h("tr", {}, ["Id", "Name", "Status", "Queue", "Attempt", "Created", "Updated"]
        .map((t) => h("th", {}, t)))),
      rows),
    pager);

  async function renderRows() {
    const q = new URLSearchParams({ limit: "50" });
    if (listState.status) q.set("status", listState.status);
    if (listState.name) q.set("name", listState.name);
    if (listState.queue) q.set("queue", listState.queue);
    if (listState.cursor) q.set("cursor", listState.cursor);
    try {
      const page = await api("GET", "/v1/instances?" + q);
      notice("");
      rows.replaceChildren(...page.instances.map((i) => h("tr", { "data-id": i.id },
        h("td", {}, instanceLink(i.id)), h("td", {}, i.name), h("td", {}, status(i.status)),
        h("td", {}, i.queue), h("td", { class: "num" }, i.attempt),
        h("td", {}, time(i.created_at)), h("td", {}, time(i.updated_at)))));
      if (!page.instances.length) {
        rows.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No instances match.")));
      }
      pager.replaceChildren(
        listState.cursors.length ? h("button", { class: "quiet", onclick: () => {
          listState.cursor = listState.cursors.pop(); renderRows(); } }, "Previous") : "",
        page.next ? h("button", { class: "quiet", id: "next-page", onclick: () => {
          listState.cursors.push(listState.cursor); listState.cursor = page.next; renderRows(); } },
        "Next") : "");
    } catch (e) {
      notice(e.message);
    }
    loadCounts();
    schedule(renderRows, gen);
  }
  await renderRows();
}

// ---- an instance ----

function timelineBar(op, start, span, last) {
  const end = op.finished_at === null ? last : op.finished_at;
  const left = span ? ((op.scheduled_at - start) / span) * 100 : 0;
  const width = span ? Math.max(((end - op.scheduled_at) / span) * 100, 0.5) : 100;
  return h("div", { class: "bar" }, h("span", {
    class: op.finished_at === null ? "open" : "",
    style: `left:${Math.min(left, 100).toFixed(2)}%;width:${Math.min(width, 100 - Math.min(left, 100)).toFixed(2)}%`,
  }));
}

function timelineTable(timeline, running) {
  const ops = timeline.operations;
  // A running instance's open operations last until now; a finished one's ended with it.
  const times = ops.flatMap((o) => [o.scheduled_at, o.finished_at]).concat(timeline.marks.map((m) => m.at))
    .concat(running ? [Date.now()] : []).filter((t) => t !== null);
  const end = Math.max(...times);
  const start = Math.min(...times);
  const span = Math.max(...times) - start;
  if (!ops.length) return h("p", { class: "muted", id: "timeline" }, "No operations in this execution.");
  return h("table", { id: "timeline" },
    h("thead", {}, h("tr", {}, ["Op", "Kind", "Name", "Scheduled", "Finished", "Duration", "Attempts",
      "Retries", "Outcome", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, ops.map((o) => h("tr", {
      class: "op " + (o.outcome === "failed" || o.outcome === "timed_out" ? "failed" : o.outcome),
      "data-op": o.op, "data-outcome": o.outcome,
    },
      h("td", {}, o.op), h("td", {}, o.kind),
      h("td", {}, o.name || "", o.child ? [" → ", instanceLink(o.child)] : ""),
      h("td", {}, time(o.scheduled_at)), h("td", {}, time(o.finished_at)),
      h("td", { class: "num" }, duration(o.duration_ms)),
      h("td", { class: "num" }, o.attempts || ""), h("td", { class: "num" }, o.retries || ""),
      h("td", { class: "outcome", title: o.failure || "" }, o.outcome,
        o.failure ? h("div", { class: "muted" }, o.failure) : ""),
      h("td", {}, timelineBar(o, start, span, end))))));
}

async function act(what, id, title, text, fields, path, body) {
  const values = await confirmAction(title, text, fields);
  if (!values) return;
  try {
    await api("POST", path(values), body(values));
    notice(what + " sent to " + id + ".", true);
    generation += 1;
    renderInstance(id);
  } catch (e) {
    notice(e.message);
  }
}

async function renderInstance(id, execution) {
  const gen = generation;
  const view = document.getElementById("view");
  const path = "/v1/instances/" + encodeURIComponent(id);
  let info, timeline, history;
  try {
    info = await api("GET", path);
    const ex = execution || info.execution;
    [timeline, history] = await Promise.all([
      api("GET", path + "/timeline?execution=" + ex),
      api("GET", path + "/history?execution=" + ex),
    ]);
  } catch (e) {
    view.replaceChildren(h("h1", {}, id), h("p", { class: "muted" }, e.message),
      h("a", { href: "#/" }, "Back to the instances"));
    return;
  }
  const finished = TERMINAL.includes(info.status);
  const fields = [
    ["Status", status(info.status)], ["Workflow", info.name], ["Queue", info.queue],
    ["Execution", info.execution], ["Attempt", info.attempt],
    ["Created", time(info.created_at)], ["Updated", time(info.updated_at)],
  ];
  if (info.version != null) fields.push(["Version", info.version]);
  if (info.journal_len != null) fields.push(["Journal", info.journal_len + " events" +
    (info.last_event_at != null ? ", the last at " + time(info.last_event_at) : "")]);
  if (info.waiting_for) fields.push(["Waiting", info.waiting_for]);
  if (info.parent) fields.push(["Parent", h("span", {}, instanceLink(info.parent.instance_id),
    ` (execution ${info.parent.execution}, op ${info.parent.op})`)]);
  if (info.children.length) fields.push(["Children", h("span", {}, info.children.map((c, i) =>
    [i ? ", " : "", instanceLink(c.id), ` (${c.name}${c.detached ? ", detached" : ""})`]))]);
  const executions = info.execution > 1 ? h("select", { id: "execution",
    onchange: (e) => { generation += 1; renderInstance(id, Number(e.target.value)); } },
    Array.from({ length: info.execution }, (_, i) => h("option", {
      value: i + 1, selected: (execution || info.execution) === i + 1 }, "execution " + (i + 1))))
    : "";
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← Instances")),
    h("h1", { id: "instance-id" }, id, " ", status(info.status)),
    h("div", { class: "actions" },
      h("button", { id: "action-raise", disabled: finished, onclick: () => act("Event", id,
        "Raise an event on " + id + "?", "The event is buffered until the workflow waits for it.",
        [{ name: "name", label: "Event name" }, { name: "data", label: "Data (JSON)", value: "null", multiline: true }],
        (v) => path + "/events/" + encodeURIComponent(v.name),
        (v) => { try { return JSON.parse(v.data || "null"); } catch (e) { throw new ApiError(400, "malformed_json", "The data is not JSON: " + e.message); } }) },
      "Raise event"),
      h("button", { id: "action-cancel", class: "danger", disabled: finished, onclick: () => act("Cancellation", id,
        "Cancel " + id + "?", "The instance ends as cancelled at its next turn; its attached children are cancelled too.",
        [{ name: "reason", label: "Reason", value: "cancelled from the dashboard" }],
        () => path + "/cancel", (v) => ({ reason: v.reason })) }, "Cancel"),
      h("button", { id: "action-terminate", class: "danger", disabled: finished, onclick: () => act("Termination", id,
        "Terminate " + id + "?", "No more of its code runs; its attached children are terminated too.",
        [{ name: "reason", label: "Reason", value: "terminated from the dashboard" }],
        () => path + "/terminate", (v) => ({ reason: v.reason })) }, "Terminate")),
    h("dl", { class: "info" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("div", { class: "payloads" },
      h("div", {}, h("h3", {}, "Input"), h("pre", { id: "input" }, json(info.input))),
      info.output !== null && info.output !== undefined
        ? h("div", {}, h("h3", {}, "Output"), h("pre", { id: "output" }, json(info.output))) : "",
      info.failure ? h("div", {}, h("h3", {}, "Failure"), h("pre", { class: "failure", id: "failure" },
        json(info.failure))) : ""),
    h("h2", {}, "Timeline ", executions),
    timelineTable(timeline, !finished && (execution || info.execution) === info.execution),
    h("h2", {}, "Events"),
    h("table", { id: "marks" }, h("tbody", {}, timeline.marks.map((m) => h("tr", { class: m.failed ? "failed" : "" },
      h("td", { class: "num" }, m.index), h("td", {}, time(m.at)), h("td", {}, m.event), h("td", {}, m.detail || ""))))),
    h("details", {}, h("summary", {}, `Journal (${history.events.length} events)`),
      h("pre", {}, json(history.events))));
  loadCounts();
  if (!finished) schedule(() => renderInstance(id, execution), gen);
}

// ---- routing ----

function schedule(fn, gen) {
  if (gen !== generation) return;
  clearTimeout(refreshTimer);
  refreshTimer = null;
  const onList = !location.hash.startsWith("#/instance/");
  if (onList && !listState.auto) return;
  refreshTimer = setTimeout(async () => {
    if (!document.getElementById("confirm").hidden) return schedule(fn, gen);
    await fn();
  }, REFRESH_MS);
}

function route() {
  generation += 1;
  clearTimeout(refreshTimer);
  const hash = location.hash || "#/";
  if (hash.startsWith("#/instance/")) {
    renderInstance(decodeURIComponent(hash.slice("#/instance/".length)));
  } else {
    renderList();
  }
}

setupToken();
window.addEventListener("hashchange", route);
route();
