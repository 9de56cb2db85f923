// The page: signing in, the list of rooms and private conversations, the
// current window's log, topic and members, search, and notifications.
// The socket and reconnecting are connection.js's, what is known of the
// chat is model.js's, and turning events into DOM nodes is render.js's.

import { ChatConnection } from "./connection.js";
import { CHAT_EVENTS, CHAT_KINDS, ChatModel, findMentions, fold, windowKey } from "./model.js";
import { el, eventBody, eventLine, nick, systemLine, timeElement } from "./render.js";

const TITLE = "twistedchat";
const NICKNAME_KEY = "twistedchat.nickname"; // localStorage: the last nickname (never a password)
const PAGE_SIZE = 50; // events asked for per history page
const MAX_GAP_PAGES = 20; // pages fetched to fill one room's gap after a reconnect, at most
const NEAR_TOP = 150; // pixels from the top of the log that load older events
const NEAR_BOTTOM = 40; // pixels from the bottom that count as "at the bottom"
const INPUT_HISTORY = 50; // lines that ArrowUp brings back

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  reconnectNow: $("reconnect-now"),
  roomsToggle: $("rooms-toggle"),
  notify: $("notify-button"),
  searchForm: $("search-form"),
  searchInput: $("search-input"),
  signIn: $("sign-in"),
  signInForm: $("sign-in-form"),
  serverInfo: $("server-info"),
  motd: $("motd"),
  nickname: $("nickname-input"),
  password: $("password-input"),
  signInMessage: $("sign-in-message"),
  signInButton: $("sign-in-button"),
  otherNickname: $("other-nickname"),
  chat: $("chat"),
  sidebar: $("sidebar"),
  roomList: $("room-list"),
  conversationList: $("conversation-list"),
  noConversations: $("no-conversations"),
  joinForm: $("join-form"),
  joinInput: $("join-input"),
  knownRooms: $("known-rooms"),
  windowName: $("window-name"),
  topic: $("topic"),
  membersToggle: $("members-toggle"),
  leave: $("leave-button"),
  searchPanel: $("search-panel"),
  searchSummary: $("search-summary"),
  searchResults: $("search-results"),
  searchClose: $("search-close"),
  log: $("log"),
  composer: $("composer"),
  message: $("message-input"),
  members: $("members"),
  memberCount: $("member-count"),
  memberList: $("member-list"),
  scrim: $("scrim"),
};

// ---------------------------------------------------------------------------
// State

const model = new ChatModel();
const views = new Map(); // ChatWindow -> {entry, button, label, badge, mark, log, start, scroll}
let current = null; // the ChatWindow shown
let serverCurrent = null; // key of the room the server sends plain lines to
let pendingSwitches = 0; // "switch" messages whose "current_room" has not come back yet
let defaultRoomPending = false; // after "welcome", until we know which room the server put us in
let restore = null; // after a lost connection: what to rejoin (see connectionLost)
let roomsProbes = 0; // "/rooms" sent to fill the join box's suggestions, answers not shown
let lastRoomsProbe = 0;
let maxLineLength = 0; // bytes, from "hello"
let searching = false; // a search was sent and neither results nor an error came back
let titleCount = 0; // private messages and mentions while the tab was hidden
let earlyLines = []; // notices that came before any window was open
let signInState = "nickname"; // "nickname", "password" or "waiting"
let freshStart = true; // the next "welcome" starts from an empty page
const typed = []; // lines sent, for ArrowUp/ArrowDown
let typedAt = 0;

const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
const connection = new ChatConnection(url, { onEvent: receive, onStatus: showStatus });

// ---------------------------------------------------------------------------
// What the server sends

function receive(message, { handled }) {
  if (CHAT_EVENTS.has(message.type)) {
    if (Number.isInteger(message.id)) liveEvent(message);
    return;
  }
  const handler = HANDLERS[message.type];
  if (handler) handler(message, handled); // unknown types are ignored (docs/websocket.md)
}

