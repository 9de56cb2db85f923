// Turning chat events into DOM nodes. Everything people wrote (nicknames,
// messages, topics, reasons, room names) goes in as text nodes or
// textContent, never as HTML.

import { CHAT_KINDS, findMentions, fold } from "./model.js";

// A new element: `options` may give `className`, `text` (its textContent),
// `attrs` (attributes, set with setAttribute) and `data` (dataset).
export function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined) node.textContent = options.text;
  for (const [name, value] of Object.entries(options.attrs || {})) node.setAttribute(name, value);
  Object.assign(node.dataset, options.data || {});
  for (const child of children) node.append(child);
  return node;
}

const pad = (n) => String(n).padStart(2, "0");

// <time> with the local time as HH:MM, and the full date and time in its
// title and datetime attribute. `at` is seconds since the epoch.
export function timeElement(at) {
  const date = new Date(at * 1000);
  const time = el("time", {
    className: "time",
    text: `${pad(date.getHours())}:${pad(date.getMinutes())}`,
    attrs: {
      datetime: date.toISOString(),
      title: date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" }),
    },
  });
  return time;
}

// A nickname, coloured by a hash of its folded form (eight colours in
// style.css), so each person keeps their colour.
export function nick(nickname) {
  let hash = 0;
  for (const char of fold(nickname)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return el("span", { className: `nick nick-${hash % 8}`, text: nickname });
}

// Text with the mentions of `me` wrapped in <mark>: a list of strings and
// nodes, to append to an element.
export function withMentions(text, me) {
  const parts = [];
  let last = 0;
  for (const [start, end] of findMentions(text, me)) {
    parts.push(text.slice(last, start), el("mark", { className: "mention", text: text.slice(start, end) }));
    last = end;
  }
  parts.push(text.slice(last));
  return parts;
}

function reason(text) {
  return text ? ` (${text})` : "";
}

// What each mode change means, in words.
const MODES = {
  "+o": [" made ", " an operator"],
  "-o": [" took operator status from ", ""],
  "+b": [" banned ", ""],
  "-b": [" lifted the ban on ", ""],
  "+t": [" let only operators set the topic", null],
  "-t": [" let anyone set the topic", null],
};

// The body of a chat event: what follows its time. `me` is the page's
// nickname, for highlighting mentions.
export function eventBody(event, me) {
  // One's own lines mark no mentions, even of oneself.
  if (CHAT_KINDS.has(event.type) && fold(event.nickname) === fold(me || "")) me = null;
  const span = (...parts) => el("span", { className: "text" }, ...parts);
  switch (event.type) {
    case "message":
    case "private":
      if (event.action) return [span("* ", nick(event.nickname), " ", ...withMentions(event.text, me))];
      return [nick(event.nickname), span(...withMentions(event.text, me))];
    case "action":
      return [span("* ", nick(event.nickname), " ", ...withMentions(event.text, me))];
    case "join":
      return [span(nick(event.nickname), ` joined ${event.room}`)];
    case "part":
      return [span(nick(event.nickname), ` left ${event.room}${reason(event.reason)}`)];
    case "quit":
      return [span(nick(event.nickname), ` quit${reason(event.reason)}`)];
    case "nick":
      return [span(nick(event.old), " is now known as ", nick(event.new))];
    case "topic":
      return event.topic
        ? [span(nick(event.nickname), " set the topic: ", el("q", { text: event.topic }))]
        : [span(nick(event.nickname), " cleared the topic")];
    case "kick":
      return [span(nick(event.operator), " removed ", nick(event.nickname), ` from ${event.room}${reason(event.reason)}`)];
    case "mode": {
      const [verb, rest] = MODES[event.change] || [` set mode ${event.change} `, ""];
      const parts = [nick(event.operator), verb];
      if (rest !== null && event.target) parts.push(nick(event.target), rest);
      return [span(...parts)];
    }
    default:
      return [span(`(${event.type})`)];
  }
}

// One log line for a chat event, with its id in data-id.
export function eventLine(event, me) {
  const classes = ["line", `line-${event.type}`, CHAT_KINDS.has(event.type) ? "line-chat" : "line-event"];
  // A private /me from IRC looks like an action; a NOTICE (which bots
  // send, and never answer) is set apart.
  if (event.action) classes.push("line-action");
  if (event.notice) classes.push("line-notice");
  const own = CHAT_KINDS.has(event.type) && fold(event.nickname) === fold(me || "");
  if (own) classes.push("own");
  else if ((event.type === "message" || event.type === "action") && findMentions(event.text, me).length) {
    classes.push("mentions-me");
  }
  const line = el("li", { className: classes.join(" "), data: { testid: "log-line", id: String(event.id) } });
  line.append(timeElement(event.at), ...eventBody(event, me));
  return line;
}

// A line from the server for this person only ("notice" or "error"), or
// from the page itself ("status"), with no id. `parts` are strings or nodes.
export function systemLine(kind, ...parts) {
  const line = el("li", { className: `line line-system line-${kind}`, data: { testid: "log-line" } });
  const text = el("span", { className: "text" }, ...parts);
  line.append(timeElement(Date.now() / 1000), text);
  return line;
}
