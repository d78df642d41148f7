// Renders what the node answers into muster's dashboard: the header line, the members
// table, the raft and stack cards, service rows and event feed lines. Text only (see dom.js).

import { ago, cell, chip, clear, clock, duration, el, fact, pill } from "/ui/dom.js";

/** The header line: node, cluster, version, uptime (from `/health`). */
export function drawHealth(line, h) {
  clear(line);
  line.append(
    el("strong", {}, h.node), " in ", el("strong", {}, h.cluster),
    " · v", h.version, " · up ", duration(h.uptime_seconds)
  );
}

/** A member's place in raft (leader, voter, learner, or ""), from `/v1/raft` by its raft_id tag. */
function raftRoleOf(member, raft) {
  const id = member.tags && member.tags.raft_id;
  if (!raft || !id) return "";
  if (raft.leader_id === id) return "leader";
  if (raft.voters.some((v) => v.id === id)) return "voter";
  if (raft.learners.some((v) => v.id === id)) return "learner";
  return "";
}

/** The members table (`/v1/members`); `me` is this node's name, `raft` the `/v1/raft` view. */
export function drawMembers(table, count, members, me, raft) {
  const tbody = table.tBodies[0];
  const rows = members.map((m) => {
    const pairs = Object.entries(m.tags || {}).map(([k, v]) => chip(k + "=" + v));
    const tags = pairs.length ? el("span", { class: "chips" }, ...pairs) : "";
    const name = el("span", {}, m.name);
    if (m.name === me) name.append(" ", el("span", { class: "me" }, "this node"));
    const role = raftRoleOf(m, raft);
    return el("tr", { "data-member": m.name },
      cell("Name", name),
      cell("Address", el("span", { class: "addr" }, m.addr + ":" + m.port)),
      cell("Status", pill(m.status)),
      cell("Mode", pill(m.mode)),
      cell("Raft", role ? pill(role) : "–"),
      cell("Last seen", ago(m.last_seen_ms_ago)),
      cell("Tags", tags));
  });
  tbody.replaceChildren(...rows);
  const alive = members.filter((m) => m.status === "alive").length;
  count.textContent = alive + " alive of " + members.length;
}

function names(list) {
  if (!list || list.length === 0) return "none";
  return list.map((m) => m.name || m.id).join(", ");
}

/** The raft card (`/v1/raft`, with member counts from `/health`). */
export function drawRaft(dl, raft, health) {
  clear(dl);
  if (!raft) {
    fact(dl, "raft", "unknown");
    return;
  }
  fact(dl, "leader", raft.leader ? el("strong", {}, raft.leader) : pill("none", "failed"));
  fact(dl, "term", String(raft.term));
  fact(dl, "this node", raft.node + " ", pill(raft.role));
  fact(dl, "voters", String(raft.voters.length) + ": " + names(raft.voters));
  fact(dl, "learners", String(raft.learners.length) + (raft.learners.length ? ": " + names(raft.learners) : ""));
  if (health && health.members) {
    const c = health.members;
    fact(dl, "members", c.alive + " alive, " + c.failed + " failed, " + c.left + " left");
  }
}

/** The stack card from `/v1/stack`'s settled result (503: no supervisor on this node). */
export function drawStack(dl, result) {
  clear(dl);
  if (result.status === "rejected") {
    fact(dl, "supervisor", result.reason.status === 503 ? "none on this node" : result.reason.message);
    return;
  }
  const s = result.value;
  const want = s.want || {};
  fact(dl, "wants", want.stack ? pill(want.stack) : "no stack", want.stack ? " epoch " + want.epoch : "");
  if (want.server) fact(dl, "server", want.server.node + " (" + want.server.addr + ")");
  fact(dl, "docker", s.docker || "–");
  if (s.stack_file) fact(dl, "stack file", s.stack_file);
  const o = s.observed;
  if (o) {
    const running = o.containers.filter((c) => c.state === "running").length;
    fact(dl, "containers", running + " running of " + o.containers.length + " ",
      pill(o.converged ? "converged" : "converging", o.converged ? "active" : "unhealthy"));
  }
  const t = s.last_transition;
  if (t) {
    const from = t.from.stack || "nothing", to = t.to.stack || "nothing";
    fact(dl, "last change", from + " → " + to + " at " + clock(t.at_unix_ms), el("br"),
      el("small", {}, t.reason));
  }
  const err = s.last_error || (o && o.last_error && o.last_error.message);
  if (err) fact(dl, "error", el("span", { class: "bad" }, err));
}

// The last active health check ({at_ms, at, ok, latency_ms, error, consecutive_*}), when
// the service has one; nothing otherwise.
function healthCell(s) {
  const c = s.last_health_check;
  if (!c || typeof c !== "object") return cell("Health check");
  const ok = typeof c.ok === "boolean" ? c.ok : !c.error;
  const parts = [ok ? pill("passing", "active") : pill("failing", "expired")];
  if (typeof c.latency_ms === "number") parts.push(" " + c.latency_ms + " ms");
  const at = typeof c.at_ms === "number" ? c.at_ms : c.at;
  if (at !== undefined && at !== null) parts.push(" at " + clock(at));
  if (!ok && c.consecutive_failures > 1) parts.push(el("br"), el("small", {}, c.consecutive_failures + " failures in a row"));
  if (c.error) parts.push(el("br"), el("small", { class: "bad" }, String(c.error)));
  return cell("Health check", ...parts);
}

function heartbeatCell(s, now) {
  const beat = s.last_heartbeat_ms > 0 ? ago(now - s.last_heartbeat_ms) : "never";
  const left = Math.round((s.expires_at_ms - now) / 1000);
  const expiry = s.status === "expired" ? "expired" : left >= 0 ? "expires in " + left + " s" : "overdue";
  return cell("Heartbeat", beat, el("br"), el("small", {}, "ttl " + s.ttl + " s, " + expiry));
}

/** One row of the services table. */
export function serviceRow(s, now, flash) {
  const name = el("span", {}, el("strong", {}, s.name), el("br"), el("small", { class: "id" }, s.service_id));
  if (s.description) name.append(el("br"), el("small", {}, s.description));
  const tags = (s.tags || []).length ? el("span", { class: "chips" }, ...s.tags.map(chip)) : "";
  const row = el("tr", { "data-service-id": s.service_id },
    cell("Name", name),
    cell("Type", s.type, el("br"), el("small", {}, s.protocol)),
    cell("Address", el("span", { class: "addr" }, s.host + ":" + s.port)),
    cell("Status", pill(s.status)),
    cell("Tags", tags),
    heartbeatCell(s, now),
    healthCell(s));
  if (flash) row.className = "flash";
  return row;
}

/** One line of the event feed: time, kind, service, its status when that is the news, revision. */
export function eventItem(ev) {
  const kind = String(ev.type).replace(/^service_/, "").replace(/_/g, " ");
  const gone = ev.type === "service_deregistered" || ev.type === "service_expired";
  const tone = gone ? "expired" : ev.type === "health_status_changed" ? "unhealthy" : "active";
  const news = ev.type === "health_status_changed" || ev.type === "service_updated";
  return el("li", { "data-revision": ev.revision, "data-type": ev.type },
    el("time", {}, clock(ev.timestamp || Date.now())),
    pill(kind, tone),
    el("strong", {}, ev.service.name),
    el("small", { class: "id" }, ev.service.service_id),
    news ? pill(ev.service.status) : "",
    el("small", { class: "rev" }, "rev " + ev.revision));
}