const HANDLERS = {
  hello(message) {
    maxLineLength = message.max_line_length || 0;
    ui.serverInfo.textContent = `${message.server} · twistedchat ${message.version}`;
    ui.serverInfo.hidden = false;
    ui.motd.textContent = message.motd || "";
    ui.motd.hidden = !message.motd;
    if (message.protocol !== 1) {
      signInMessage("error", `This page speaks protocol 1, the server protocol ${message.protocol}: some things may not work.`);
    }
  },

  nickname_wanted(message, handled) {
    if (handled) return;
    signInState = "nickname";
    showSignIn();
  },

  password_wanted(message, handled) {
    if (handled) return;
    signInState = "password";
    signInMessage("notice", `The nickname ${message.nickname} is registered: give its password, or choose another nickname.`);
    ui.nickname.value = message.nickname;
    showSignIn();
    ui.password.focus();
  },

  welcome(message) {
    if (freshStart) resetChat();
    freshStart = false;
    model.me = message.nickname;
    saveNickname(message.nickname);
    signInState = "nickname";
    showChat();
    const listed = message.online.length ? `: ${message.online.join(", ")}` : "";
    const people = message.count === 1 ? "1 person" : `${message.count} people`;
    note("notice", `Welcome, ${message.nickname}! ${people} online${listed}.`);
    if (restore) note("status", "Reconnected.");
    // The "joined" of the room the server put us in comes in the same
    // server message as "welcome": see afterWelcome once it is handled.
    defaultRoomPending = true;
    setTimeout(afterWelcome, 0);
    updateNotifyButton();
  },

  notice: serverText,
  error: serverText,

  joined(message) {
    const first = defaultRoomPending; // the room the server put us in on signing in
    defaultRoomPending = false;
    if (first && leaveAgain(message.room)) return;
    const win = model.ensure("room", message.room);
    win.name = message.room;
    win.joined = true;
    win.topic = message.topic;
    if (message.members.length) win.setMembers(message.members, message.operators);
    win.count = message.count;
    serverCurrent = win.key; // joining makes it the current room
    viewOf(win);
    const rejoined = restore !== null && restore.pending.delete(win.key);
    if (rejoined && message.already && win.gapFrom !== null && !win.gapStarted) {
      // No history comes with "already": ask for the recent events.
      win.gapStarted = true;
      connection.send({ type: "history", room: message.room });
    }
    if (!rejoined || restore.view === win.key || !current) select(win, { switchRoom: false });
    else updateEntry(win);
    if (win === current) renderWindow();
  },

  parted(message) {
    const win = model.room(message.room);
    if (!win || !win.joined) return;
    if (model.windows.size > 1) {
      closeWindow(win);
      return;
    }
    // The last window: keep it, so that what the server says still shows.
    win.joined = false;
    win.members.clear();
    win.operators.clear();
    updateEntry(win);
    if (win === current) renderWindow();
    note("notice", "You are in no room now: join one with the box on the left or /join #room.");
  },

  current_room(message) {
    serverCurrent = message.room ? windowKey("room", message.room) : null;
    if (pendingSwitches > 0) {
      pendingSwitches -= 1; // the answer to our own "switch"
      return;
    }
    const win = message.room ? model.room(message.room) : null;
    if (win && win.joined && (!current || current.kind === "room")) select(win, { switchRoom: false });
  },

  names(message) {
    const win = model.room(message.room);
    if (win && win.joined) {
      win.setMembers(message.nicknames, message.operators);
      if (win === current) renderMembers();
    }
    const operators = new Set(message.operators.map(fold));
    const away = new Set((message.away || []).map(fold));
    const names = message.nicknames.map(
      (name) => (operators.has(fold(name)) ? `@${name}` : name) + (away.has(fold(name)) ? " (away)" : ""),
    );
    note("notice", `${names.length} in ${message.room}: ${names.join(", ")}`);
  },

  rooms(message) {
    ui.knownRooms.replaceChildren(...message.rooms.map((room) => el("option", { attrs: { value: room.name } })));
    if (roomsProbes > 0) {
      roomsProbes -= 1;
      return;
    }
    const list = el("ul", { className: "room-summary" });
    for (const room of message.rooms) {
      const join = el("button", { className: "link-button", text: room.name, attrs: { type: "button" } });
      join.addEventListener("click", () => sendTyped(`/join ${room.name}`));
      const topic = room.topic ? `: ${room.topic}` : "";
      list.append(el("li", {}, join, ` (${room.members})${topic}`));
    }
    const count = message.rooms.length === 1 ? "1 room" : `${message.rooms.length} rooms`;
    note("notice", `${count}${message.rooms.length ? " (choose one to join it)" : ""}:`, list);
  },

  topic_is(message) {
    const win = model.room(message.room);
    if (win) {
      win.topic = message.topic;
      if (win === current) renderWindow();
    }
    if (!message.topic) {
      note("notice", `${message.room} has no topic.`);
      return;
    }
    const when = message.at ? ` on ${new Date(message.at * 1000).toLocaleString()}` : "";
    const by = message.by ? `, set by ${message.by}${when}` : "";
    note("notice", `The topic of ${message.room}: `, el("q", { text: message.topic }), by);
  },

  away_set(message) {
    note("notice", message.text ? `You are marked as away: ${message.text}` : "You are no longer marked as away.");
  },

  is_away(message) {
    note("notice", `${message.nickname} is away: ${message.text}`);
  },

  whois(message) {
    const operatorOf = new Set(message.operator_of.map(fold));
    const rooms = message.rooms.map((room) => (operatorOf.has(fold(room)) ? `@${room}` : room));
    note("notice", `${message.nickname} is in ${rooms.length ? rooms.join(", ") : "no room"}.`);
    if (message.away) note("notice", `${message.nickname} is away: ${message.away}`);
    if (message.account) note("notice", `${message.nickname} is identified as the owner of ${message.account}.`);
    if (message.server_operator) note("notice", `${message.nickname} is a server operator.`);
  },

  invited(message) {
    const join = el("button", { className: "link-button", text: `join ${message.room}`, attrs: { type: "button" } });
    join.addEventListener("click", () => sendTyped(`/join ${message.room}`));
    note("notice", `${message.nickname} invites you to ${message.room}: `, join);
  },

  history: historyReceived,
  search_results: searchResults,

  ghosted(message) {
    note("error", `Someone who gave the password of ${message.nickname} has taken it over; you are signed out.`);
  },

  killed(message) {
    note("error", `Disconnected by the server operator ${message.operator}${message.reason ? ` (${message.reason})` : ""}.`);
  },

  shutdown() {
    note("status", "The server is shutting down.");
  },
};

// A "notice" or "error": on the sign-in form before "welcome", in the log after.
function serverText(message) {
  if (!connection.signedIn) {
    // The server closing an idle, unanswered sign-in page is no news: the
    // page connects again when the person signs in.
    if (connection.awaitingNickname && !connection.wantSignIn) return;
    signInMessage(message.type, message.text);
    if (signInState === "waiting" && message.type === "error") signInState = "nickname";
    renderSignIn();
    if (ui.chat.hidden) return;
  }
  if (message.type === "error" && searching) searchRefused(message.text);
  note(message.type, message.text);
}

