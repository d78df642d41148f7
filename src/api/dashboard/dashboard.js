// muster's dashboard. Reads the node's JSON (/health, /v1/members, /v1/raft, /v1/stack,
// /api/v1/services) and follows the registry's event stream (/api/v1/ws), resuming from the
// last revision it saw. Every string from the server is put in the page as text
// (textContent), never as markup. An ES module (deferred, strict); the page's global scope
// gets only `window.musterDashboard`.

import { clear, clock, el, fact, pill } from "/ui/dom.js";
import { drawHealth, drawMembers, drawRaft, drawStack, eventItem, serviceRow } from "/ui/views.js";

const TOKEN_KEY = "muster.token";
const POLL_MS = 3000; // members, raft, stack
const PAGE_LIMIT = 100; // the REST list's largest page
const PAGES_MAX = 1000; // at most 100 000 services are listed
const EVENTS_MAX = 200; // lines kept in the event feed
const ROWS_MAX = 500; // service rows drawn at once
const PROGRESS_MS = 5000; // asked of the stream: a message at least this often
const STALL_MS = 4 * PROGRESS_MS; // silence after which the stream is presumed dead
const RETRY_MS_MIN = 500;
const RETRY_MS_MAX = 15000;
const FETCH_MS_MAX = 10000; // a call that takes longer is abandoned (the node may hang)
// Heartbeats and health checks that change no status make no event: re-read these fields.
const FRESHEN_MS = 10000;
const STATUSES = ["active", "inactive", "unhealthy", "expired"];

const state = {
  token: readToken(),
  services: new Map(), // service_id -> service JSON
  revision: null, // the last registry revision applied (null: not listed yet)
  listing: false,
  freshening: false,
  ws: null,
  wsRetryMs: RETRY_MS_MIN,
  wsTimer: null,
  stallTimer: null,
  relist: false,
  events: 0,
  raft: null,
  health: null,
  drawPending: false,
  flash: new Set(),
};

// Exposed for inspection (and for the browser test's check that the page never reloads).
window.musterDashboard = { loadedAt: Date.now(), state: state, applyEvent: applyEvent };

const $ = (id) => document.getElementById(id);

// ---- token ----

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch (_) {
    return "";
  }
}

function storeToken(token) {
  state.token = token;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // storage refused (private mode): the token lives until the page closes
  }
}

function askToken(message) {
  $("token-message").textContent = message;
  $("token-panel").hidden = false;
  if (document.activeElement !== $("token-input")) $("token-input").focus();
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJson(path) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_MS_MAX);
  let response;
  try {
    response = await fetch(path, { headers: headers, cache: "no-store", signal: abort.signal });
  } catch (e) {
    throw new HttpError(0, abort.signal.aborted ? "no answer within " + FETCH_MS_MAX / 1000 + " s" : e.message);
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error) message = String(body.detail || body.error);
    } catch (_) {
      // not JSON: keep the status line
    }
    if (response.status === 401) {
      askToken((state.token ? "The token was refused: " : "This node asks for an API token: ") + message);
    }
    throw new HttpError(response.status, message);
  }
  return response.json();
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// ---- members, raft, stack: polled ----

async function poll() {
  const [health, members, raft, stack] = await Promise.allSettled([
    getJson("/health"),
    getJson("/v1/members"),
    getJson("/v1/raft"),
    getJson("/v1/stack"),
  ]);
  if (health.status === "fulfilled") {
    state.health = health.value;
    drawHealth($("node-line"), health.value);
    document.title = "muster · " + health.value.node;
  }
  if (raft.status === "fulfilled") state.raft = raft.value;
  if (members.status === "fulfilled") {
    const me = state.health ? state.health.node : null;
    drawMembers($("members"), $("members-count"), members.value, me, state.raft);
  }
  const value = (r) => (r.status === "fulfilled" ? r.value : null);
  drawRaft($("raft"), value(raft), value(health));
  drawStack($("stack"), stack);
  const failed = [health, members, raft].find((r) => r.status === "rejected");
  if (failed && failed.reason.status !== 401) showError("Cannot read the node: " + failed.reason.message);
  else if (!failed) showError("");
  $("refreshed").textContent = "refreshed " + clock(Date.now());
  if (state.revision === null && !state.listing) listServices();
  scheduleDraw(); // relative times move on
}

function pollLoop() {
  poll().catch((e) => showError(String(e))).finally(() => setTimeout(pollLoop, POLL_MS));
}

