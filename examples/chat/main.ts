/**
 * A small chat: a page served over HTTP on localhost, talking to a
 * WebSocket server on raw TCP (`Deno.listen`) built on this module.
 *
 *     deno task demo
 *     deno run --allow-net=127.0.0.1 --allow-read=examples/chat examples/chat/main.ts [--port 8000] [--ws-port 8001]
 *
 * Then open the printed page URL in two browser tabs. Both ports accept 0
 * (a free port); the page learns the socket's port from `/config.json`.
 *
 * The wire protocol is JSON text messages. The page sends
 * `{type: "join", name}` once, then `{type: "message", text}`. The server
 * sends `welcome` (the name it gave you, an epoch, recent history), `members`,
 * `join`, `leave`, `message` and `error`.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { serve, type Server } from "../../server.ts";
import type { Handler, MessageData, Socket } from "../../socket.ts";

/** Options of {@linkcode startChat}. */
export interface ChatOptions {
  /** The address of both servers: `"127.0.0.1"` unless given. */
  hostname?: string;
  /** The HTTP port of the page; 0 picks a free one. Default 8000. */
  port?: number;
  /** The WebSocket port; 0 picks a free one. Default 8001. */
  wsPort?: number;
}

/** A running chat, as {@linkcode startChat} returns it. */
export interface Chat extends AsyncDisposable {
  /** The page, such as `http://127.0.0.1:8000/`. */
  readonly pageUrl: string;
  /** The WebSocket endpoint, such as `ws://127.0.0.1:8001/`. */
  readonly wsUrl: string;
  /** Close every socket with 1001, stop both servers, and wait for them. */
  shutdown(): Promise<void>;
}

/** One line of the chat, as it goes out to the pages. */
interface ChatLine {
  type: "message";
  id: number;
  name: string;
  text: string;
  time: number;
}

// Bounds on what a client may make us do. The page enforces the same
// lengths, but the server never relies on that.
const MAX_NAME = 24;
const MAX_TEXT = 500;
// A chat message is small: anything larger than this on the wire is not
// one of ours and fails with 1009 before it is even parsed.
const MAX_FRAME = 8192;
const MAX_CONNECTIONS = 200;
const HISTORY = 50;
// Token bucket per connection: bursts of BURST messages, RATE a second after.
const BURST = 8;
const RATE = 2;
// Dropped messages tolerated before the sender is disconnected.
const MAX_STRIKES = 20;
// A page that stops reading must not make the server buffer without bound.
const MAX_BUFFERED = 256 * 1024;
const JOIN_TIMEOUT = 30_000;
// How long stopping waits for page requests still being answered.
const SHUTDOWN_WAIT = 5_000;

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

class Room {
  readonly #members = new Map<Socket, string>();
  readonly #history: ChatLine[] = [];
  // Pages keep their log across reconnects and skip history they have
  // seen; a new epoch (a restarted server) tells them ids started over.
  readonly #epoch = crypto.randomUUID();
  #nextId = 1;

  has(socket: Socket): boolean {
    return this.#members.has(socket);
  }