// A chat event as it happens: update members and topics, then show it in
// every window it belongs in.
function liveEvent(event) {
  const targets = model.windowsFor(event);
  applyToMembers(event);
  keepScroll(() => {
    for (const win of targets) addEvent(win, event, { live: true });
  });
  if (current && targets.includes(current) && !CHAT_KINDS.has(event.type)) renderWindow();
}

function applyToMembers(event) {
  const room = event.room ? model.room(event.room) : null;
  switch (event.type) {
    case "join":
      if (room) room.addMember(event.nickname);
      break;
    case "part":
      if (room && !model.isMe(event.nickname)) room.removeMember(event.nickname);
      break;
    case "kick":
      if (!room) break;
      room.removeMember(event.nickname);
      if (model.isMe(event.nickname)) {
        room.joined = false;
        room.members.clear();
        room.operators.clear();
        if (serverCurrent === room.key) serverCurrent = null;
        updateEntry(room);
      }
      break;
    case "quit":
      for (const win of model.rooms()) win.removeMember(event.nickname);
      break;
    case "nick":
      for (const win of model.rooms()) win.renameMember(event.old, event.new);
      if (model.isMe(event.old)) {
        model.me = event.new;
        saveNickname(event.new);
      }
      model.renameConversation(event.old, event.new);
      for (const win of model.conversations()) updateEntry(win);
      break;
    case "topic":
      if (room) room.topic = event.topic;
      break;
    case "mode":
      if (room && (event.change === "+o" || event.change === "-o")) {
        const key = fold(event.target);
        if (event.change === "+o") room.operators.add(key);
        else room.operators.delete(key);
      }
      break;
    default:
      break;
  }
}

// Show one event in one window, once, in id order. `live`: it is
// happening now; `fresh`: it came in a history page but is new to the
// person (missed while disconnected). Both count as unread.
function addEvent(win, event, { live = false, fresh = false, toTop = false } = {}) {
  if (!win.remember(event.id)) return;
  const view = viewOf(win);
  insertById(view.log, eventLine(event, model.me), event.id, toTop);
  if (live || fresh) countUnread(win, event, live);
}

function countUnread(win, event, live) {
  if (!CHAT_KINDS.has(event.type) || model.isMe(event.nickname)) return;
  const mention = event.type !== "private" && findMentions(event.text, model.me).length > 0;
  if (win !== current) {
    win.unread += 1;
    if (mention) win.mentioned = true;
    updateEntry(win);
  }
  if (live && document.hidden && (event.type === "private" || mention)) {
    titleCount += 1;
    updateTitle();
    desktopNotification(win, event);
  }
}

// Insert `line` (with id `id`) so that the ids in `list` stay in order;
// lines without an id (notices) stay where they are. With `toTop`
// (paging back), a line older than every other goes to the very top,
// above the notices too.
function insertById(list, line, id, toTop = false) {
  const first = list.querySelector("[data-id]");
  if (first && id < Number(first.dataset.id)) {
    if (toTop) list.firstElementChild.after(line); // just below the marker at the top
    else list.insertBefore(line, first);
    return;
  }
  let before = null;
  for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
    if (!node.dataset.id) continue;
    if (Number(node.dataset.id) > id) before = node;
    else break;
  }
  list.insertBefore(line, before);
}

// ---------------------------------------------------------------------------
// History: pages going back, and filling the gap after a reconnect

function historyReceived(message) {
  // The replay on joining comes after "joined" (after "welcome" too).
  const win = model.room(message.room);
  if (!win || !win.joined) return;
  let kind = null;
  const paged = message.before !== null && message.before !== undefined;
  if (paged && win.pending && win.pending.before === message.before) {
    kind = win.pending.kind;
    win.pending = null;
  }
  const events = (message.events || []).filter((event) => CHAT_EVENTS.has(event.type) && Number.isInteger(event.id));
  const newest = restore ? restore.newest : null;
  const touched = new Set([win]);
  // A page going back is added newest first, each older than everything
  // goes to the top (see insertById); the replay on joining, oldest first,
  // goes below the notices already shown (such as "Welcome").
  const ordered = [...events].sort((a, b) => (paged ? b.id - a.id : a.id - b.id));
  keepScroll(() => {
    for (const event of ordered) {
      if (win.oldestAsked === null || event.id < win.oldestAsked) win.oldestAsked = event.id;
      for (const target of model.windowsFor(event, win)) {
        addEvent(target, event, { fresh: newest !== null && event.id > newest, toTop: paged });
        touched.add(target);
      }
    }
  });
  if (paged && events.length === 0) win.historyDone = true;
  if (win.gapFrom !== null && (kind === "gap" || !paged)) {
    win.gapStarted = true;
    fillGap(win, events);
  }
  for (const target of touched) {
    updateEntry(target);
    updateStart(target);
  }
  if (win === current) maybeLoadOlder();
}