// ---- services: listed once, then kept current by the event stream ----

/** Every service, page by page; with the oldest revision the pages saw. */
async function readAll(query) {
  const all = new Map();
  let skip = 0, revision = null;
  for (let page = 0; page < PAGES_MAX; page++) {
    const answer = await getJson("/api/v1/services?limit=" + PAGE_LIMIT + "&skip=" + skip + query);
    for (const s of answer.services) all.set(s.service_id, s);
    revision = revision === null ? answer.revision : Math.min(revision, answer.revision);
    skip += answer.services.length;
    if (answer.services.length === 0 || skip >= answer.total) break;
  }
  return { all, revision };
}

async function listServices() {
  state.listing = true;
  try {
    // Pages may see different revisions: resume after the oldest, replaying is harmless.
    const { all, revision } = await readAll("");
    state.services = all;
    state.revision = revision;
    state.relist = false;
    $("revision").textContent = String(revision);
    drawFilters();
    scheduleDraw();
    connect();
  } catch (e) {
    if (e.status !== 401) showError("Cannot list services: " + e.message);
  } finally {
    state.listing = false;
  }
}

/**
 * Renewed leases and health checks that change no status come with no event: takes the newer
 * lease times and last check of the services the page has from this node's copy. Which
 * services exist, and their status, stay with the event stream.
 */
async function freshen() {
  if (state.revision === null || state.freshening) return;
  state.freshening = true;
  try {
    const { all } = await readAll("&stale=true");
    let changed = false;
    for (const [id, fresh] of all) {
      const mine = state.services.get(id);
      if (!mine) continue;
      if (fresh.last_heartbeat_ms > mine.last_heartbeat_ms || fresh.expires_at_ms > mine.expires_at_ms) {
        for (const k of ["last_heartbeat_ms", "last_heartbeat", "expires_at_ms", "expires_at"]) mine[k] = fresh[k];
        changed = true;
      }
      const [a, b] = [fresh.last_health_check, mine.last_health_check];
      if (a && (!b || a.at_ms > b.at_ms)) {
        mine.last_health_check = a;
        changed = true;
      }
    }
    if (changed) scheduleDraw();
  } catch (_) {
    // the next round tries again; the poll shows what is wrong with the node
  } finally {
    state.freshening = false;
  }
}

function matches(s, f) {
  if (f.type && s.type !== f.type) return false;
  if (f.status && s.status !== f.status) return false;
  if (f.tag && !(s.tags || []).includes(f.tag)) return false;
  if (f.text) {
    const hay = [s.name, s.service_id, s.host, s.description || ""].join("\n").toLowerCase();
    if (!hay.includes(f.text)) return false;
  }
  return true;
}

function filters() {
  return {
    text: $("filter-text").value.trim().toLowerCase(),
    type: $("filter-type").value,
    status: $("filter-status").value,
    tag: $("filter-tag").value,
  };
}

function fillSelect(select, label, values) {
  const keep = select.value;
  const options = [el("option", { value: "" }, label)];
  for (const v of [...values].sort()) options.push(el("option", { value: v }, v));
  if (keep && !values.has(keep)) options.push(el("option", { value: keep }, keep));
  select.replaceChildren(...options);
  select.value = keep;
}

function drawFilters() {
  const types = new Set(), tags = new Set();
  for (const s of state.services.values()) {
    types.add(s.type);
    for (const t of s.tags || []) tags.add(t);
  }
  fillSelect($("filter-type"), "all types", types);
  fillSelect($("filter-tag"), "all tags", tags);
}

function scheduleDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  requestAnimationFrame(() => {
    state.drawPending = false;
    drawServices();
  });
}

function drawServices() {
  const f = filters();
  const now = Date.now();
  const shown = [...state.services.values()].filter((s) => matches(s, f));
  shown.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.service_id < b.service_id ? -1 : 1));
  const rows = shown.slice(0, ROWS_MAX).map((s) => serviceRow(s, now, state.flash.has(s.service_id)));
  $("services").tBodies[0].replaceChildren(...rows);
  state.flash.clear();
  const total = state.services.size;
  $("services-count").textContent = shown.length === total ? String(total) : shown.length + " of " + total;
  const note = $("services-note");
  if (state.revision === null) note.textContent = "Loading services…";
  else if (shown.length === 0) note.textContent = total === 0 ? "No services registered." : "No service matches the filters.";
  else if (shown.length > ROWS_MAX) note.textContent = "Showing the first " + ROWS_MAX + "; narrow the filters to see the others.";
  else note.textContent = "";
  note.hidden = note.textContent === "";
  drawSummary();
}

