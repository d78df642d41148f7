// Small DOM helpers for muster's dashboard. Every string goes in as a text node, never as
// markup; attributes are set one by one.

/** An element with attributes and children (nodes, or strings put in as text). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "title") node.title = String(v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === "") continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function pill(text, kind) {
  return el("span", { class: "pill pill-" + String(kind || text).replace(/[^a-z0-9-]/gi, "") }, text);
}

export function chip(text) {
  return el("span", { class: "chip" }, text);
}

export function fact(dl, name, ...values) {
  dl.append(el("dt", {}, name), el("dd", {}, ...values));
}

export function clear(node) {
  node.replaceChildren();
}

// One table cell; its content in one element, so the phone layout (label | content) holds.
export function cell(label, ...children) {
  const content = el("span", { class: "cell" }, ...children);
  return el("td", { "data-label": label }, content.childNodes.length ? content : "");
}

export function ago(ms) {
  if (typeof ms !== "number" || !isFinite(ms) || ms < 0) return "–";
  if (ms < 1500) return "now";
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s ago";
  const m = Math.round(s / 60);
  if (m < 120) return m + " min ago";
  return Math.round(m / 60) + " h ago";
}

export function clock(when) {
  const d = new Date(when);
  if (isNaN(d.getTime())) return "–";
  return d.toLocaleTimeString([], { hour12: false });
}

export function duration(seconds) {
  if (typeof seconds !== "number") return "–";
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  if (d > 0) return d + "d " + h + "h";
  if (h > 0) return h + "h " + m + "m";
  if (m > 0) return m + "m " + s + "s";
  return s + "s";
}