// After a reconnect: while the oldest event of the last page is newer than
// the newest this room showed before, ask for the page before it.
function fillGap(win, events) {
  if (win.pending) return; // a page is on its way; its answer goes on
  const oldest = events.length ? Math.min(...events.map((event) => event.id)) : null;
  if (oldest === null || oldest <= win.gapFrom) {
    win.gapFrom = null; // reached an id we had, or nothing older: filled
    win.gapPages = 0;
    return;
  }
  win.gapPages = (win.gapPages || 0) + 1;
  if (win.gapPages > MAX_GAP_PAGES) {
    // Away too long to show it all: keep the latest, say so, stop asking.
    win.gapFrom = null;
    win.gapPages = 0;
    note("status", `More than ${MAX_GAP_PAGES * PAGE_SIZE} events happened in ${win.name} while you were away; only the latest are shown.`);
    return;
  }
  requestHistory(win, oldest, "gap");
}

function requestHistory(win, before, kind) {
  if (!connection.send({ type: "history", room: win.name, before, count: PAGE_SIZE })) return;
  win.pending = { kind, before };
  updateStart(win);
}

// Near the top of a room's log: ask for the page before its oldest event.
function maybeLoadOlder() {
  const win = current;
  if (!win || win.kind !== "room" || !win.joined || win.pending || win.historyDone) return;
  if (!connection.signedIn || ui.log.scrollTop > NEAR_TOP) return;
  const before = win.pageBefore();
  if (before !== null) requestHistory(win, before, "older");
}

// The line at the top of each log: what is above it.
function updateStart(win) {
  const view = views.get(win);
  if (!view) return;
  let text;
  if (win.kind === "private") text = `Private messages with ${win.name}. Only you two see them.`;
  else if (win.pending) text = "Loading older messages…";
  else if (win.historyDone || win.pageBefore() === null) text = `This is the beginning of ${win.name}.`;
  else text = "Scroll up for older messages.";
  view.start.textContent = text;
}

// After "welcome" and the "joined" of the room the server put us in (none
// if we are banned from it): join again the rooms we were in before the
// connection was lost.
function afterWelcome() {
  if (!connection.signedIn) return;
  defaultRoomPending = false;
  if (!restore) return;
  for (const name of restore.rooms) {
    const win = model.room(name);
    if (!win || !win.joined) connection.sendLine(`/join ${name}`);
  }
}

// Signing in again puts us in the server's default room: true (and leave
// it) if we had left it before the connection was lost.
function leaveAgain(name) {
  const key = windowKey("room", name);
  if (!restore || restore.keys.has(key) || !restore.rooms.length) return false;
  if (!restore.parting.has(key)) {
    restore.parting.add(key);
    connection.sendLine(`/part ${name}`);
  }
  return true;
}

// The connection was lost while signed in: remember which rooms to join
// again and, for each, the newest event shown, to fill the gap from.
function connectionLost() {
  // Lost again before every room was joined again: those still count.
  const unfinished = restore !== null && restore.pending.size > 0;
  const rooms = model.rooms().filter((win) => win.joined || (unfinished && restore.pending.has(win.key)));
  let newest = unfinished ? restore.newest : 0;
  if (!unfinished) for (const win of model.windows.values()) newest = Math.max(newest, win.newestId || 0);
  restore = {
    rooms: rooms.map((win) => win.name),
    keys: new Set(rooms.map((win) => win.key)),
    pending: new Set(rooms.map((win) => win.key)), // not rejoined yet
    parting: new Set(),
    view: current ? current.key : null,
    newest, // events newer than this were missed: they count as unread
  };
  for (const win of model.rooms()) {
    // A gap still being filled keeps its start.
    if (rooms.includes(win) && win.gapFrom === null) win.gapFrom = win.newestId ?? newest;
    win.gapStarted = false;
    win.joined = false;
    win.pending = null;
    updateEntry(win);
  }
  serverCurrent = null;
  pendingSwitches = 0;
  defaultRoomPending = false;
  roomsProbes = 0;
  note("status", "Disconnected.");
  renderWindow();
}

// ---------------------------------------------------------------------------
// Windows: the list entries and logs

function viewOf(win) {
  let view = views.get(win);
  if (view) return view;
  const label = el("span", { className: "entry-name" });
  const mark = el("span", {
    className: "mention-mark",
    text: "@",
    data: { testid: "mention-mark" },
    attrs: { title: "You were mentioned", "aria-hidden": "true" },
  });
  const badge = el("span", { className: "badge", data: { testid: "unread-badge" }, attrs: { "aria-hidden": "true" } });
  const button = el("button", { className: "entry", attrs: { type: "button" } }, label, mark, badge);
  button.addEventListener("click", () => {
    select(win, { focus: true });
  });
  const entry = el("li", {}, button);
  if (win.kind === "room") {
    button.dataset.testid = "room";
    ui.roomList.append(entry);
  } else {
    button.dataset.testid = "conversation";
    const close = el("button", {
      className: "entry-close",
      text: "×",
      attrs: { type: "button", "aria-label": `Close the conversation with ${win.name}` },
    });
    close.addEventListener("click", () => closeWindow(win));
    entry.append(close);
    ui.conversationList.append(entry);
  }
  const start = el("li", { className: "log-start" });
  const log = el("ol", { className: "log-lines" }, start);
  view = { entry, button, label, badge, mark, log, start, scroll: null };
  views.set(win, view);
  updateEntry(win);
  updateStart(win);
  ui.noConversations.hidden = model.conversations().length > 0;
  return view;
}