function drawSummary() {
  const counts = { active: 0, inactive: 0, unhealthy: 0, expired: 0 };
  for (const s of state.services.values()) counts[s.status] = (counts[s.status] || 0) + 1;
  const dl = $("summary");
  clear(dl);
  fact(dl, "services", String(state.services.size));
  for (const st of STATUSES) fact(dl, st, pill(String(counts[st]), counts[st] ? st : "zero"));
  fact(dl, "revision", state.revision === null ? "–" : String(state.revision));
}

// ---- the event stream ----

function setConn(text, kind) {
  const c = $("conn");
  c.textContent = text;
  c.className = "pill pill-" + kind;
}

function connect() {
  clearTimeout(state.wsTimer);
  if (state.ws || state.revision === null) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let url = scheme + "//" + location.host + "/api/v1/ws?revision=" + state.revision + "&progress_ms=" + PROGRESS_MS;
  if (state.token) url += "&token=" + encodeURIComponent(state.token);
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    reconnectLater("cannot open the stream: " + e.message);
    return;
  }
  state.ws = ws;
  ws.onopen = () => {
    setConn("live", "active");
    state.wsRetryMs = RETRY_MS_MIN;
    watchStall();
  };
  ws.onmessage = (m) => {
    watchStall();
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch (_) {
      return;
    }
    onMessage(msg);
  };
  ws.onclose = (c) => {
    if (state.ws !== ws) return;
    state.ws = null;
    clearTimeout(state.stallTimer);
    reconnectLater(c.reason || "the stream closed (" + c.code + ")");
  };
}

function watchStall() {
  clearTimeout(state.stallTimer);
  state.stallTimer = setTimeout(() => {
    if (state.ws) state.ws.close(4000, "no message in " + STALL_MS + " ms");
  }, STALL_MS);
}

function reconnectLater(why) {
  setConn("reconnecting", "unhealthy");
  $("conn").title = why;
  const wait = state.wsRetryMs;
  state.wsRetryMs = Math.min(RETRY_MS_MAX, state.wsRetryMs * 2);
  state.wsTimer = setTimeout(() => {
    if (state.relist) {
      state.revision = null; // the poll loop lists again, then reconnects
      listServices();
    } else {
      connect();
    }
  }, wait);
}

function onMessage(msg) {
  if (msg.type === "progress") {
    if (typeof msg.revision === "number" && msg.revision > state.revision) {
      state.revision = msg.revision;
      $("revision").textContent = String(state.revision);
    }
  } else if (msg.type === "compacted") {
    // History we missed is gone: list again once the server closes the stream.
    state.relist = true;
  } else if (msg.service && typeof msg.revision === "number") {
    applyEvent(msg);
  }
}

function applyEvent(ev) {
  if (state.revision !== null && ev.revision <= state.revision) return false;
  const s = ev.service;
  if (ev.type === "service_deregistered") state.services.delete(s.service_id);
  else state.services.set(s.service_id, s);
  state.revision = ev.revision;
  state.flash.add(s.service_id);
  $("revision").textContent = String(ev.revision);
  feed(ev);
  drawFilters();
  scheduleDraw();
  return true;
}

function feed(ev) {
  const list = $("events");
  list.prepend(eventItem(ev));
  while (list.children.length > EVENTS_MAX) list.lastElementChild.remove();
  state.events += 1;
  $("events-count").textContent = String(state.events);
  $("events-empty").hidden = true;
}

// ---- wiring ----

function init() {
  for (const id of ["filter-text", "filter-type", "filter-status", "filter-tag"]) {
    $(id).addEventListener("input", scheduleDraw);
  }
  $("token-button").addEventListener("click", () => askToken("Set the API token this page sends."));
  $("token-panel").addEventListener("submit", (e) => {
    e.preventDefault();
    storeToken($("token-input").value.trim());
    $("token-input").value = "";
    $("token-panel").hidden = true;
    if (state.ws) state.ws.close(1000, "new token");
    poll().catch((err) => showError(String(err)));
  });
  $("token-forget").addEventListener("click", () => {
    storeToken("");
    $("token-input").value = "";
    $("token-panel").hidden = true;
  });
  drawSummary();
  pollLoop();
  setInterval(freshen, FRESHEN_MS);
}

init();
