// The chat page: plain browser JavaScript, no build step. It asks the HTTP
// server where the chat socket listens (/config.json), joins under a name,
// and reconnects with backoff whenever the socket drops (a server restart).
"use strict";

const MAX_BACKOFF = 10_000;
const NAME_KEY = "sansio-chat-name";

const $ = (selector) => document.querySelector(selector);
const log = $("#log");
const statusBox = $("#status");
const statusText = $("#status-text");
const membersList = $("#members");
const memberCount = $("#member-count");
const me = $("#me");
const sendForm = $("#send-form");
const messageInput = $("#message");
const sendButton = $("#send");
const joinDialog = $("#join-dialog");
const joinForm = $("#join-form");
const nameInput = $("#name");
const joinError = $("#join-error");

const state = {
  name: localStorage.getItem(NAME_KEY) ?? "",
  socket: null,
  joined: false,
  attempt: 0,
  retryTimer: 0,
  epoch: null,
  lastId: 0,
};

// ---- Rendering ----

function setStatus(kind, text) {
  statusBox.dataset.state = kind;
  statusText.textContent = text;
}

function setComposer(enabled) {
  messageInput.disabled = !enabled;
  sendButton.disabled = !enabled;
  if (enabled) messageInput.focus();
}

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
}

function append(item) {
  const stick = nearBottom();
  log.querySelector(".empty")?.remove();
  log.append(item);
  if (stick) log.scrollTop = log.scrollHeight;
}

function clock(time) {
  return new Date(time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A stable colour per name, so people are easy to tell apart.
function hue(name) {
  let h = 0;
  for (const char of name) h = (h * 31 + char.codePointAt(0)) % 360;
  return h;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  // textContent, never innerHTML: names and messages come from strangers.
  if (text !== undefined) node.textContent = text;
  return node;
}

function showMessage(message) {
  const item = el("li", message.name === state.name ? "msg mine" : "msg");
  const who = el("span", "who", message.name);
  who.style.color = `hsl(${hue(message.name)} 60% 45%)`;
  const time = el("time", "time", clock(message.time));
  time.dateTime = new Date(message.time).toISOString();
  item.append(who, el("span", "text", message.text), time);
  append(item);
}

function showNotice(text, isError = false) {
  append(el("li", isError ? "notice error" : "notice", text));
}

function showMembers(names) {
  membersList.replaceChildren(...names.map((name) => {
    const item = el("li");
    const avatar = el("span", "avatar", [...name][0]?.toUpperCase() ?? "?");
    avatar.style.background = `hsl(${hue(name)} 55% 50%)`;
    item.append(avatar, el("span", "member-name", name + (name === state.name ? " (you)" : "")));
    return item;
  }));
  memberCount.textContent = String(names.length);
}

// ---- The socket ----

async function socketUrl() {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const { wsPort } = await response.json();
  return `ws://${location.hostname}:${wsPort}/`;
}

async function connect() {
  clearTimeout(state.retryTimer);
  setStatus("connecting", state.attempt === 0 ? "connecting…" : "reconnecting…");
  let url;
  try {
    url = await socketUrl();
  } catch {
    retry(); // the page server is down too; try again later
    return;
  }
  let socket;
  try {
    socket = new WebSocket(url);
  } catch {
    retry(); // refused before it started (a policy, a bad URL): try again later
    return;
  }
  state.socket = socket;
  socket.onopen = () => {
    // What the handshake agreed (permessage-deflate and its windows), for
    // whoever inspects the page.
    statusBox.dataset.extensions = socket.extensions;
    socket.send(JSON.stringify({ type: "join", name: state.name }));
  };
  socket.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    onMessage(message);
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    const wasJoined = state.joined;
    state.joined = false;
    setComposer(false);
    showMembers([]);
    if (wasJoined) {
      const why = event.code === 1001 ? "the server went away" : `code ${event.code}`;
      showNotice(`Disconnected (${why}). Reconnecting…`, true);
    }
    if (event.code === 1008 && event.reason) showNotice(event.reason, true);
    retry();
  };
}

function retry() {
  // Exponential backoff with jitter, so a restarted server is not hit by
  // every page at the same instant.
  const base = Math.min(MAX_BACKOFF, 500 * 2 ** state.attempt);
  const delay = Math.round(base / 2 + Math.random() * base / 2);
  state.attempt++;
  setStatus("closed", `offline, retrying in ${Math.ceil(delay / 1000)} s`);
  state.retryTimer = setTimeout(connect, delay);
}

function onMessage(message) {
  switch (message.type) {
    case "welcome": {
      state.joined = true;
      state.attempt = 0;
      state.name = message.name;
      me.textContent = message.name;
      if (message.epoch !== state.epoch) {
        // A new server: its message ids start over.
        state.epoch = message.epoch;
        state.lastId = 0;
      }
      for (const line of message.history ?? []) {
        if (line.id > state.lastId) {
          showMessage(line);
          state.lastId = line.id;
        }
      }
      setStatus("open", "connected");
      setComposer(true);
      break;
    }
    case "message":
      if (message.id > state.lastId) state.lastId = message.id;
      showMessage(message);
      break;
    case "join":
      showNotice(
        message.name === state.name ? `You joined as ${message.name}` : `${message.name} joined`,
      );
      break;
    case "leave":
      showNotice(`${message.name} left`);
      break;
    case "members":
      showMembers(message.names ?? []);
      break;
    case "error":
      if (state.joined) {
        showNotice(message.error, true);
      } else {
        // Our name was refused: ask again.
        state.socket?.close(1000);
        state.socket = null;
        askName(message.error);
      }
      break;
  }
}

// ---- Forms ----

function askName(error = "") {
  clearTimeout(state.retryTimer);
  nameInput.value = state.name;
  joinError.textContent = error;
  setStatus("idle", "not connected");
  if (!joinDialog.open) joinDialog.showModal();
  nameInput.focus();
}

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = nameInput.value.replace(/\s+/g, " ").trim();
  if (name === "") {
    joinError.textContent = "Please enter a name.";
    return;
  }
  state.name = name;
  localStorage.setItem(NAME_KEY, name);
  joinDialog.close();
  state.attempt = 0;
  connect();
});

// Escape would close the dialog with no name to join under.
joinDialog.addEventListener("cancel", (event) => event.preventDefault());

sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = messageInput.value.trim();
  const socket = state.socket;
  if (text === "" || !state.joined || socket?.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "message", text }));
  messageInput.value = "";
  resize();
});

messageInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendForm.requestSubmit();
  }
});

function resize() {
  messageInput.style.height = "auto";
  messageInput.style.height = `${messageInput.scrollHeight + 2}px`;
}
messageInput.addEventListener("input", resize);

log.append(el("li", "empty", "No messages yet. Say hello!"));
if (state.name === "") askName();
else connect();