// Bring a list entry up to date: name, unread count, mention mark.
function updateEntry(win) {
  const view = views.get(win);
  if (!view) return;
  view.label.textContent = win.name;
  if (win.kind === "room") view.button.dataset.room = win.name;
  else view.button.dataset.nickname = win.name;
  view.badge.textContent = String(win.unread);
  view.badge.hidden = win.unread === 0;
  view.mark.hidden = !win.mentioned;
  const notJoined = win.kind === "room" && !win.joined;
  view.button.classList.toggle("not-joined", notJoined);
  view.button.classList.toggle("has-unread", win.unread > 0);
  if (win === current) view.button.setAttribute("aria-current", "true");
  else view.button.removeAttribute("aria-current");
  const parts = [win.name];
  if (win.unread) parts.push(`${win.unread} unread`);
  if (win.mentioned) parts.push("you were mentioned");
  if (notJoined) parts.push("not joined");
  view.button.setAttribute("aria-label", parts.join(", "));
  if (win.kind === "private") {
    const close = view.entry.querySelector(".entry-close");
    close.setAttribute("aria-label", `Close the conversation with ${win.name}`);
  }
}

// Show `win` (a room or a conversation). A joined room becomes the server's
// current room too, unless `switchRoom` is false (the server chose it).
function select(win, { focus = false, switchRoom = true } = {}) {
  const previous = current;
  const changed = previous !== win;
  if (previous && changed) saveScroll(previous);
  current = win;
  if (win) {
    const view = viewOf(win);
    if (ui.log.firstElementChild !== view.log) ui.log.replaceChildren(view.log);
    win.clearUnread();
    if (switchRoom && win.kind === "room" && win.joined) makeServerCurrent(win);
  } else {
    ui.log.replaceChildren();
  }
  if (previous && changed) updateEntry(previous);
  if (win) updateEntry(win);
  if (changed) restoreScroll(win);
  keepScroll(flushEarlyLines);
  renderWindow();
  closeDrawers();
  if (focus) ui.message.focus();
  maybeLoadOlder();
}

// Make `room` the one the server sends plain lines to.
function makeServerCurrent(room) {
  if (serverCurrent === room.key || !connection.signedIn) return;
  if (connection.send({ type: "switch", room: room.name })) {
    pendingSwitches += 1;
    serverCurrent = room.key;
  }
}

function closeWindow(win) {
  const view = views.get(win);
  model.remove(win);
  views.delete(win);
  if (view) view.entry.remove();
  ui.noConversations.hidden = model.conversations().length > 0;
  if (current === win) {
    current = null;
    const next = (serverCurrent && model.windows.get(serverCurrent)) || model.rooms()[0] || model.conversations()[0] || null;
    select(next, { switchRoom: false });
  }
}

function openConversation(nickname) {
  const win = model.ensure("private", nickname);
  select(win, { focus: true });
}

// The header, composer and member list of the current window.
function renderWindow() {
  const win = current;
  ui.windowName.textContent = win ? win.name : "";
  if (!win) {
    ui.topic.textContent = "";
    ui.leave.hidden = true;
  } else if (win.kind === "room") {
    ui.topic.textContent = win.topic || (win.joined ? "No topic" : "You are not in this room.");
    ui.topic.classList.toggle("empty", !win.topic);
    ui.topic.title = win.topic;
    // The last window stays: closing it would leave nowhere to show anything.
    ui.leave.hidden = !win.joined && model.windows.size === 1;
    ui.leave.textContent = win.joined ? "Leave" : "Close";
    ui.leave.setAttribute("aria-label", win.joined ? `Leave ${win.name}` : `Close ${win.name}`);
  } else {
    ui.topic.textContent = "Private conversation";
    ui.topic.classList.add("empty");
    ui.topic.title = "";
    ui.leave.hidden = false;
    ui.leave.textContent = "Close";
    ui.leave.setAttribute("aria-label", `Close the conversation with ${win.name}`);
  }
  ui.message.placeholder = win ? `Message ${win.name}` : "/join #room joins a room";
  renderMembers();
}

function renderMembers() {
  const win = current;
  const focused = document.activeElement && ui.memberList.contains(document.activeElement)
    ? document.activeElement.dataset.nickname : null;
  ui.memberList.replaceChildren();
  if (!win || win.kind !== "room") {
    ui.memberCount.textContent = win ? `Private conversation with ${win.name}` : "";
    ui.members.classList.add("no-members");
    ui.membersToggle.hidden = true;
    return;
  }
  ui.members.classList.remove("no-members");
  ui.membersToggle.hidden = false;
  const listed = win.members.size;
  let count = `${win.count} ${win.count === 1 ? "member" : "members"}`;
  if (!win.joined) count = "Not joined";
  else if (listed === 0 && win.count > 0) count += " (too many to list)";
  ui.memberCount.textContent = count;
  ui.memberList.setAttribute("aria-label", `Members of ${win.name}`);
  for (const { nickname, operator } of win.sortedMembers()) {
    const parts = [];
    if (operator) parts.push(el("span", { className: "op", text: "@", attrs: { title: "Operator", "aria-label": "operator" } }));
    parts.push(nick(nickname));
    let item;
    if (model.isMe(nickname)) {
      const you = el("span", { className: "you", text: " (you)" });
      item = el("span", { className: "member me", data: { testid: "member", nickname } }, ...parts, you);
    } else {
      item = el("button", {
        className: "member",
        attrs: { type: "button", title: `Talk privately with ${nickname}` },
        data: { testid: "member", nickname },
      }, ...parts);
      item.addEventListener("click", () => openConversation(nickname));
    }
    ui.memberList.append(el("li", {}, item));
  }
  if (focused) {
    const again = [...ui.memberList.querySelectorAll("button")].find((node) => node.dataset.nickname === focused);
    if (again) again.focus();
  }
}

