// The WebSocket to the chat server (docs/websocket.md, protocol version 1):
// framing, signing in (and signing in again by itself after a reconnect),
// and reconnecting with exponential backoff when the connection drops.
//
// The page (app.js) gets every object the server sends through `onEvent`,
// after this module has acted on the ones that concern signing in, and the
// state of the connection through `onStatus`.

import { fold } from "./model.js";

const FIRST_DELAY = 1000; // milliseconds before the first reconnect
const MAX_DELAY = 30000; // the longest wait between reconnects
const STEADY_MS = 30000; // a connection up this long resets the backoff

// Milliseconds to wait before reconnect number `attempt` (0, 1, 2, ...):
// 1 s doubling to 30 s, each spread by ±20% so that the pages of a whole
// crowd do not all come back in the same second after a restart.
export function backoffDelay(attempt) {
  const base = Math.min(MAX_DELAY, FIRST_DELAY * 2 ** attempt);
  return Math.min(MAX_DELAY, Math.round(base * (0.8 + Math.random() * 0.4)));
}

// The objects in one server message: one JSON object a line. A line that
// is not JSON is skipped rather than losing the rest of the message.
export function parseMessage(data) {
  const objects = [];
  for (const line of data.split("\n")) {
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line);
      if (value && typeof value.type === "string") objects.push(value);
    } catch (error) {
      console.warn("twistedchat: not JSON from the server:", line, error);
    }
  }
  return objects;
}

// Lines that end the session on purpose: no reconnecting after them.
const QUIT = /^\s*(\/(quit|exit)(\s|$)|\.exit\s*$)/i;

export class ChatConnection {
  constructor(url, { onEvent, onStatus }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.socket = null;
    this.nickname = ""; // the nickname to sign in with (kept up to date after /nick)
    this.password = null; // in memory only, never stored: for signing in again
    this.resume = false; // signed in before: sign in again by itself after a reconnect
    this.signedIn = false;
    this.wantSignIn = false; // send the nickname as soon as the server asks for it
    this.awaitingNickname = false; // the server asked for a nickname, unanswered
    this.sentPassword = false; // a password was sent on this connection
    this.stopReason = null; // "ghosted", "killed", "quit": do not reconnect
    this.attempt = 0; // reconnects since the last connection that stayed up
    this.steady = null; // resets the backoff once a connection has stayed up a while
    this.timer = null; // the pending reconnect
    this.ticker = null; // updates the countdown every second
    this.reconnectAt = 0;
  }

  // Open the socket, unless one is open or opening.
  open() {
    if (this.socket) return;
    this.clearTimers();
    this.stopReason = null;
    this.status({ state: "connecting" });
    const socket = (this.socket = new WebSocket(this.url));
    this.awaitingNickname = false;
    this.sentPassword = false;
    socket.addEventListener("open", () => {
      // Signing in again by ourselves takes a moment: not "connected" yet.
      if (socket === this.socket) this.status({ state: this.resume ? "signing-in" : "connected" });
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket || typeof event.data !== "string") return;
      for (const object of parseMessage(event.data)) this.receive(object);
    });
    socket.addEventListener("close", (event) => {
      if (socket === this.socket) this.closed(event);
    });
  }

  // Sign in as `nickname`, with `password` if given; the nickname goes as
  // soon as the server asks for it (now, if it has asked already).
  signIn(nickname, password) {
    this.nickname = nickname;
    this.password = password || null;
    this.wantSignIn = true;
    this.stopReason = null;
    if (this.awaitingNickname) this.sendNickname();
    else this.open();
  }

  // Answer "password_wanted"; "" gives up and asks for another nickname.
  sendPassword(password) {
    if (password) this.password = password;
    this.sentPassword = Boolean(password);
    return this.send({ type: "password", password });
  }

  // Remember a password given with /register, /identify, /password or
  // /nick NAME PASSWORD, to sign in with after a reconnect.
  rememberPassword(password) {
    this.password = password || null;
  }

  // Send one object; false if there is no open connection.
  send(object) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(object));
    return true;
  }

  // Send a typed line; a /quit means the connection will close on purpose.
  sendLine(text) {
    const sent = this.send({ type: "line", text });
    if (sent && QUIT.test(text)) this.stopReason = "quit";
    return sent;
  }

  // Reconnect at once instead of waiting for the countdown.
  reconnectNow() {
    if (this.timer !== null) this.open();
  }

  // Sign-in and stop decisions on what the server sends, then pass it on.
  receive(object) {
    let handled = false;
    switch (object.type) {
      case "nickname_wanted":
        this.awaitingNickname = true;
        this.signedIn = false;
        if (this.wantSignIn) {
          this.sendNickname();
          handled = true;
        }
        break;
      case "password_wanted":
        // Give the password we have once; after that, the person decides.
        if (this.password && !this.sentPassword) {
          this.sendPassword(this.password);
          handled = true;
        }
        break;
      case "error":
        // A password refused while signing in: forget it, and do not try it
        // again by ourselves (three wrong ones close the connection).
        if (!this.signedIn && this.sentPassword) {
          this.password = null;
          this.sentPassword = false;
        }
        break;
      case "welcome":
        this.signedIn = true;
        this.resume = true;
        // Back off from scratch only once this connection has stayed up:
        // one cut off right after signing in (over a limit, say) must not
        // come back every second.
        clearTimeout(this.steady);
        this.steady = setTimeout(() => { this.attempt = 0; }, STEADY_MS);
        this.nickname = object.nickname;
        this.status({ state: "connected" });
        break;
      case "nick":
        if (this.signedIn && fold(object.old) === fold(this.nickname)) this.nickname = object.new;
        break;
      case "ghosted":
      case "killed":
        this.stopReason = object.type;
        this.resume = false;
        break;
      default:
        break;
    }
    this.onEvent(object, { handled });
  }

  sendNickname() {
    const message = { type: "nickname", nickname: this.nickname };
    if (this.password) message.password = this.password;
    this.awaitingNickname = false;
    this.wantSignIn = false;
    this.sentPassword = Boolean(this.password);
    this.send(message);
  }

  // The socket closed: stop, wait for the person, or reconnect later.
  closed(event) {
    const wasSignedIn = this.signedIn;
    clearTimeout(this.steady);
    this.steady = null;
    this.socket = null;
    this.signedIn = false;
    this.awaitingNickname = false;
    if (this.stopReason) {
      this.resume = false;
      this.wantSignIn = false;
      this.status({ state: "stopped", reason: this.stopReason, wasSignedIn });
      return;
    }
    if (!this.resume) {
      // Never signed in (the sign-in page waited too long, say): connect
      // again when the person signs in.
      this.status({ state: "offline", code: event.code, wasSignedIn });
      return;
    }
    this.wantSignIn = true;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.reconnectAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open();
    }, delay);
    this.ticker = setInterval(() => this.countdown(), 1000);
    this.countdown(wasSignedIn);
  }

  countdown(wasSignedIn = false) {
    const seconds = Math.max(1, Math.ceil((this.reconnectAt - Date.now()) / 1000));
    this.status({ state: "reconnecting", seconds, wasSignedIn });
  }

  clearTimers() {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.ticker !== null) clearInterval(this.ticker);
    this.timer = null;
    this.ticker = null;
  }

  status(status) {
    if (status.state !== "reconnecting" && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
    this.onStatus(status);
  }
}