  join(socket: Socket, wanted: string): string {
    // Two tabs may well pick the same name; number them rather than refuse.
    // Compared as they look: "alice" and "alice" with a zero-width space
    // are one name to a reader.
    const taken = new Set([...this.#members.values()].map(visible));
    const chars = [...wanted];
    let name = wanted;
    for (let n = 2; taken.has(visible(name)); n++) {
      // Cut by code points, never inside a surrogate pair, to fit the limit.
      const suffix = ` (${n})`;
      name = chars.slice(0, MAX_NAME - suffix.length).join("").trimEnd() + suffix;
    }
    this.#members.set(socket, name);
    send(socket, { type: "welcome", name, epoch: this.#epoch, history: this.#history });
    this.broadcast({ type: "join", name, time: Date.now() });
    this.#broadcastMembers();
    return name;
  }

  leave(socket: Socket): void {
    const name = this.#members.get(socket);
    if (name === undefined) return;
    this.#members.delete(socket);
    this.broadcast({ type: "leave", name, time: Date.now() });
    this.#broadcastMembers();
  }

  say(socket: Socket, text: string): void {
    const name = this.#members.get(socket);
    if (name === undefined) return;
    const line: ChatLine = { type: "message", id: this.#nextId++, name, text, time: Date.now() };
    this.#history.push(line);
    if (this.#history.length > HISTORY) this.#history.shift();
    this.broadcast(line);
  }

  broadcast(message: object): void {
    // Serialised once for everyone; each socket compresses its own copy.
    const data = JSON.stringify(message);
    for (const socket of this.#members.keys()) {
      if (socket.bufferedAmount > MAX_BUFFERED) {
        socket.close(1008, "Too slow to keep up").catch(() => {});
        continue;
      }
      socket.send(data).catch(() => {});
    }
  }

  #broadcastMembers(): void {
    const names = [...this.#members.values()].sort((a, b) => a.localeCompare(b));
    this.broadcast({ type: "members", names });
  }
}

function send(socket: Socket, message: object): void {
  socket.send(JSON.stringify(message)).catch(() => {});
}

// Control characters (C0, DEL, C1) and the bidi overrides that could make
// one name display as another are removed; whitespace runs collapse.
const UNSAFE = /[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu;

/**
 * Clean a display name; `null` if nothing acceptable is left.
 *
 * @param value Whatever the client sent.
 * @returns The name, or `null`.
 */
export function cleanName(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const name = value.normalize("NFC").replace(UNSAFE, " ").replace(/\s+/gu, " ").trim();
  const chars = [...name];
  // A name of invisible characters only (zero-width spaces, fillers) is none.
  if (visible(name).trim() === "" || chars.length > MAX_NAME) return null;
  return name;
}

// What a name shows: without the characters that draw nothing (zero-width
// spaces and joiners, fillers, variation selectors). Kept in the name, as
// emoji need some of them, but not compared.
function visible(name: string): string {
  return name.replace(/\p{Default_Ignorable_Code_Point}/gu, "");
}

/**
 * Clean a chat message; `null` if empty or too long. Newlines are kept.
 *
 * @param value Whatever the client sent.
 * @returns The text, or `null`.
 */
export function cleanText(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const text = value.normalize("NFC").replace(/\r\n?/g, "\n")
    .replace(/(?!\n)[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu, "")
    .replace(/\n{3,}/g, "\n\n").trim();
  const length = [...text].length;
  if (length === 0 || length > MAX_TEXT) return null;
  return text;
}

function parse(data: MessageData): Record<string, unknown> | null {
  if (typeof data !== "string") return null;
  try {
    const value: unknown = JSON.parse(data);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    return value as Record<string, unknown>;
  } catch {
    return null;
  }
}

function handleSocket(room: Room, allowedOrigins: ReadonlySet<string>): Handler {
  // Connections, joined or not: those that never join count too until the
  // join timeout drops them.
  let connections = 0;
  return async (socket, request) => {
    // A browser always sends Origin: refuse pages from other sites, so a
    // page elsewhere cannot join in the visitor's name. Tools that send no
    // Origin (the tests, wscat) are let in.
    const origin = request.extraHeaders.find(([name]) => name.toLowerCase() === "origin")?.[1];
    if (origin !== undefined && !allowedOrigins.has(origin)) {
      socket.reject({ status: 403, body: "Origin not allowed" });
      return;
    }
    if (connections >= MAX_CONNECTIONS) {
      socket.reject({ status: 503, body: "The room is full" });
      return;
    }
    socket.accept();
    connections++;

    let tokens = BURST;
    let refilled = Date.now();
    let strikes = 0;
    const joinTimer = setTimeout(() => {
      if (!room.has(socket)) socket.close(1008, "No join within 30 s").catch(() => {});
    }, JOIN_TIMEOUT);
    try {
      for await (const data of socket) {
        const message = parse(data);
        if (message === null) {
          await socket.close(1003, "Expected a JSON object in a text message");
          break;
        }
        // Every message costs a token, joins included: invalid ones too.
        const now = Date.now();
        tokens = Math.min(BURST, tokens + ((now - refilled) / 1000) * RATE);
        refilled = now;
        if (tokens < 1) {
          if (++strikes > MAX_STRIKES) {
            await socket.close(1008, "Too many messages");
            break;
          }
          send(socket, { type: "error", error: "Slow down: too many messages" });
          continue;
        }
        tokens -= 1;
        if (!room.has(socket)) {
          const name = cleanName(message["name"]);
          if (message["type"] !== "join") {
            await socket.close(1008, "Join first");
            break;
          }
          if (name === null) {
            send(socket, { type: "error", error: `A name is 1 to ${MAX_NAME} characters` });
            continue;
          }
          clearTimeout(joinTimer);
          room.join(socket, name);
          continue;
        }
        if (message["type"] !== "message") {
          send(socket, { type: "error", error: "Unknown message type" });
          continue;
        }
        const text = cleanText(message["text"]);
        if (text === null) {
          send(socket, { type: "error", error: `A message is 1 to ${MAX_TEXT} characters` });
          continue;
        }
        room.say(socket, text);
      }
    } finally {
      connections--;
      clearTimeout(joinTimer);
      room.leave(socket);
    }
  };
}

async function loadStatic(): Promise<Map<string, { body: Uint8Array<ArrayBuffer>; type: string }>> {
  const files = new Map<string, { body: Uint8Array<ArrayBuffer>; type: string }>();
  for (const [path, { file, type }] of Object.entries(STATIC_FILES)) {
    files.set(path, { body: await Deno.readFile(new URL(file, import.meta.url)), type });
  }
  return files;
}

/**
 * Start the page server (`Deno.serve`) and the chat server (`serve()` on
 * raw TCP, with permessage-deflate).
 *
 * @param options Address and ports.
 * @returns The running chat.
 *
 * @example Starting on free ports
 * ```ts ignore
 * import { startChat } from "./main.ts";
 * await using chat = await startChat({ port: 0, wsPort: 0 });
 * console.log(chat.pageUrl, chat.wsUrl);
 * ```
 */
export async function startChat(options: ChatOptions = {}): Promise<Chat> {
  const hostname = options.hostname ?? "127.0.0.1";
  const files = await loadStatic();
  const room = new Room();
  const origins = new Set<string>();

  // Chat messages are tiny: small limits make a misbehaving client cheap.
  const wsServer: Server = serve({
    hostname,
    port: options.wsPort ?? 8001,
    // A chat holds many connections that each say little: 12-bit windows
    // and memoryLevel 5 (Python websockets' server settings) keep each
    // talking connection's zlib state near 48 KiB rather than 300.
    deflate: { serverMaxWindowBits: 12, clientMaxWindowBits: 12, memoryLevel: 5 },
    limits: { maxFrameSize: MAX_FRAME, maxMessageSize: MAX_FRAME, maxFragments: 16 },
    // Finds pages that vanished without a close (a laptop lid, a dead link).
    pingInterval: 25_000,
    pongTimeout: 20_000,
    onError: (error) => console.error("chat handler:", error),
  }, handleSocket(room, origins));

  const wsAddr = wsServer.addr;
  // An IPv6 address goes in brackets in a URL (RFC 3986 §3.2.2).
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const wsUrl = `ws://${host}:${wsAddr.port}/`;
  let http: Deno.HttpServer<Deno.NetAddr>;
  try {
    http = Deno.serve({ hostname, port: options.port ?? 8000, onListen() {} }, (request) => {
      const url = new URL(request.url);
      if (request.method !== "GET" && request.method !== "HEAD") {
        return new Response("Method not allowed", { status: 405, headers: { allow: "GET, HEAD" } });
      }
      if (url.pathname === "/config.json") {
        return Response.json({ wsPort: wsAddr.port }, { headers: { "cache-control": "no-store" } });
      }
      const file = files.get(url.pathname);
      if (file === undefined) return new Response("Not found", { status: 404 });
      return new Response(file.body, {
        headers: {
          "content-type": file.type,
          "cache-control": "no-cache",
          "x-content-type-options": "nosniff",
          "referrer-policy": "no-referrer",
          // Any port of this host: a page left open across a restart on
          // another socket port (--ws-port 0) learns it from /config.json,
          // and a policy naming the old port blocked the new one for good.
          "content-security-policy":
            `default-src 'self'; connect-src 'self' ws://${host}:* ws://localhost:*; img-src 'self' data:; frame-ancestors 'none'`,
        },
      });
    });
  } catch (error) {
    await wsServer.shutdown();
    throw error;
  }
  const httpPort = http.addr.port;
  // As browsers send them: a default port (80) is left out.
  const pageUrl = new URL(`http://${host}:${httpPort}/`);
  origins.add(pageUrl.origin);
  origins.add(new URL(`http://localhost:${httpPort}/`).origin);

  let stopping: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    if (stopping !== null) return stopping;
    // Deno.serve waits for every response to be read, without a limit: an
    // HTTP client that stopped reading held one Ctrl+C forever. The sockets
    // get their closeTimeout (5 s); the page server gets as long.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const pages = Promise.race([
      http.shutdown(),
      new Promise<void>((resolve) => timer = setTimeout(resolve, SHUTDOWN_WAIT)),
    ]).finally(() => clearTimeout(timer));
    stopping = Promise.all([wsServer.shutdown(), pages]).then(() => {});
    return stopping;
  };
  return {
    pageUrl: pageUrl.href,
    wsUrl,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

function parseArgs(argv: readonly string[]): { port: number; wsPort: number } {
  const ports = { port: 8000, wsPort: 8001 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const at = arg.indexOf("=");
    const [flag, inline] = at < 0 ? [arg, undefined] : [arg.slice(0, at), arg.slice(at + 1)];
    const value = (): number => {
      const text = inline ?? argv[++i];
      const port = Number(text);
      // Digits only: Number() also takes "0x50", " 8 " and "1e3".
      if (text === undefined || !/^[0-9]{1,5}$/.test(text) || port > 65535) {
        throw new TypeError(`${flag} needs a port number from 0 to 65535`);
      }
      return port;
    };
    if (flag === "--port") ports.port = value();
    else if (flag === "--ws-port") ports.wsPort = value();
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  return ports;
}

if (import.meta.main) {
  let ports: { port: number; wsPort: number };
  try {
    ports = parseArgs(Deno.args);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    console.error("usage: deno task demo [--port 8000] [--ws-port 8001]");
    Deno.exit(2);
  }
  let chat: Chat;
  try {
    chat = await startChat(ports);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      console.error(`${error.message}: another program has the port; pick others, such as`);
    } else if (error instanceof Deno.errors.PermissionDenied) {
      console.error(`${error.message}: ports below 1024 need privileges; pick others, such as`);
    } else throw error;
    console.error("  deno task demo --port 0 --ws-port 0");
    Deno.exit(1);
  }
  console.log(`chat page on ${chat.pageUrl}`);
  console.log(`chat socket on ${chat.wsUrl}`);
  console.log("open the page in two tabs; Ctrl+C stops");
  let stopping = false;
  const stop = (): void => {
    // A second Ctrl+C does not wait for slow peers.
    if (stopping) Deno.exit(1);
    stopping = true;
    console.log("\nshutting down: closing every socket with 1001");
    chat.shutdown().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
}