// A line from the server or the page, in the current window (or the first
// one to open).
function note(kind, ...parts) {
  const line = systemLine(kind, ...parts);
  if (!current) {
    earlyLines.push(line);
    return;
  }
  keepScroll(() => views.get(current).log.append(line));
}

function flushEarlyLines() {
  if (!current || !earlyLines.length) return;
  views.get(current).log.append(...earlyLines);
  earlyLines = [];
}

// ---------------------------------------------------------------------------
// Scrolling: stay at the bottom when there, keep the same line in view when
// older lines are added above.

function keepScroll(change) {
  const box = ui.log;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight <= NEAR_BOTTOM;
  const anchor = atBottom ? null : firstVisibleLine();
  const top = anchor ? anchor.getBoundingClientRect().top : 0;
  change();
  if (atBottom) box.scrollTop = box.scrollHeight;
  else if (anchor && anchor.isConnected) box.scrollTop += anchor.getBoundingClientRect().top - top;
}

// The first line at least partly in view (a binary search: lines are in
// order from top to bottom), skipping the marker at the top.
function firstVisibleLine() {
  const list = ui.log.firstElementChild;
  if (!list) return null;
  const lines = list.children;
  const top = ui.log.getBoundingClientRect().top;
  let low = 1;
  let high = lines.length - 1;
  let found = null;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (lines[middle].getBoundingClientRect().bottom > top) {
      found = lines[middle];
      high = middle - 1;
    } else {
      low = middle + 1;
    }
  }
  return found;
}

function saveScroll(win) {
  const view = views.get(win);
  if (!view) return;
  const box = ui.log;
  view.scroll = {
    atBottom: box.scrollHeight - box.scrollTop - box.clientHeight <= NEAR_BOTTOM,
    top: box.scrollTop,
  };
}

function restoreScroll(win) {
  const view = win && views.get(win);
  const saved = view && view.scroll;
  ui.log.scrollTop = !saved || saved.atBottom ? ui.log.scrollHeight : saved.top;
}

// ---------------------------------------------------------------------------
// Signing in

function showSignIn() {
  ui.signIn.hidden = false;
  ui.chat.hidden = true;
  ui.searchForm.hidden = true;
  ui.roomsToggle.hidden = true;
  renderSignIn();
  if (signInState === "nickname" && !ui.nickname.value) ui.nickname.focus();
}

function showChat() {
  ui.signIn.hidden = true;
  ui.chat.hidden = false;
  ui.searchForm.hidden = false;
  ui.roomsToggle.hidden = false;
  ui.signInMessage.replaceChildren();
  ui.message.focus();
}

function renderSignIn() {
  const asking = signInState === "password";
  ui.nickname.readOnly = asking;
  ui.signInButton.disabled = signInState === "waiting";
  ui.signInButton.textContent = signInState === "waiting" ? "Signing in…" : asking ? "Send password" : "Sign in";
  ui.otherNickname.hidden = !asking;
  ui.password.required = asking;
}

function signInMessage(kind, text) {
  const line = el("p", { className: `sign-in-${kind}`, text });
  ui.signInMessage.append(line);
  while (ui.signInMessage.childElementCount > 4) ui.signInMessage.firstElementChild.remove();
}

ui.signInForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (signInState === "waiting") return;
  ui.signInMessage.replaceChildren();
  if (signInState === "password") {
    const password = ui.password.value;
    if (!password) {
      signInMessage("error", "Give the password, or choose another nickname.");
      ui.password.focus();
      return;
    }
    ui.password.value = "";
    signInState = "waiting";
    if (!connection.sendPassword(password)) {
      signInState = "nickname";
      signInMessage("error", "The connection was lost; sign in again.");
    }
    renderSignIn();
    return;
  }
  // Empty: the server gives a random nickname, as it does for telnet.
  const nickname = ui.nickname.value.trim();
  if (nickname) saveNickname(nickname);
  const password = ui.password.value;
  ui.password.value = "";
  signInState = "waiting";
  renderSignIn();
  connection.signIn(nickname, password);
});

ui.otherNickname.addEventListener("click", () => {
  ui.signInMessage.replaceChildren();
  ui.password.value = "";
  connection.sendPassword(""); // gives up: the server asks for a nickname again
  signInState = "nickname";
  renderSignIn();
  ui.nickname.select();
  ui.nickname.focus();
});

function saveNickname(nickname) {
  try {
    localStorage.setItem(NICKNAME_KEY, nickname);
  } catch {
    // Storage can be off (private browsing): the nickname is just not remembered.
  }
}

function loadNickname() {
  try {
    return localStorage.getItem(NICKNAME_KEY) || "";
  } catch {
    return "";
  }
}

// A new session after signing out: nothing of the old one shows.
function resetChat() {
  for (const view of views.values()) view.entry.remove();
  views.clear();
  model.windows.clear();
  current = null;
  serverCurrent = null;
  pendingSwitches = 0;
  restore = null;
  earlyLines = [];
  ui.log.replaceChildren();
  ui.searchPanel.hidden = true;
  ui.noConversations.hidden = false;
}

// ---------------------------------------------------------------------------
// The connection's state

