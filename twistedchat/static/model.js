// What the page knows about the chat, with no DOM in it: the rooms and
// private conversations ("windows"), their members, which event ids each
// one shows, and where each stands in paging back through its history.

// Nicknames and room names compare with the IRC case mapping (RFC 2812
// section 2.2), as the server does: A-Z and []\~ are the capitals of
// a-z and {}|^. The folded string has the same length as the original.
const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~";
const LOWER = "abcdefghijklmnopqrstuvwxyz{}|^";

export function fold(name) {
  let out = "";
  for (const char of name) {
    const at = UPPER.indexOf(char);
    out += at < 0 ? char : LOWER[at];
  }
  return out;
}

// A character that can be part of a nickname: a mention must not have one
// right before or after it ("bob" is not mentioned in "bobby").
const NICKNAME_CHAR = /[A-Za-z0-9[\]\\`_^{|}-]/;

// Where `nickname` is mentioned in `text`, as a whole word, case-insensitively:
// a list of [start, end) index pairs into `text`.
export function findMentions(text, nickname) {
  if (!nickname) return [];
  const hay = fold(text);
  const needle = fold(nickname);
  const found = [];
  let at = hay.indexOf(needle);
  while (at >= 0) {
    const end = at + needle.length;
    const before = at > 0 ? hay[at - 1] : "";
    const after = end < hay.length ? hay[end] : "";
    if (!NICKNAME_CHAR.test(before) && !NICKNAME_CHAR.test(after)) {
      found.push([at, end]);
      at = hay.indexOf(needle, end);
    } else {
      at = hay.indexOf(needle, at + 1);
    }
  }
  return found;
}

// The chat events that carry an id (docs/websocket.md, "chat events").
export const CHAT_EVENTS = new Set([
  "message", "action", "private", "join", "part", "quit", "nick", "topic", "kick", "mode",
]);

// The events that are what people said, as opposed to what happened to
// rooms and members.
export const CHAT_KINDS = new Set(["message", "action", "private"]);

export function windowKey(kind, name) {
  return `${kind}:${fold(name)}`;
}

// One room or private conversation.
export class ChatWindow {
  constructor(kind, name) {
    this.kind = kind; // "room" or "private"
    this.name = name; // as last seen: a room's name, or the other person's nickname
    this.key = windowKey(kind, name);
    this.ids = new Set(); // ids of the events shown, so that none shows twice
    this.newestId = null;
    this.oldestId = null;
    this.unread = 0;
    this.mentioned = false;
    // Rooms only:
    this.joined = false;
    this.topic = "";
    this.members = new Map(); // folded nickname -> nickname
    this.operators = new Set(); // folded nicknames
    this.count = 0; // members, also when the server did not list them
    this.oldestAsked = null; // smallest id in this room's history pages (private ones included)
    this.historyDone = false; // an empty page came back: nothing older
    this.pending = null; // the history request in flight: {kind: "older" | "gap", before}
    this.gapFrom = null; // after a reconnect: the newest id shown before it, until the gap is filled
    this.gapStarted = false;
  }

  // Record that the event `id` is shown here; false if it already was.
  remember(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.newestId === null || id > this.newestId) this.newestId = id;
    if (this.oldestId === null || id < this.oldestId) this.oldestId = id;
    return true;
  }

  // The id to ask older history before: the oldest this room has seen.
  pageBefore() {
    const known = [this.oldestId, this.oldestAsked].filter((id) => id !== null);
    return known.length ? Math.min(...known) : null;
  }

  hasMember(nickname) {
    return this.members.has(fold(nickname));
  }

  addMember(nickname) {
    if (!this.hasMember(nickname)) this.count += 1;
    this.members.set(fold(nickname), nickname);
  }

  removeMember(nickname) {
    const key = fold(nickname);
    if (this.members.delete(key)) this.count = Math.max(0, this.count - 1);
    this.operators.delete(key);
  }

  renameMember(old, now) {
    const key = fold(old);
    if (!this.members.has(key)) return;
    const wasOperator = this.operators.delete(key);
    this.members.delete(key);
    this.members.set(fold(now), now);
    if (wasOperator) this.operators.add(fold(now));
  }

  setMembers(nicknames, operators = null) {
    const before = this.operators;
    this.members = new Map(nicknames.map((nickname) => [fold(nickname), nickname]));
    this.count = nicknames.length;
    // Without a list of operators (a "joined"), keep what is known of them.
    const ops = operators ? operators.map(fold) : [...before].filter((key) => this.members.has(key));
    this.operators = new Set(ops);
  }

  // Members sorted for display: operators first, then by name.
  sortedMembers() {
    return [...this.members.entries()]
      .sort(([a], [b]) => {
        const opA = this.operators.has(a) ? 0 : 1;
        const opB = this.operators.has(b) ? 0 : 1;
        return opA - opB || (a < b ? -1 : a > b ? 1 : 0);
      })
      .map(([key, nickname]) => ({ nickname, operator: this.operators.has(key) }));
  }

  clearUnread() {
    this.unread = 0;
    this.mentioned = false;
  }
}

// Every window, and who "I" am.
export class ChatModel {
  constructor() {
    this.me = "";
    this.windows = new Map(); // key -> ChatWindow, in the order they were opened
  }

  isMe(nickname) {
    return Boolean(this.me) && fold(nickname) === fold(this.me);
  }

  room(name) {
    return this.windows.get(windowKey("room", name));
  }

  conversation(nickname) {
    return this.windows.get(windowKey("private", nickname));
  }

  ensure(kind, name) {
    const key = windowKey(kind, name);
    let win = this.windows.get(key);
    if (!win) {
      win = new ChatWindow(kind, name);
      this.windows.set(key, win);
    }
    return win;
  }

  remove(win) {
    this.windows.delete(win.key);
  }

  rooms() {
    return [...this.windows.values()].filter((win) => win.kind === "room");
  }

  conversations() {
    return [...this.windows.values()].filter((win) => win.kind === "private");
  }

  // A conversation's other person changed nickname: keep the window, under
  // its new key (unless one with the new name is open already).
  renameConversation(old, now) {
    const win = this.conversation(old);
    if (!win || this.conversation(now)) return;
    this.windows.delete(win.key);
    win.name = now;
    win.key = windowKey("private", now);
    this.windows.set(win.key, win);
  }

  // The windows an event belongs in. `context` is the room whose history
  // it came in (null for a live event). A private message opens its
  // conversation; a live quit or nickname change shows in every room the
  // person was in (call this before updating the members), and in the
  // conversation with them if one is open.
  windowsFor(event, context = null) {
    if (event.type === "private") {
      const other = this.isMe(event.nickname) ? event.to : event.nickname;
      return [this.ensure("private", other)];
    }
    if (event.type === "quit" || event.type === "nick") {
      const who = event.type === "quit" ? event.nickname : event.old;
      const found = context
        ? [context]
        : this.rooms().filter((win) => win.joined && (win.hasMember(who) || this.isMe(who)));
      const chat = this.conversation(who);
      if (chat) found.push(chat);
      return found;
    }
    if (context) return [context];
    const win = event.room ? this.room(event.room) : undefined;
    return win ? [win] : [];
  }
}