function showStatus(status) {
  ui.status.dataset.state = status.state;
  ui.reconnectNow.hidden = status.state !== "reconnecting";
  switch (status.state) {
    case "connecting":
      ui.status.textContent = "Connecting…";
      break;
    case "connected":
      ui.status.textContent = "Connected";
      break;
    case "signing-in":
      ui.status.textContent = "Signing in again…";
      break;
    case "reconnecting":
      if (status.wasSignedIn) connectionLost();
      ui.status.textContent = `Disconnected — reconnecting in ${status.seconds} s`;
      break;
    case "offline":
      ui.status.textContent = "Not connected";
      if (signInState === "waiting") {
        signInState = "nickname";
        signInMessage("error", "Could not reach the chat server. Try again in a moment.");
        renderSignIn();
      }
      break;
    case "stopped": {
      const why = {
        quit: "You left the chat.",
        ghosted: "Signed out: someone gave your nickname's password.",
        killed: "Disconnected by a server operator.",
      }[status.reason] || "Disconnected.";
      ui.status.textContent = "Signed out";
      freshStart = true;
      signInState = "nickname";
      ui.signInMessage.replaceChildren();
      signInMessage(status.reason === "quit" ? "notice" : "error", `${why} Sign in to chat again.`);
      ui.nickname.value = connection.nickname || loadNickname();
      showSignIn();
      break;
    }
    default:
      break;
  }
}

ui.reconnectNow.addEventListener("click", () => connection.reconnectNow());
window.addEventListener("online", () => connection.reconnectNow());

// ---------------------------------------------------------------------------
// Typing and sending

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.message.value;
  if (!text.trim()) return;
  if (sendTyped(text)) {
    ui.message.value = "";
    if (typed[typed.length - 1] !== text) typed.push(text);
    if (typed.length > INPUT_HISTORY) typed.shift();
    typedAt = typed.length;
  }
});

// ArrowUp and ArrowDown go through the lines sent before.
ui.message.addEventListener("keydown", (event) => {
  if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
  if (event.altKey || event.ctrlKey || event.metaKey || !typed.length) return;
  typedAt = Math.max(0, Math.min(typed.length, typedAt + (event.key === "ArrowUp" ? -1 : 1)));
  ui.message.value = typed[typedAt] ?? "";
  event.preventDefault();
});

// Send a line typed in the current window: in a room, as a line (after
// making the room the server's current one); in a private conversation,
// plain text goes as "/msg NICK text". Commands go as typed.
function sendTyped(text) {
  if (!connection.signedIn) {
    note("error", "Not connected: the line was not sent.");
    return false;
  }
  if (/^\/history(\s|$)/i.test(text)) {
    note("notice", "History is in the log: scroll up for older lines, or use the search box.");
    return true;
  }
  rememberPassword(text);
  const command = text.startsWith("/") && !text.startsWith("//");
  if (current && current.kind === "private" && !command) {
    const body = text.startsWith("//") ? text.slice(1) : text;
    return sendFitting(`/msg ${current.name} ${body}`);
  }
  if (current && current.kind === "room") {
    if (!current.joined && !command) {
      note("error", `You are not in ${current.name}: /join ${current.name} joins it again.`);
      return false;
    }
    if (current.joined) makeServerCurrent(current);
  }
  return sendFitting(text);
}

// Send a line the server will take: one longer than its limit stays in
// the box, to shorten or split, so nothing is lost.
function sendFitting(line) {
  const bytes = new TextEncoder().encode(line).length;
  if (maxLineLength && bytes > maxLineLength) {
    note("error", `That line is ${bytes} bytes; the server takes at most ${maxLineLength}. Shorten it or split it.`);
    return false;
  }
  return connection.sendLine(line);
}

// A password given in a command is kept in memory, to sign in again with
// after a reconnect.
function rememberPassword(text) {
  const patterns = [
    /^\/(?:register|identify)\s+(\S+)\s*$/i,
    /^\/password\s+\S+\s+(\S+)\s*$/i,
    /^\/nick\s+\S+\s+(\S+)\s*$/i,
  ];
  for (const pattern of patterns) {
    const match = pattern.exec(text);
    if (match) connection.rememberPassword(match[1]);
  }
}

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  let name = ui.joinInput.value.trim();
  if (!name) return;
  if (!name.startsWith("#")) name = `#${name}`;
  if (!connection.signedIn) {
    note("error", "Not connected: try again once reconnected.");
    return;
  }
  connection.sendLine(`/join ${name}`);
  ui.joinInput.value = "";
});

// Suggest the rooms there are, asked for at most every 30 seconds.
ui.joinInput.addEventListener("focus", () => {
  if (!connection.signedIn || Date.now() - lastRoomsProbe < 30000) return;
  lastRoomsProbe = Date.now();
  roomsProbes += 1;
  connection.sendLine("/rooms");
});

ui.leave.addEventListener("click", () => {
  const win = current;
  if (!win) return;
  if (win.kind === "room" && win.joined) connection.sendLine(`/part ${win.name}`);
  else closeWindow(win);
});

ui.log.addEventListener("scroll", () => {
  logAtBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight <= NEAR_BOTTOM;
  if (ui.log.scrollTop <= NEAR_TOP) maybeLoadOlder();
}, { passive: true });

// The log shrinks when a panel opens (search results) or the window is
// resized: if it was at the bottom, keep it there, so new lines stay in view.
let logAtBottom = true;
new ResizeObserver(() => {
  if (logAtBottom) ui.log.scrollTop = ui.log.scrollHeight;
}).observe(ui.log);

// ---------------------------------------------------------------------------
// Search

ui.searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.searchInput.value.trim();
  if (!text) return;
  const request = { type: "search", text };
  if (current && current.kind === "room" && current.joined) request.room = current.name;
  if (!connection.send(request)) {
    note("error", "Not connected: cannot search now.");
    return;
  }
  ui.searchResults.replaceChildren();
  ui.searchSummary.textContent = "Searching…";
  ui.searchPanel.hidden = false;
  searching = true;
});

// The server refused the search it was waiting for: say why in the panel.
function searchRefused(text) {
  searching = false;
  ui.searchSummary.textContent = text;
}

function searchResults(message) {
  searching = false;
  const events = (message.events || []).filter((event) => CHAT_EVENTS.has(event.type));
  const where = message.room ? ` in ${message.room}` : "";
  const found = events.length === 1 ? "1 result" : `${events.length} results`;
  const more = message.limit && events.length >= message.limit ? " (the newest; there may be more)" : "";
  ui.searchSummary.textContent = `${found} for “${message.query}”${where}${more}`;
  ui.searchResults.replaceChildren(...events.map(searchResult));
  ui.searchPanel.hidden = false;
}

// One search result: time, where, what; "Show" when the line is in a log.
function searchResult(event) {
  const where = event.type === "private"
    ? `private, ${model.isMe(event.nickname) ? `to ${event.to}` : `from ${event.nickname}`}`
    : event.room || "";
  const line = el("li", { className: `line line-${event.type}`, data: { testid: "search-result", id: String(event.id) } },
    timeElement(event.at), el("span", { className: "where", text: where }), ...eventBody(event, model.me));
  const targets = event.type === "private"
    ? [model.conversation(model.isMe(event.nickname) ? event.to : event.nickname)]
    : [event.room && model.room(event.room)];
  const win = targets[0];
  if (win && win.ids.has(event.id)) {
    const show = el("button", { className: "link-button show", text: "Show", attrs: { type: "button" } });
    show.addEventListener("click", () => showLine(win, event.id));
    line.append(show);
  }
  return line;
}

function showLine(win, id) {
  select(win);
  const line = views.get(win).log.querySelector(`[data-id="${id}"]`);
  if (!line) return;
  line.scrollIntoView({ block: "center" });
  line.classList.remove("flash");
  void line.offsetWidth; // restart the animation
  line.classList.add("flash");
}

function closeSearch() {
  ui.searchPanel.hidden = true;
  ui.searchInput.focus();
}

ui.searchClose.addEventListener("click", closeSearch);

// ---------------------------------------------------------------------------
// Notifications and the title

function updateNotifyButton() {
  ui.notify.hidden = !("Notification" in window) || Notification.permission !== "default" || ui.chat.hidden;
}

ui.notify.addEventListener("click", async () => {
  try {
    await Notification.requestPermission();
  } finally {
    updateNotifyButton();
  }
});

function desktopNotification(win, event) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const title = event.type === "private" ? `${event.nickname} (private)` : `${event.nickname} in ${win.name}`;
  const body = event.type === "action" ? `* ${event.nickname} ${event.text}` : event.text;
  try {
    const shown = new Notification(title, { body, tag: win.key });
    shown.addEventListener("click", () => {
      window.focus();
      if (model.windows.get(win.key) === win) select(win);
      shown.close();
    });
  } catch {
    // Some browsers (Android Chrome) allow notifications only from a service worker.
  }
}

function updateTitle() {
  document.title = titleCount ? `(${titleCount}) ${TITLE}` : TITLE;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  titleCount = 0;
  updateTitle();
  if (current) {
    current.clearUnread();
    updateEntry(current);
  }
});

// ---------------------------------------------------------------------------
// Small screens: the room list and the member list fold away

function toggleDrawer(name, open) {
  const drawer = name === "sidebar" ? ui.sidebar : ui.members;
  const toggle = name === "sidebar" ? ui.roomsToggle : ui.membersToggle;
  const isOpen = open ?? !ui.chat.classList.contains(`${name}-open`);
  closeDrawers();
  if (!isOpen) return;
  ui.chat.classList.add(`${name}-open`);
  toggle.setAttribute("aria-expanded", "true");
  ui.scrim.hidden = false;
  const first = drawer.querySelector("button, input");
  if (first) first.focus();
}

function closeDrawers() {
  ui.chat.classList.remove("sidebar-open", "members-open");
  ui.roomsToggle.setAttribute("aria-expanded", "false");
  ui.membersToggle.setAttribute("aria-expanded", "false");
  ui.scrim.hidden = true;
}

ui.roomsToggle.addEventListener("click", () => toggleDrawer("sidebar"));
ui.membersToggle.addEventListener("click", () => toggleDrawer("members"));
ui.scrim.addEventListener("click", closeDrawers);

// Keyboard: Escape closes a drawer or the search results; Alt+ArrowUp and
// Alt+ArrowDown go to the previous or next window.
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    if (ui.chat.classList.contains("sidebar-open") || ui.chat.classList.contains("members-open")) {
      const toggle = ui.chat.classList.contains("sidebar-open") ? ui.roomsToggle : ui.membersToggle;
      closeDrawers();
      toggle.focus();
    } else if (!ui.searchPanel.hidden) {
      closeSearch();
    }
    return;
  }
  if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown") && !ui.chat.hidden) {
    const order = [...model.rooms(), ...model.conversations()];
    if (!order.length) return;
    const at = order.indexOf(current);
    const next = order[(at + (event.key === "ArrowUp" ? -1 : 1) + order.length) % order.length];
    select(next, { focus: true });
    event.preventDefault();
  }
});

// ---------------------------------------------------------------------------
// Start: prefill the nickname and say hello to the server.

ui.nickname.value = loadNickname();
renderSignIn();
showSignIn();
ui.nickname.focus();
connection.open();
