/**
 * The high-level socket: whole messages in and out, pings, the closing
 * handshake and a `closed` promise, over one of three transports. `serve()`
 * and `connect()` run a {@linkcode WSConnection} on a `Deno.Conn`; the
 * `Deno.serve` helper wraps Deno's native `WebSocket`. The application sees
 * one interface, {@linkcode Socket}, whichever it is.
 *
 * @module
 */

import { emptied, takeFirst } from "./_array.ts";
import {
  allocate,
  allocateKept,
  concatBytes,
  copyBytes,
  inSlab,
  joinFrames,
  recycle,
  SLAB_SIZE,
  takeSpare,
} from "./_bytes.ts";
import { WSConnection } from "./connection.ts";
import { LocalProtocolError, RemoteProtocolError } from "./errors.ts";
import {
  AcceptConnection,
  BytesMessage,
  CloseConnection,
  type Headers,
  Ping,
  Pong,
  RejectConnection,
  RejectData,
  type Request,
  TextMessage,
} from "./events.ts";
import type { Extension } from "./extensions.ts";
import { MAX_HEADER_LENGTH } from "./frame.ts";
import { checkDelay, type Limits, MAX_DELAY, resolveLimits } from "./limits.ts";
import { ConnectionState, ConnectionType } from "./state.ts";

/** A whole message: a `string` for text, a `Uint8Array` for binary. */
export type MessageData = string | Uint8Array;

/** How a connection ended: the close code and reason. */
export interface CloseInfo {
  /**
   * The close code: the peer's (or the one we sent on a protocol error),
   * 1005 when the close frame had none, 1006 when the connection ended
   * without a closing handshake.
   */
  readonly code: number;
  /** The close reason, possibly empty. */
  readonly reason: string;
}

/** Options of {@linkcode Socket.receive}. */
export interface ReceiveOptions {
  /**
   * Milliseconds to wait; then the promise rejects with a `TimeoutError`
   * `DOMException`. 0 or less times out at once unless a message is
   * queued; beyond 2^31 - 1 (`Infinity` too) it waits as long as it takes.
   * `NaN` rejects with a `RangeError`.
   */
  timeout?: number;
  /** Aborting rejects the promise with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Where a socket stands: `connecting` until the opening handshake is done,
 * `open`, `closing` once a close frame went either way, `closed` once the
 * transport is released.
 */
export type SocketState = "connecting" | "open" | "closing" | "closed";

/**
 * A WebSocket connection seen as whole messages. `serve()`, `connect()` and
 * the `Deno.serve` helper all hand out this interface.
 *
 * `for await` takes messages as {@linkcode Socket.receive} does. A loop
 * left early (or an iterator's `return()`) answers its calls still
 * waiting with `done`; later messages stay for `receive()` or a new loop.
 *
 * Errors never escape as unhandled rejections: a peer that breaks the
 * protocol gets the close the engine chose (1002, 1007, 1009) and
 * `closed` reports it; a `send()` or `ping()` left unawaited on a
 * connection that dies rejects quietly.
 *
 * @example An echo round trip on a raw TCP server
 * ```ts
 * import { serve } from "./server.ts";
 * import { connect } from "./client.ts";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
 * await socket.send("hello");
 * if (await socket.receive({ timeout: 1000 }) !== "hello") throw new Error("Example failed");
 * const { code } = await socket.close(1000, "done");
 * if (code !== 1000) throw new Error("Example failed");
 * ```
 */
export interface Socket extends AsyncIterable<MessageData>, AsyncDisposable {
  /** The subprotocol the server chose, or `null`. */
  readonly subprotocol: string | null;
  /** The names of the extensions negotiated, such as `permessage-deflate` (empty until the handshake is done). */
  readonly extensions: readonly string[];
  /** The peer's address, when known. */
  readonly remoteAddr: Deno.Addr | null;
  /** Where the socket stands. */
  readonly state: SocketState;
  /** Bytes given to `send()` (and control frames) not yet written to the transport. */
  readonly bufferedAmount: number;
  /**
   * Resolves (never rejects) once the connection is over and its transport
   * released. Under `Deno.serve` it also resolves, with 1006, when the
   * peer leaves our close unanswered for `closeTimeout`; the transport then
   * stays with Deno's `WebSocket`, which has no way to drop it, until the
   * peer closes or fails `idleTimeout`'s ping.
   */
  readonly closed: Promise<CloseInfo>;
  /**
   * The next whole message. Rejects with {@linkcode ConnectionClosedError}
   * once the connection is over and every message received was taken. A
   * binary message is a view into memory shared with other messages: keep
   * a copy (`slice()`) of those kept long, or it holds the rest alive.
   */
  receive(options?: ReceiveOptions): Promise<MessageData>;
  /**
   * Send a message; resolves once its bytes are written to the transport,
   * so awaiting it makes a fast sender wait for a slow reader. The bytes
   * are taken (copied or encoded) before it returns: `data` may be changed
   * or {@linkcode Socket.release}d at once. Rejects with
   * {@linkcode ConnectionClosedError} when the connection is closing or over.
   * Under `Deno.serve` (`upgrade()`) Deno's `WebSocket` does not tell when
   * bytes are written: there it resolves at once while less than 1 MiB is
   * buffered, and otherwise once the buffer drains below that.
   */
  send(data: MessageData): Promise<void>;
  /**
   * Give a received binary message's memory back, for a later message to
   * be read into: a server that moves many large messages (an echo, a
   * relay) then allocates far less, and the garbage collector has far less
   * to do. Optional: a message never released is collected as usual.
   *
   * The message, and every view of its bytes, must not be used after this
   * call: a later read may overwrite them. Memory is reused only for a
   * message that was read into a buffer of its own, which the raw TCP
   * driver does for a binary message with no extension that is larger than
   * its current read (one large message at a time, not a pipelined burst):
   * up to 64 KiB always, and up to 1 MiB when the buffers given back hold
   * one that fits (as the frames echoing earlier messages like it do). For
   * any other message, a string, a message from elsewhere, one released
   * before, and under `Deno.serve`, this does nothing.
   *
   * @example Echo without a fresh buffer per message
   * ```ts
   * import { serve } from "./server.ts";
   * await using _server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
   *   for await (const message of socket) {
   *     const sent = socket.send(message); // encodes a copy at once
   *     socket.release(message); // so the bytes may be reused now
   *     await sent;
   *   }
   * });
   * ```
   */
  release(message: MessageData): void;
  /**
   * Send a ping; resolves when the matching pong arrives. Rejects with a
   * `LocalProtocolError` for a payload over 125 bytes (and with
   * `NotSupported` under `Deno.serve`, where Deno runs the pings).
   */
  ping(payload?: Uint8Array): Promise<void>;
  /**
   * Start the closing handshake (if no close went out yet) and wait for its
   * end; the transport is dropped after `closeTimeout` if the peer never
   * answers. Rejects with a `RangeError` for a code that may not be sent
   * (only 1000-1003, 1007-1014 and 3000-4999 may; under `Deno.serve` only
   * 1000 and 3000-4999) or a reason over 123 bytes of UTF-8.
   */
  close(code?: number, reason?: string): Promise<CloseInfo>;
  /**
   * Iterate over whole messages; iteration ends once the peer's close has
   * arrived (or the connection dropped) and every message was taken.
   *
   * Asking for the next message empties the result that held the one
   * before (its `value` becomes `undefined`): read `value` first, as
   * `for await`, `Array.fromAsync` and `ReadableStream.from` do. A loop
   * waiting for its next message would otherwise keep the last one alive
   * (V8 holds the last result while the loop waits).
   */
  [Symbol.asyncIterator](): AsyncIterator<MessageData, undefined>;
}

/** Options of {@linkcode ServerSocket.accept}. */
export interface AcceptOptions {
  /** The subprotocol chosen, one the client offered, or `null` (the default). */
  subprotocol?: string | null;
  /** Headers to add to the 101 response. */
  extraHeaders?: Headers;
}

/** Options of {@linkcode ServerSocket.reject}. */
export interface RejectOptions {
  /** The HTTP status, from 200 to 599: 403 unless given. */
  status?: number;
  /** A body to send with its `Content-Length`. */
  body?: string | Uint8Array;
  /** Response headers. */
  headers?: Headers;
}

/**
 * The socket a server's handler receives while the opening handshake still
 * waits for an answer. Call `accept()` or `reject()`; a handler that sends,
 * receives, pings or closes without either accepts with no subprotocol,
 * and one that returns without deciding accepts too, then closes with
 * 1000 (one that throws is answered with 500).
 *
 * @example Choosing a subprotocol
 * ```ts
 * import { serve } from "./server.ts";
 * import { connect } from "./client.ts";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, (socket, request) => {
 *   if (!request.subprotocols.includes("chat")) return socket.reject({ status: 400 });
 *   socket.accept({ subprotocol: "chat" });
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, { subprotocols: ["chat"] });
 * if (socket.subprotocol !== "chat") throw new Error("Example failed");
 * await socket.close();
 * ```
 */
export interface ServerSocket extends Socket {
  /**
   * Accept the handshake.
   *
   * @throws {LocalProtocolError} When the subprotocol was not offered, or the handshake was answered already.
   */
  accept(options?: AcceptOptions): void;
  /**
   * Refuse the handshake with an HTTP response; `closed` then resolves with 1006.
   *
   * @throws {LocalProtocolError} When the handshake was answered already.
   */
  reject(options?: RejectOptions): void;
}

/**
 * A server's handler, for `serve()` and the `Deno.serve` helper alike. The
 * connection lasts as long as the handler: when it returns, the socket
 * closes with 1000, and when it throws, with 1011 (a handshake it did not
 * answer is refused with 500). A handler that hands the socket on to other
 * code keeps it open by accepting and then awaiting `socket.closed`.
 *
 * @example An echo handler
 * ```ts
 * import type { Handler } from "./socket.ts";
 * const echo: Handler = async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * };
 * if (typeof echo !== "function") throw new Error("Example failed");
 * ```
 */
export type Handler = (socket: ServerSocket, request: Request) => void | Promise<unknown>;

/**
 * Hand a driver's error to the application's `onError`. What that throws is
 * dropped: it must not break an accept loop or a handler's bookkeeping (it
 * ended the process as an unhandled rejection).
 *
 * @param onError The application's error handler.
 * @param error The error.
 */
export function report(onError: (error: unknown) => void, error: unknown): void {
  try {
    onError(error);
  } catch {
    // the application's own error handler failed; nothing is left to tell
  }
}

/** The socket a driver runs a handler on, told when the handler is over. */
interface HandledSocket extends ServerSocket {
  handlerDone(error: unknown, threw: boolean): void;
}

/**
 * Run a handler to its end on a driver's socket: the socket is told how it
 * ended (a handshake still pending is accepted, or refused with 500 after a
 * throw), and what it threw goes to `onError`, but not a
 * `ConnectionClosedError`: a send or receive that failed because the peer
 * went away is how a connection ends, not an error of the handler's.
 *
 * @param handler The application's handler.
 * @param socket The connection's socket.
 * @param request The handshake request.
 * @param onError The application's error handler.
 * @returns Resolves once the handler is over; never rejects.
 */
export function runHandler(
  handler: Handler,
  socket: HandledSocket,
  request: Request,
  onError: (error: unknown) => void,
): Promise<void> {
  let running: ReturnType<Handler>;
  try {
    running = handler(socket, request);
  } catch (error) {
    running = Promise.reject(error);
  }
  // Awaited where `request` is not in scope: a suspended async function
  // keeps its arguments, and the request (its headers) would stay alive
  // for as long as the handler runs, which is the connection's lifetime.
  return settleHandler(socket, running, onError);
}

async function settleHandler(
  socket: HandledSocket,
  running: ReturnType<Handler>,
  onError: (error: unknown) => void,
): Promise<void> {
  let failure: { error: unknown } | null = null;
  try {
    await running;
  } catch (error) {
    failure = { error };
  }
  try {
    socket.handlerDone(failure?.error, failure !== null);
  } catch (error) {
    report(onError, error);
  }
  if (failure !== null && !(failure.error instanceof ConnectionClosedError)) {
    report(onError, failure.error);
  }
}

/**
 * The drivers' default `onError`: the error printed as text. Deno passes
 * what `console.error` logs on to V8's inspector console, which keeps the
 * last messages' arguments alive: an error object kept that way kept the
 * socket its stack passed through, with the messages that socket held
 * (16 MB per dead connection in a review's test).
 *
 * @param error The error.
 */
export function logError(error: unknown): void {
  // deno-lint-ignore no-console
  console.error(Deno.inspect(error));
}

/**
 * A `receive()`, `send()` or `ping()` on a connection that is closing or
 * over. `code` and `reason` are those of the close, once known (1006 until
 * then).
 *
 * @example
 * ```ts
 * import { ConnectionClosedError } from "./socket.ts";
 * const error = new ConnectionClosedError({ code: 1001, reason: "bye" });
 * if (!(error.code === 1001 && error.message.includes("1001"))) throw new Error("Example failed");
 * ```
 */
export class ConnectionClosedError extends Error {
  /** The close code. */
  readonly code: number;
  /** The close reason. */
  readonly reason: string;

  /**
   * Make the error.
   *
   * @param info The close, when known.
   */
  constructor(info: CloseInfo = ABNORMAL) {
    super(
      `The WebSocket connection is closed (code ${info.code}${
        info.reason === "" ? "" : `, reason ${JSON.stringify(info.reason)}`
      })`,
    );
    this.name = "ConnectionClosedError";
    this.code = info.code;
    this.reason = info.reason;
  }
}

const ABNORMAL: CloseInfo = Object.freeze({ code: 1006, reason: "" });
const NOOP = (): void => {};
const EMPTY = new Uint8Array(0);

/**
 * A promise that is only made if somebody asks for it: a server socket's
 * `opened`, `closed` when nobody awaits it, and the read loop's wait for
 * the closing handshake are rarely asked for, and each
 * `Promise.withResolvers()` held by an idle connection costs a few hundred
 * bytes. Never rejects.
 */
class Later<T> {
  #promise: Promise<T> | null = null;
  #resolve: ((value: T) => void) | null = null;
  #settled = false;
  #value: T | undefined;

  get promise(): Promise<T> {
    if (this.#promise === null) {
      if (this.#settled) this.#promise = Promise.resolve(this.#value as T);
      else {
        const { promise, resolve } = Promise.withResolvers<T>();
        this.#promise = promise;
        this.#resolve = resolve;
      }
    }
    return this.#promise;
  }

  resolve(value: T): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#value = value;
    this.#resolve?.(value);
    this.#resolve = null;
  }
}

// A reader that stops taking messages pauses reading (TCP backpressure)
// once this much is queued; each message also counts a fixed overhead so
// that a flood of empty messages is bounded too.
const INBOX_HIGH_WATER = 1 << 20;
const MESSAGE_OVERHEAD = 64;

/**
 * Check a close code and reason an application wants to send.
 *
 * @param code The close code.
 * @param reason The close reason.
 * @throws {RangeError} For codes that may not be sent (RFC 6455 §7.4) or a reason over 123 bytes.
 */
export function checkClose(code: number, reason: string): void {
  const sendable = code === 1000 || (code >= 1001 && code <= 1003) ||
    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
  if (!Number.isInteger(code) || !sendable) {
    throw new RangeError(
      `Close code ${code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999`,
    );
  }
  if (new TextEncoder().encode(reason).length > 123) {
    throw new RangeError("A close reason is at most 123 bytes of UTF-8");
  }
}

type Waiter = (item: MessageData | null) => void;

// A view smaller than this part of its buffer holds memory the size limits
// do not see; see unpinned().
const PIN_RATIO = 8;
// What the queued messages of one inbox may hold that way before they are
// copied.
const PIN_BUDGET = 1 << 20;
// Pieces of a message shorter than this are joined in runs of PIECES_RUN.
const SMALL_PIECE = 1024;
const PIECES_RUN = 64;

// Messages handed to the application that are all of the buffer a
// RawSocket read them into: Socket.release() may give the buffer back
// (once: it deletes them here). The message itself, not its buffer, is the
// key, so that a view of part of it gives nothing back.
const releasable = new WeakSet<Uint8Array>();

// The buffer bytes `item` holds beyond itself, when it holds many more:
// 0 for text, for a view that fills most of its buffer, and for a piece
// of a shared slab (at most 16 KiB, and filled by many).
function pinned(item: MessageData): number {
  if (typeof item === "string") return 0;
  const size = item.buffer.byteLength;
  return size > SLAB_SIZE && item.byteLength * PIN_RATIO < size ? size : 0;
}

// `bytes`, or a copy of them when they are a small view of a large buffer:
// kept, such a view holds the whole buffer.
function unpinned(bytes: Uint8Array): Uint8Array {
  if (pinned(bytes) === 0) return bytes;
  const copy = allocateKept(bytes.byteLength);
  copyBytes(copy, 0, bytes, 0, bytes.byteLength);
  return copy;
}

/**
 * The pieces of the message in progress, kept so that they cost about
 * their own size however the peer chops the message. A small view of a
 * large buffer is copied: kept, it would hold all of that buffer (1-byte
 * fragments between large pongs each held a 256 KiB read buffer). Runs of
 * small pieces are joined: an array or a string each cost about 80 bytes
 * per byte of a frame sent a byte at a time.
 *
 * @example
 * ```ts
 * import { MessageParts } from "./socket.ts";
 * const parts = new MessageParts();
 * parts.push(new Uint8Array(1 << 20).subarray(0, 1)); // copied, not kept as a view
 * const message = parts.end(new Uint8Array([2])) as Uint8Array;
 * if (!(message.length === 2 && message.buffer.byteLength < 1 << 20)) throw new Error("Example failed");
 * ```
 */
export class MessageParts {
  #parts: MessageData[] = [];
  // How many small pieces end #parts, not joined yet.
  #smallRun = 0;

  /** How many pieces are kept (a joined run counts once). */
  get length(): number {
    return this.#parts.length;
  }

  /** Whether the pieces kept are of a text message. */
  get holdsText(): boolean {
    return typeof this.#parts[0] === "string";
  }

  /** Bytes kept of a binary message; 0 for text, or when nothing is kept. */
  get binaryLength(): number {
    let held = 0;
    for (const part of this.#parts) {
      if (typeof part === "string") return 0;
      held += part.length;
    }
    return held;
  }

  /**
   * Keep a piece that does not end the message.
   *
   * @param data The piece.
   */
  push(data: MessageData): void {
    const parts = this.#parts;
    parts.push(typeof data === "string" ? data : unpinned(data));
    if (data.length >= SMALL_PIECE) {
      this.#smallRun = 0;
      return;
    }
    if (++this.#smallRun < PIECES_RUN) return;
    parts.push(join(parts.splice(parts.length - PIECES_RUN)));
    this.#smallRun = 0;
  }

  /**
   * The whole message, with its last piece; nothing is kept after.
   *
   * @param data The last piece.
   * @returns The message.
   */
  end(data: MessageData): MessageData {
    if (this.#parts.length === 0) return data;
    this.#parts.push(data);
    const message = join(this.#parts);
    this.clear();
    return message;
  }

  /**
   * Copy the binary pieces kept to the front of `target`, which then holds
   * them as one piece.
   *
   * @param target Room for them and for what is to come.
   */
  moveTo(target: Uint8Array): void {
    let at = 0;
    for (const part of this.#parts as Uint8Array[]) {
      target.set(part, at);
      at += part.length;
    }
    this.#parts = [target.subarray(0, at)];
    this.#smallRun = 0;
  }

  /** Drop what is kept. */
  clear(): void {
    this.#parts = [];
    this.#smallRun = 0;
  }
}

// Pieces of one message as one: text joined, bytes in a slab when small
// (as small reads are copied: a fresh array per message split across reads
// was a third of the buffer allocations on 16 x 1 KiB pipelined 16 deep).
function join(parts: MessageData[]): MessageData {
  return typeof parts[0] === "string"
    ? parts.join("")
    : concatBytes(parts as Uint8Array[], allocateKept);
}

/**
 * The queue of whole messages between a transport and the application,
 * shared by the socket implementations.
 */
export class Inbox {
  #items: MessageData[] = [];
  #head = 0;
  #size = 0;
  #waiters: Waiter[] = [];
  #end: CloseInfo | null = null;
  #drained: PromiseWithResolvers<void> | null = null;
  #taken = 0;
  // Bytes of the buffers that queued views hold beyond themselves.
  #pinned = 0;

  /** Whether a reader waits for the next message. */
  get waiting(): boolean {
    return this.#waiters.length > 0;
  }

  /** How many messages were taken from the queue so far (a progress counter). */
  get taken(): number {
    return this.#taken;
  }

  /** Whether the reader fell behind: the transport should stop reading. */
  get full(): boolean {
    return this.#size >= INBOX_HIGH_WATER;
  }

  /** Bytes queued (with a per-message overhead). */
  get size(): number {
    return this.#size;
  }

  /**
   * Resolves once the reader took enough to resume reading, or the inbox ended.
   *
   * @returns A promise.
   */
  drained(): Promise<void> {
    if (!this.full || this.#end !== null) return Promise.resolve();
    this.#drained ??= Promise.withResolvers<void>();
    return this.#drained.promise;
  }

  /**
   * Queue a message, or hand it straight to a waiting reader; once the
   * inbox ended, drop it.
   *
   * @param item The message.
   */
  push(item: MessageData): void {
    // Nothing reads an ended inbox: a transport still delivering after the
    // end (Deno's WebSocket past our close timeout) must not fill it.
    if (this.#end !== null) return;
    const waiter = takeFirst(this.#waiters);
    if (waiter !== undefined) {
      waiter(item);
      return;
    }
    // A queued message that is a small view of a large buffer holds all of
    // it, and the size limit counts only the message: past a budget of such
    // buffers, messages are copied (3,000 one-byte messages, each between
    // large pongs, held 783 MB of read buffers while the inbox counted 195
    // KB). Under it, pipelined messages stay views of their read.
    let pin = pinned(item);
    if (pin > 0 && this.#pinned + pin > PIN_BUDGET) {
      item = unpinned(item as Uint8Array);
      pin = 0;
    }
    this.#pinned += pin;
    this.#items.push(item);
    this.#size += item.length + MESSAGE_OVERHEAD;
  }

  /**
   * No more messages will come; readers get the queued ones, then the end.
   *
   * @param info How the connection ended.
   */
  end(info: CloseInfo): void {
    if (this.#end !== null) return;
    this.#end = info;
    for (const waiter of this.#waiters.splice(0)) waiter(null);
    this.#drained?.resolve();
    this.#drained = null;
  }

  /** Whether the inbox ended: no message will be queued after those it holds. */
  get ended(): boolean {
    return this.#end !== null;
  }

  /**
   * The first queued message, taken from the queue, or `undefined` when
   * none is queued.
   *
   * @returns The message.
   */
  take(): MessageData | undefined {
    return this.#shift();
  }

  /**
   * Hand the next message to `waiter` when it comes (`null` if the inbox
   * ends first). Waiters are served in order; call only when
   * {@linkcode take} found nothing and the inbox has not ended.
   *
   * @param waiter Called once.
   */
  wait(waiter: Waiter): void {
    this.#waiters.push(waiter);
  }

  /**
   * Stop waiting: `waiter`, if still waiting, will not be called, and the
   * next message goes to the next waiter or the queue.
   *
   * @param waiter A waiter given to {@linkcode wait}.
   */
  unwait(waiter: Waiter): void {
    const at = this.#waiters.indexOf(waiter);
    if (at >= 0) this.#waiters.splice(at, 1);
  }

  /**
   * The next message, as `Socket.receive()` gives it.
   *
   * @param options Timeout and signal.
   * @returns A promise of the message.
   */
  receive(options: ReceiveOptions = {}): Promise<MessageData> {
    const refused = refuseReceiveOptions(options);
    if (refused !== null) return refused;
    const { timeout, signal } = options;
    const item = this.#shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.#end !== null) return Promise.reject(new ConnectionClosedError(this.#end));
    // A rejection, not a throw: callers chain .catch() on the promise.
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<MessageData>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = (received) => {
        settle();
        if (received === null) reject(new ConnectionClosedError(this.#end ?? ABNORMAL));
        else resolve(received);
      };
      const drop = (): void => {
        this.unwait(waiter);
        settle();
      };
      const onAbort = (): void => {
        drop();
        reject(signal?.reason);
      };
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
      // Past the longest timer, as good as forever (Deno would fire at once).
      if (timeout !== undefined && timeout <= MAX_DELAY) {
        timer = setTimeout(() => {
          drop();
          reject(new DOMException(`No message within ${timeout} ms`, "TimeoutError"));
        }, timeout);
      }
    });
  }

  #shift(): MessageData | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = "";
    this.#taken++;
    // Compact now and then, so a long queue is not shifted one by one.
    if (this.#head === this.#items.length) {
      this.#items = emptied(this.#items);
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#size -= item.length + MESSAGE_OVERHEAD;
    // Only a queue that holds pinned buffers pays to look (most never do).
    if (this.#pinned > 0) this.#pinned -= pinned(item);
    if (this.#drained !== null && this.#size < INBOX_HIGH_WATER / 2) {
      this.#drained.resolve();
      this.#drained = null;
    }
    return item;
  }
}

/**
 * A rejection for receive options that cannot be honoured (a `NaN`
 * timeout), else `null`: checked before a pending handshake is accepted.
 *
 * @param options The options of `receive()`.
 * @returns The rejection, or `null`.
 */
export function refuseReceiveOptions(options?: ReceiveOptions): Promise<never> | null {
  const timeout = options?.timeout;
  if (timeout === undefined || !Number.isNaN(timeout)) return null;
  return Promise.reject(new RangeError("The receive timeout must be a number, got NaN"));
}

/** When a driver pings its peer, and how long it waits for an answer. */
export interface Heartbeat {
  /** Milliseconds from a ping (or the opening) to the next, once it was answered. */
  pingInterval: number;
  /** Milliseconds to wait for anything after a ping; 0 waits forever. */
  pongTimeout: number;
  /** Milliseconds between looks at every socket. */
  tick: number;
}

/**
 * The heartbeat that `serve()` and `connect()` options ask for, checked.
 *
 * @param options `pingInterval` (0, the default: no pings) and
 *   `pongTimeout` (20 s unless given; 0: never give up).
 * @returns The heartbeat, or `null` when there is none.
 * @throws {RangeError} When either is not an integer from 0 to 2^31 - 1.
 */
export function heartbeatOf(
  options: { pingInterval?: number; pongTimeout?: number },
): Heartbeat | null {
  const pingInterval = checkDelay("pingInterval", options.pingInterval ?? 0);
  const pongTimeout = checkDelay("pongTimeout", options.pongTimeout ?? 20_000);
  if (pingInterval === 0) return null;
  // A ping, or the end of a wait, is late by at most a tick: a quarter of
  // the shorter, one timer for all of a server's sockets.
  const shorter = pongTimeout === 0 ? pingInterval : Math.min(pingInterval, pongTimeout);
  const tick = Math.max(1, Math.floor(shorter / 4));
  return { pingInterval, pongTimeout, tick };
}

/**
 * An async iterator over an inbox's messages, ending when the inbox ends.
 *
 * @param inbox The inbox.
 * @param before Called before each read (a pending server socket accepts).
 * @returns The iterator.
 */
export function iterateInbox(
  inbox: Inbox,
  before: () => void,
): AsyncIterator<MessageData, undefined> {
  type Result = IteratorResult<MessageData, undefined>;
  const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
  // The last message handed out, emptied when the next is asked for: a
  // `for await` waiting for its next message holds the result it got last,
  // and with it a message the loop is done with. 256 connections' 64 KiB
  // texts held that way survived every scavenge (12 MB), and V8 ran a full
  // collection every 60 ms to free them.
  let handedOut: { done: false; value: MessageData | undefined } | null = null;
  const result = (item: MessageData | null): Result => {
    if (item === null) return done;
    handedOut = { done: false, value: item };
    return handedOut as Result;
  };
  // A loop waits for one message at a time: its waiter and the promise's
  // executor are made once per iterator, not once per message (two
  // closures and their contexts, ~100 B of garbage per message).
  let resolveNext: ((result: Result) => void) | null = null;
  const waiter: Waiter = (item) => {
    const resolve = resolveNext!;
    resolveNext = null;
    resolve(result(item));
  };
  const park = (resolve: (result: Result) => void): void => {
    resolveNext = resolve;
    inbox.wait(waiter);
  };
  // Calls made before the last answer came (no loop makes them) wait with
  // closures of their own, kept here so that return() can answer them.
  const extraWaiters = new Map<Waiter, (result: Result) => void>();
  let returned = false;
  return {
    next: () => {
      if (handedOut !== null) {
        handedOut.value = undefined;
        handedOut = null;
      }
      if (returned) return Promise.resolve(done);
      before();
      const item = inbox.take();
      if (item !== undefined) return Promise.resolve(result(item));
      if (inbox.ended) return Promise.resolve(done);
      if (resolveNext !== null) {
        return new Promise<Result>((resolve) => {
          const extra: Waiter = (item) => {
            extraWaiters.delete(extra);
            resolve(result(item));
          };
          extraWaiters.set(extra, resolve);
          inbox.wait(extra);
        });
      }
      return new Promise<Result>(park);
    },
    // Ends the iteration: calls still waiting are answered `done` at once,
    // and a message that comes later stays for receive() or a new loop
    // (a waiter left behind took it, and it was lost).
    return: () => {
      returned = true;
      if (resolveNext !== null) {
        inbox.unwait(waiter);
        waiter(null);
      }
      for (const [extra, resolve] of extraWaiters) {
        inbox.unwait(extra);
        resolve(done);
      }
      extraWaiters.clear();
      return Promise.resolve(done);
    },
  };
}

/** The outcome of a client's opening handshake. */
export type OpenResult =
  | { ok: true }
  | {
    ok: false;
    message: string;
    status: number | null;
    headers: Headers;
    body: Uint8Array;
    cause?: unknown;
  };

/** Options of {@linkcode RawSocket}. */
export interface RawSocketOptions {
  /** Which end this is. */
  type: ConnectionType;
  /** Limits; `handshakeTimeout` and `closeTimeout` are kept here. */
  limits?: Partial<Limits>;
  /** Server: called (from a microtask) with the request once it arrived. */
  onRequest?: (socket: RawSocket, request: Request) => void;
  /** Server: makes the extensions to offer in the accept, fresh for this connection. */
  extensions?: () => Extension[];
  /**
   * Client: the engine, which already made the request (so that a bad one
   * threw before any connection was made).
   */
  connection?: WSConnection;
  /** Client: the request's bytes, as `connection.send(request)` gave them. */
  request?: Uint8Array;
  /** Called once the socket is closed, when `closed` resolves. */
  onClosed?: (socket: RawSocket) => void;
}

// The reused read buffer starts small, because an idle connection holds it
// for as long as its read is pending, and doubles while reads fill it. A
// small read after a burst drops it back to KEEP_READ, not further: back
// at IDLE_READ, every burst of pipelined messages took five more reads to
// grow again (16 x 1 KiB, 16 deep: 175k -> 155k msg/s), and a connection
// whose messages just pass a size alternated between two reads and one.
const IDLE_READ = 512;
const KEEP_READ = 4096;
const MAX_READ = 256 * 1024;
// The rest of a large frame is read into one new buffer of its size, up to
// this much: what a peer that announces a large frame and stalls makes us
// hold. A larger binary message or text frame is read into a buffer of its
// own only when the pool of given-back ones holds one (see #ownReadBuffer).
const FRAME_READ = 64 * 1024;
// Such a read asks for this much more than the frame's rest. A read that
// fills its buffer leaves the socket marked readable, so the next read is a
// recv that fails with EAGAIN before the wait; a shorter one tells Deno's
// reactor the socket is drained (one syscall less per 64 KiB message). The
// slack also takes in the start of the next frame when one follows.
const READ_SLACK = 1024;
// What the reads into buffers taken from the pool (sized for a message like
// the last, or a large message's own; see #read), pending on all
// connections, may hold.
const POOLED_READS = 16 * 1024 * 1024;
let pooledReadBytes = 0;
// A long text handed to a waiting reader lives until the reader's
// continuation has run, and Deno runs the continuations of every read it
// completed in a turn before any continuation they queue: each of those
// reads would decode its own text first. With 256 connections echoing
// 64 KiB texts, 12 MB of strings survived every scavenge together and V8
// ran a full collection every 60 ms to free them (a third of the CPU).
// So a read that may hold such a text waits, for a microtask or so, until
// the reader of the last one has had its turn; Deno's own WebSocket makes
// each message's string only when its event is dispatched.
const LONG_TEXT = 16 * 1024;
let longTextHandedOut = false;
const waitingForTextTurn: (() => void)[] = [];
let textTurnsWaited = 0;

/**
 * How many reads so far waited for the reader of a long text to have its
 * turn: for tests, which must show they made reads wait.
 *
 * @returns The count, over every socket of this process.
 */
export function readsThatWaitedForText(): number {
  return textTurnsWaited;
}

// Let the next waiting read go, unless a long text is still in hand.
function nextTextTurn(): void {
  if (!longTextHandedOut) waitingForTextTurn.shift()?.();
}

// Queued right after a long text went to its reader, so it runs right
// after the reader's continuation.
function textTurnOver(): void {
  longTextHandedOut = false;
  nextTextTurn();
}
// Reads up to this size are copied out so that the buffer is reused.
const SMALL_READ = 2048;
// A larger read is handed on as a view, and the next read goes into the
// rest of the same buffer while at least this much of it is left, and at
// least as much as that read brought: a fresh zeroed buffer for every bulk
// read was a fifth of the server's native time (malloc, memset) on 16 x 1
// KiB pipelined 16 deep, and a rest shorter than the burst before it split
// the next burst like it in two reads (two recvs per write there).
const MIN_TAIL = KEEP_READ;
// Writes coalesce frames up to this size; larger frames go out alone, uncopied.
const COALESCE = 64 * 1024;
// Small frames are views into a slab shared with other frames (and other
// connections), which stays alive while any of them waits. Behind a write
// in flight (a peer that stopped reading, perhaps) frames from at most this
// many slabs wait as views; others are copied, so a stalled peer pins a few
// slabs, not one per frame.
const MAX_SHARED_QUEUED = 16;
// Output queued or in flight past which a new pong replaces the one not
// yet written rather than queueing behind it.
const PONGS_BACKED_UP = 64 * 1024;
// Ticks a write waits for a reader that stopped taking queued messages.
const FLUSH_PATIENCE = 3;
// The body of a refused handshake kept for the error.
const MAX_REJECT_BODY = 64 * 1024;

/**
 * The socket over a `Deno.Conn`, running a {@linkcode WSConnection}: what
 * `serve()` and `connect()` hand out. Not exported from `mod.ts`: users see
 * {@linkcode ServerSocket} and {@linkcode Socket}.
 *
 * One read loop feeds the engine; everything written while handling one
 * read (pongs, the close answer) and every frame sent while a write is in
 * flight goes out in one `write`.
 *
 * @example A client socket on a connection made by hand
 * ```ts
 * import { ConnectionType, Request, WSConnection } from "./mod.ts";
 * import { RawSocket } from "./socket.ts";
 * import { serve } from "./server.ts";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, (socket) => socket.close(4000));
 * const connection = new WSConnection(ConnectionType.CLIENT);
 * const request = connection.send(new Request({ host: "127.0.0.1", target: "/" }));
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * const socket = new RawSocket(conn, { type: ConnectionType.CLIENT, connection, request });
 * if (!((await socket.opened).ok)) throw new Error("Example failed");
 * if ((await socket.closed).code !== 4000) throw new Error("Example failed");
 * ```
 */
export class RawSocket implements ServerSocket {
  readonly #conn: Deno.Conn;
  readonly #ws: WSConnection;
  readonly #type: ConnectionType;
  readonly #limits: Limits;
  readonly #onRequest: ((socket: RawSocket, request: Request) => void) | undefined;
  readonly #makeExtensions: (() => Extension[]) | undefined;
  readonly #inbox = new Inbox();
  readonly #closed = new Later<CloseInfo>();
  readonly #opened = new Later<OpenResult>();
  readonly #onClosed: ((socket: RawSocket) => void) | undefined;

  #state: SocketState = "connecting";
  #subprotocol: string | null = null;
  #extensions: readonly string[] = [];
  // Server: the request waits for accept() or reject(); reading pauses.
  #decision: PromiseWithResolvers<void> | null = null;
  #answered = false;
  // Client: a refusal being read.
  #refusal: { status: number; headers: Headers; body: Uint8Array[]; size: number } | null = null;

  // Output: frames queued behind the write in flight, and the promise the
  // senders of this batch wait on.
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #batch: PromiseWithResolvers<void> | null = null;
  #writing = false;
  // The writes of the batch in flight (its frames joined), the one being
  // written and how much of it is out, and what the batch counted.
  #writes: Uint8Array[] = [];
  #writeAt = 0;
  #writeOffset = 0;
  #writeBatch: PromiseWithResolvers<void> | null = null;
  #writeSize = 0;
  // How many slabs the frames queued behind the write in flight share (the
  // last one, to count each once).
  #sharedQueued = 0;
  #lastShared: ArrayBufferLike | null = null;
  // Where in #out the last pong not yet written waits (-1: none).
  #queuedPong = -1;
  #pump: Promise<void> = Promise.resolve();
  #closeAfterFlush = false;
  // Whether our half is closed and the peer's end is awaited.
  #draining = false;

  // Input: a message arriving in pieces.
  readonly #parts = new MessageParts();
  // The buffer a binary message in progress is being read into whole, and
  // its length: delivered as exactly that view, the buffer is the
  // message's. Or the buffer the rest of a text frame is read into alone,
  // given back once the frame is decoded (see #process).
  #ownBuffer: ArrayBufferLike | null = null;
  #ownOffset = 0;
  #ownLength = 0;
  // Whether #ownBuffer was taken from the pool: reads into it count
  // towards POOLED_READS.
  #ownFromPool = false;
  // The length of the last message (or text frame) read into a buffer of
  // its own: the next read is sized for one like it (see #read).
  #lastOwnedLength = 0;
  // Whether the rest of the message in progress is dropped (see #onData).
  #droppingMessage = false;
  // Set while the events after a message wait for the application's answer.
  #heldForReplies: ReturnType<typeof setTimeout> | undefined;
  #pings: { payload: Uint8Array; resolve: () => void; reject: (error: Error) => void }[] = [];
  #pingCounter = 0;

  #closeInfo: CloseInfo | null = null;
  // The first error the transport gave, for a client's failed handshake.
  #ioError: unknown = undefined;
  // Resolved when the closing handshake starts: reading must then go on
  // past a full inbox, or the peer's answer would never be seen.
  readonly #closing = new Later<void>();
  #connClosed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #readLoop: Promise<void>;

  // Heartbeat: when the driver's last ping went out (at first: when the
  // socket opened), whether it waits for an answer, and whether anything
  // arrived since.
  #pingSentAt = 0;
  #pingOutstanding = false;
  #heard = false;
  // Whether reading waits for the application to take queued messages.
  #paused = false;

  /**
   * Start running a connection: a server waits for the request, a client
   * sends `options.request`.
   *
   * @param conn The transport, now owned by the socket.
   * @param options Which end, limits, and the end's own options.
   */
  constructor(conn: Deno.Conn, options: RawSocketOptions) {
    this.#conn = conn;
    this.#type = options.type;
    this.#limits = resolveLimits(options.limits);
    this.#ws = options.connection ?? new WSConnection(options.type, { limits: this.#limits });
    this.#onRequest = options.onRequest;
    this.#makeExtensions = options.extensions;
    this.#onClosed = options.onClosed;
    if (this.#limits.handshakeTimeout > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#abort({ code: 1006, reason: "Handshake timeout" });
      }, this.#limits.handshakeTimeout);
    }
    if (options.type === ConnectionType.CLIENT) {
      if (options.connection === undefined || options.request === undefined) {
        throw new TypeError("A client socket needs its engine and the request it made");
      }
      this.#write(options.request);
    }
    this.#readLoop = this.#read();
  }

  /** Client: resolves once the handshake succeeded or failed (never rejects). */
  get opened(): Promise<OpenResult> {
    return this.#opened.promise;
  }

  /** The subprotocol chosen, or `null`. */
  get subprotocol(): string | null {
    return this.#subprotocol;
  }

  /** The names of the negotiated extensions. */
  get extensions(): readonly string[] {
    return this.#extensions;
  }

  /** The peer's address. */
  get remoteAddr(): Deno.Addr | null {
    return this.#conn.remoteAddr;
  }

  /** Where the socket stands. */
  get state(): SocketState {
    return this.#state;
  }

  /** Bytes queued or being written. */
  get bufferedAmount(): number {
    return this.#outBytes;
  }

  /** Resolves once the connection is over and the transport closed. */
  get closed(): Promise<CloseInfo> {
    return this.#closed.promise;
  }

  // Server: whether the handshake is to be answered now. Over a connection
  // that closed first it counts as answered, and nothing is written.
  #mayAnswer(): boolean {
    if (this.#type !== ConnectionType.SERVER || this.#answered) {
      throw new LocalProtocolError("The handshake was already answered");
    }
    if (this.#connClosed) this.#answered = true;
    return !this.#connClosed;
  }

  /**
   * Server: accept the handshake.
   *
   * @param options Subprotocol and extra headers.
   */
  accept(options: AcceptOptions = {}): void {
    if (!this.#mayAnswer()) return;
    const bytes = this.#ws.send(
      new AcceptConnection({
        subprotocol: options.subprotocol ?? null,
        extensions: this.#makeExtensions?.() ?? [],
        extraHeaders: options.extraHeaders ?? [],
      }),
    );
    this.#answered = true;
    this.#subprotocol = options.subprotocol ?? null;
    this.#extensions = this.#ws.extensions.map((extension) => extension.name);
    this.#state = "open";
    this.#pingSentAt = performance.now(); // the first ping is due pingInterval after opening
    this.#write(bytes);
    this.#decision?.resolve();
  }

  /**
   * Server: refuse the handshake with an HTTP response.
   *
   * @param options Status, body and headers.
   */
  reject(options: RejectOptions = {}): void {
    if (!this.#mayAnswer()) return;
    const bytes = this.#ws.send(
      new RejectConnection({
        statusCode: options.status ?? 403,
        headers: options.headers ?? [],
        ...(options.body === undefined ? {} : { body: options.body }),
      }),
    );
    // Only now: a rejection that cannot be sent leaves the handshake to be
    // answered, with a 500 should the handler then throw.
    this.#answered = true;
    this.#state = "closing";
    this.#write(bytes);
    this.#closeAfterFlush = true;
    this.#armCloseTimer(); // a client that never reads the body must not hold the socket
    this.#decision?.resolve();
  }

  /**
   * The next whole message.
   *
   * @param options Timeout and signal.
   * @returns The message.
   */
  receive(options?: ReceiveOptions): Promise<MessageData> {
    const refused = refuseReceiveOptions(options);
    if (refused !== null) return refused;
    this.#acceptIfPending();
    return this.#inbox.receive(options);
  }

  /**
   * Iterate over whole messages.
   *
   * @returns The iterator.
   */
  [Symbol.asyncIterator](): AsyncIterator<MessageData, undefined> {
    return iterateInbox(this.#inbox, () => this.#acceptIfPending());
  }

  /**
   * Send a whole message.
   *
   * @param data Text or bytes.
   * @returns Resolves once written.
   */
  send(data: MessageData): Promise<void> {
    this.#acceptIfPending();
    if (this.#ws.state !== ConnectionState.OPEN || this.#connClosed) return this.#closedRejection();
    const bytes = this.#ws.send(
      typeof data === "string" ? new TextMessage({ data }) : new BytesMessage({ data }),
    );
    return this.#write(bytes);
  }

  /**
   * Give a received message's buffer back for reuse, when it had one of
   * its own; see {@linkcode Socket.release}.
   *
   * @param message A message this socket received; unused after this call.
   */
  release(message: MessageData): void {
    if (typeof message !== "string" && releasable.delete(message)) recycle(message);
  }

  /**
   * Send a ping; resolves when the matching pong arrives.
   *
   * @param payload Up to 125 bytes; 4 bytes of a counter unless given.
   * @returns Resolves on the pong.
   */
  ping(payload?: Uint8Array): Promise<void> {
    this.#acceptIfPending();
    if (this.#ws.state !== ConnectionState.OPEN || this.#connClosed) return this.#closedRejection();
    const data = payload?.slice() ?? counterPayload(++this.#pingCounter);
    let bytes: Uint8Array;
    try {
      bytes = this.#ws.send(new Ping({ payload: data }));
    } catch (error) {
      return Promise.reject(error);
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    promise.catch(NOOP);
    this.#pings.push({ payload: data, resolve, reject });
    this.#write(bytes);
    return promise;
  }

  /**
   * Run the closing handshake.
   *
   * @param code The close code, 1000 unless given.
   * @param reason The reason, at most 123 bytes of UTF-8.
   * @returns How the connection ended.
   */
  close(code = 1000, reason = ""): Promise<CloseInfo> {
    try {
      checkClose(code, reason);
      this.#acceptIfPending();
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#ws.state === ConnectionState.OPEN && !this.#connClosed) {
      this.#write(this.#ws.send(new CloseConnection({ code, reason })));
      this.#state = "closing";
      this.#closing.resolve();
      this.#armCloseTimer();
    } else if (this.#state === "connecting" && !this.#connClosed) {
      // Still in the handshake, a refusal's body being read included: a
      // server that never ends that body must not hold connect() forever.
      this.#abort(ABNORMAL);
    }
    return this.#closed.promise;
  }

  /**
   * Close with 1001, as when the process goes away.
   *
   * @returns Resolves once closed.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close(1001);
  }

  /**
   * Driver: a server going away. Open sockets close with 1001; sockets
   * still in the handshake are dropped.
   */
  shutdown(): void {
    if (this.#state === "open" && this.#ws.state === ConnectionState.OPEN) {
      this.close(1001, "Server shutting down").catch(NOOP);
    } else if (this.#state === "connecting") {
      this.#abort(ABNORMAL);
    }
  }

  /**
   * Driver: the handler returned (`error` undefined) or threw. A pending
   * socket is refused with 500 after an error; otherwise an open socket
   * closes, with 1000, or 1011 after an error.
   *
   * @param error What the handler threw, if it did.
   * @param threw Whether it threw.
   */
  handlerDone(error: unknown, threw: boolean): void {
    if (!this.#answered && !this.#connClosed) {
      if (threw) {
        this.reject({ status: 500 });
        return;
      }
      this.accept();
    }
    if (this.#ws.state !== ConnectionState.OPEN) return; // closing already, or closed
    if (threw) {
      const reason = error instanceof Error ? error.name : "Internal error";
      this.close(1011, reason.slice(0, 100)).catch(NOOP);
    } else this.close(1000).catch(NOOP);
  }

  /**
   * Driver: one heartbeat tick. Sends a ping `pingInterval` after the
   * socket opened and after each ping since, once the last was answered;
   * drops the connection when a ping went unanswered (nothing at all
   * received) for `pongTimeout`. While reading waits for the application
   * to take messages, the peer counts as heard: its answer may be among
   * the bytes not read yet.
   *
   * @param now `performance.now()`: a clock that never steps back.
   * @param heartbeat The intervals, from {@linkcode heartbeatOf}.
   */
  heartbeat(now: number, { pingInterval, pongTimeout }: Heartbeat): void {
    if (this.#state !== "open" || this.#ws.state !== ConnectionState.OPEN) return;
    if (this.#pingOutstanding) {
      if (!this.#heard && !this.#paused) {
        if (pongTimeout > 0 && now - this.#pingSentAt >= pongTimeout) {
          this.#abort({ code: 1006, reason: "Ping timeout" });
        }
        return;
      }
      // Answered. The next is due from this one's sending: pings keep their
      // period, however late a tick noticed the answer.
      this.#pingOutstanding = false;
    }
    if (now - this.#pingSentAt >= pingInterval) {
      this.#heard = false;
      this.#pingOutstanding = true;
      this.#pingSentAt = now;
      // Not ping(): that waits for this very pong, and a peer that sends
      // but never answers would add a waiter every interval.
      this.#write(this.#ws.send(new Ping({ payload: EMPTY })));
    }
  }

  // Only once a request waits for the answer: before it arrives there is
  // nothing to accept (the socket accepts it itself when no onRequest
  // decides).
  #acceptIfPending(): void {
    if (this.#type === ConnectionType.SERVER && !this.#answered && this.#decision !== null) {
      this.accept();
    }
  }

  #closedRejection(): Promise<never> {
    const promise = Promise.reject(new ConnectionClosedError(this.#closeInfo ?? ABNORMAL));
    promise.catch(NOOP);
    return promise;
  }

  // ---- Output ----

  #write(bytes: Uint8Array): Promise<void> {
    if (this.#connClosed) return this.#closedRejection();
    if (this.#writeBatch !== null && bytes.buffer !== this.#lastShared && inSlab(bytes)) {
      if (this.#sharedQueued < MAX_SHARED_QUEUED) {
        this.#sharedQueued++;
        this.#lastShared = bytes.buffer;
      } else {
        const copy = bytes.slice();
        recycle(bytes); // unused now: its slab can be used again
        bytes = copy;
      }
    }
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    this.#batch ??= Promise.withResolvers<void>();
    const written = this.#batch.promise;
    if (!this.#writing) {
      this.#writing = true;
      if (bytes.length >= COALESCE) {
        // A frame that goes out alone anyway goes out at once. Waiting for
        // others to join it let other connections' messages pass through
        // the cache between its making and its write (and cost a hop):
        // 45.6 -> 41.7 µs of server CPU per message on 256 x 64 KiB,
        // 22.8 -> 21.1 on 16 x 64 KiB.
        this.#writeQueued();
      } else {
        // A microtask later, so that every frame made in this turn (the
        // answers to one read, a burst of sends) goes out in one write.
        queueMicrotask(this.#startFlush);
      }
    }
    return written;
  }

  // RFC 6455 §5.5.3 lets a pong answer only the latest of several pings.
  // While output flows every ping gets its pong (conformance suites expect
  // them all: Autobahn 2.10); once output backs up, a pong not yet written
  // is replaced instead: a peer that pinged and never read made us queue
  // a pong per ping, without limit.
  #answerPing(ping: Ping): void {
    if (this.#connClosed) return;
    const pong = this.#ws.send(ping.response());
    const at = this.#queuedPong;
    if (at < 0 || this.#outBytes < PONGS_BACKED_UP) {
      this.#queuedPong = this.#out.length;
      this.#write(pong);
      return;
    }
    const replaced = this.#out[at]!;
    this.#out[at] = pong;
    this.#outBytes += pong.length - replaced.length;
    recycle(replaced); // never written
  }

  // The flush is a chain of callbacks, not an async function: a call of
  // one and its await left 460 bytes of garbage per batch, a fifth of all
  // a small echo allocated (in memory, 256 sockets, one message each).
  readonly #startFlush = (): void => {
    this.#flushNext();
  };

  // Senders may leave the promise unawaited; a dead connection then shows
  // in `closed`, not as an unhandled rejection. Marked handled only now,
  // not when made: most batches succeed, and a handler on each cost every
  // send a promise and a reaction (bench/driver_bench.ts).
  #failBatch(batch: PromiseWithResolvers<void>, info: CloseInfo): void {
    batch.promise.catch(NOOP);
    batch.reject(new ConnectionClosedError(info));
  }

  async #settle(): Promise<void> {
    // While the application is still taking messages queued by the last
    // read (pipelined input), wait: its replies then join this write
    // instead of trickling out one syscall each. Stop as soon as the
    // reader is idle for a few ticks, waits on an empty queue, or enough
    // is queued; reads, and so new messages, only come in a later task.
    let taken = this.#inbox.taken;
    let idle = 0;
    while (idle < FLUSH_PATIENCE && this.#outBytes < COALESCE && !this.#connClosed) {
      // Caught up: the reader took everything and waits for more.
      if (this.#inbox.size === 0 && this.#inbox.waiting) break;
      await undefined;
      if (this.#inbox.taken === taken) idle++;
      else {
        taken = this.#inbox.taken;
        idle = 0;
      }
    }
  }

  // Write what is queued, or end the flush when nothing is.
  #flushNext(): void {
    if (this.#out.length === 0 || this.#connClosed) {
      this.#writing = false;
      if (this.#closeAfterFlush && this.#out.length === 0) this.#closeWriteAndDrain();
      return;
    }
    if (this.#inbox.size > 0) {
      this.#pump = this.#settle().then(this.#writeQueued);
      return;
    }
    this.#writeQueued();
  }

  readonly #writeQueued = (): void => {
    if (this.#connClosed) {
      this.#flushNext();
      return;
    }
    // Joined now, so that only what is written stays referenced.
    coalesce(this.#out, this.#writes);
    this.#writeBatch = this.#batch;
    this.#writeSize = this.#outBytes;
    this.#out = emptied(this.#out);
    this.#queuedPong = -1;
    this.#sharedQueued = 0;
    this.#lastShared = null;
    this.#batch = null;
    this.#writeAt = 0;
    this.#writeOffset = 0;
    this.#writeCurrent();
  };

  #writeCurrent(): void {
    const bytes = this.#writes[this.#writeAt]!;
    let written: Promise<number>;
    try {
      written = this.#conn.write(
        this.#writeOffset === 0 ? bytes : bytes.subarray(this.#writeOffset),
      );
    } catch (error) {
      written = Promise.reject(error);
    }
    // Never rejects: `closed` waits on it.
    this.#pump = written.then(this.#onWritten, this.#onWriteFailed);
  }

  readonly #onWritten = (count: number): void => {
    // closeTimeout bounds a peer that stopped reading, not one that reads
    // slowly the megabytes queued ahead of our Close frame.
    if (this.#state === "closing" && this.#timer !== undefined) this.#restartCloseTimer();
    const bytes = this.#writes[this.#writeAt]!;
    this.#writeOffset += count;
    if (this.#writeOffset < bytes.length) {
      this.#writeCurrent();
      return;
    }
    // Written: this frame was only ever ours (send() encodes a copy).
    recycle(bytes);
    this.#writeOffset = 0;
    if (++this.#writeAt < this.#writes.length) {
      this.#writeCurrent();
      return;
    }
    this.#outBytes = Math.max(0, this.#outBytes - this.#writeSize);
    this.#endWriteBatch().resolve();
    this.#flushNext();
  };

  readonly #onWriteFailed = (error: unknown): void => {
    if (!this.#connClosed) this.#ioError ??= error;
    const batch = this.#endWriteBatch();
    this.#writing = false;
    this.#failBatch(batch, this.#closeInfo ?? ABNORMAL);
    this.#abort(ABNORMAL);
  };

  // The batch in flight is written, or failed: no write is in flight now.
  #endWriteBatch(): PromiseWithResolvers<void> {
    const batch = this.#writeBatch!;
    this.#writeBatch = null;
    this.#writes = emptied(this.#writes);
    return batch;
  }

  // ---- Input ----

  async #read(): Promise<void> {
    let size = IDLE_READ;
    // The part of the reused read buffer no view handed on covers yet.
    let free: Uint8Array | null = null;
    // The same for the last buffer a frame's rest was read into, while
    // the frame is not whole.
    let frameRest: Uint8Array | null = null;
    let bulk = false; // whether the last read brought more than SMALL_READ
    let lastRead = 0; // the bytes the last read brought
    while (!this.#connClosed) {
      if (this.#inbox.full && this.#state === "open") {
        this.#paused = true;
        await Promise.race([this.#inbox.drained(), this.#closing.promise]);
        this.#paused = false;
      }
      if (this.#decision !== null) {
        await this.#decision.promise;
        this.#decision = null;
        if (this.#connClosed) break;
        // Frames that came in behind the request; after a refusal, only
        // reading on to the peer's end (see #closeWriteAndDrain).
        if (!this.#closeAfterFlush) this.#process();
        continue;
      }
      if (this.#connClosed) break;
      // The rest of a frame in progress arrives into a buffer of its size:
      // fewer reads, and no bytes of the next frame to split off. Only
      // while the peer sends in bulk: one trickling a byte at a time gets
      // the small reused buffer, not a fresh large one per read.
      const expected = this.#ws.bytesExpected;
      let target: Uint8Array;
      let held = 0;
      // Between frames, after a large binary message read in bulk: the next
      // is read as if it were one like it, into a buffer that holds it whole
      // behind its header, so that it takes one read, not two (a first read
      // into the small reused buffer, then its rest): 25.1 -> 21.1 µs of
      // server CPU per message on 16 x 64 KiB, 40.7 -> 37.5 on 256. The
      // buffer comes only from the pool of given-back ones, and all such
      // reads pending hold at most POOLED_READS: a connection that goes
      // quiet after a large message holds one in its pending read.
      let predicted: Uint8Array | null = null;
      if (
        this.#lastOwnedLength > size && bulk && expected === 0 && this.#ws.nextHeaderByte < 0 &&
        this.#parts.length === 0 && pooledReadBytes < POOLED_READS
      ) {
        // A byte more than the frame (see READ_SLACK), and no more than
        // READ_SLACK of the next frame to copy out.
        const room = MAX_HEADER_LENGTH + this.#lastOwnedLength;
        const spare = takeSpare(room + 1);
        if (spare !== null) {
          predicted = new Uint8Array(spare, 0, Math.min(spare.byteLength, room + READ_SLACK));
        }
      }
      if (predicted !== null) {
        target = predicted;
      } else if (
        frameRest !== null && expected > 0 &&
        (frameRest.buffer === this.#ownBuffer
          ? frameRest.length >= expected
          : expected > size && bulk && frameRest.length >= MIN_TAIL)
      ) {
        // The rest of a frame goes behind what came of it: always into a
        // buffer that is its message's own (sized for it), and otherwise
        // for a peer sending a large frame in pieces. A fresh buffer per
        // piece, each pinned by its piece's view until the message is
        // whole, held 32 times a 4 MiB frame sent in 2 KiB pieces (and
        // re-copied a message read so far).
        target = frameRest;
      } else if (expected > size && bulk) {
        // The binary message so far moves to the front of a buffer of its
        // own and the rest is read in behind it: the whole message then is
        // one view, never joined, and may be given back for reuse
        // (release()). The buffer's spare room also fits the header of a
        // frame that echoes the message: buffers a few bytes too small for
        // that would serve reads only.
        // Not with extensions: their output is not the wire's.
        const plain = this.#ws.extensions.length === 0;
        held = plain ? this.#parts.binaryLength : 0;
        const message = this.#messageBuffer(held, expected);
        const text = plain && message === null ? this.#textFrameBuffer(expected) : null;
        if (message !== null) {
          target = message;
          this.#parts.moveTo(target);
        } else if (text !== null) {
          // The rest of a text frame: into a pooled buffer that holds it
          // alone, given back once it is decoded (see #process), where a
          // fresh one per message was external memory for V8 to collect.
          // The next read is sized for a frame like it: at most the last
          // read and this rest.
          held = 0;
          target = text;
          this.#lastOwnedLength = lastRead + expected;
        } else {
          held = 0;
          target = new Uint8Array(Math.min(expected + READ_SLACK, Math.max(size, FRAME_READ)));
        }
      } else {
        target = free ??= new Uint8Array(size);
      }
      const reused = target === free;
      const owned = this.#ownBuffer !== null && target.buffer === this.#ownBuffer;
      const into = held > 0 ? target.subarray(held) : target;
      frameRest = null;
      const pooled = predicted !== null || (owned && this.#ownFromPool)
        ? target.buffer.byteLength
        : 0;
      pooledReadBytes += pooled;
      let n: number | null;
      try {
        n = await this.#conn.read(into);
      } catch (error) {
        if (!this.#connClosed) this.#ioError ??= error;
        n = null;
      }
      pooledReadBytes -= pooled;
      if (this.#connClosed) break;
      this.#heard = true;
      let data: Uint8Array | null = null;
      // The first bytes of the next frame, read with the rest of one whose
      // buffer is its message's: copied out, so that the buffer holds that
      // message alone.
      let next: Uint8Array | null = null;
      bulk = n !== null && n > SMALL_READ;
      lastRead = n ?? 0;
      if (n !== null && predicted !== null) {
        const frame = this.#adoptFrame(into, n);
        if (frame < 0) {
          // Not a message like the last: read the usual way from now on,
          // and what came copied when it is small beside the buffer.
          this.#lastOwnedLength = 0;
          if (2 * n < into.length) {
            data = allocateKept(n);
            copyBytes(data, 0, into, 0, n);
            recycle(into);
          } else data = into.subarray(0, n);
        } else if (n > frame) {
          data = into.subarray(0, frame);
          next = allocateKept(n - frame);
          copyBytes(next, 0, into, frame, n - frame);
        } else {
          data = into.subarray(0, n);
          if (n < frame) frameRest = into.subarray(n);
        }
      } else if (n !== null) {
        if (owned && n > expected) {
          data = into.subarray(0, expected);
          next = allocateKept(n - expected);
          copyBytes(next, 0, into, expected, n - expected);
        } else if (owned || held > 0) {
          data = into.subarray(0, n);
        } else if (n <= SMALL_READ) {
          // The engine keeps what it is given: copy, so that the reused
          // buffer is reused and a few bytes never pin a large one. Into a
          // slab, because a fresh array costs a buffer allocation, in Deno
          // even for a few bytes (~1.3 µs here, a tenth of a small echo).
          data = allocateKept(n);
          copyBytes(data, 0, into, 0, n);
        } else {
          data = into.subarray(0, n);
          if (reused) {
            free = into.subarray(n);
            if (free.length < Math.max(MIN_TAIL, n)) free = null;
          }
        }
        // Only a bulk read keeps the frame path (a smaller one was copied),
        // and any read into the message's own buffer while the frame is not
        // whole.
        if (!reused && (owned ? n < expected : n > SMALL_READ)) frameRest = into.subarray(n);
      }
      if (n !== null && n > SMALL_READ && longTextHandedOut) {
        textTurnsWaited++;
        await new Promise<void>((resolve) => waitingForTextTurn.push(resolve));
        if (this.#connClosed) {
          nextTextTurn();
          break;
        }
        try {
          this.#receive(data, next);
        } finally {
          nextTextTurn();
        }
      } else this.#receive(data, next);
      if (data === null) {
        // What is queued (the echo of a message, the answer to a close read
        // with the FIN) goes out before the end, within closeTimeout: a
        // FIN ends only the peer's half.
        const pending = this.#batch ?? this.#writeBatch;
        if (pending !== null && !this.#connClosed) {
          this.#armCloseTimer();
          await pending.promise.catch(NOOP);
        }
        this.#abort(ABNORMAL);
        break;
      }
      if (reused && n !== null) {
        // A full read means more is waiting: grow. When what fills it is one
        // large frame, only to KEEP_READ: its rest comes into a buffer of
        // its own size once reads are bulk, and growing further for it made
        // every 64 KiB message climb 8, 16, ... 128 KiB and start over.
        const cap = this.#ws.bytesExpected > size ? KEEP_READ : MAX_READ;
        if (n === size && size < cap) {
          size *= 2;
          free = null;
        } else if (
          free === null && n > SMALL_READ && 2 * n + READ_SLACK > size && size < FRAME_READ &&
          size < cap
        ) {
          // A buffer too short for two bursts like this one: the next holds
          // two. Each fresh buffer is an allocation, zeroed, and external
          // bytes for V8 to collect (one per burst cost ~15% more CPU per
          // message, 16 x 1 KiB pipelined 16 deep), but the buffer is also
          // what a connection that goes quiet after its bursts holds in its
          // pending read until a small read gives it back: four bursts to a
          // buffer saved no more CPU and held twice the memory. Never
          // smaller: a larger buffer came from reads that filled it.
          size = Math.min(2 * n + READ_SLACK, FRAME_READ);
        } else if (n <= SMALL_READ && size > KEEP_READ) {
          // The burst is over: give the large buffer back.
          size = KEEP_READ;
          free = null;
        }
      }
    }
  }

  // When the frame that starts `bytes` (`n` of them read) is a whole
  // message (FIN, text or binary, no RSV bits) that fits `bytes` and fills
  // at least half of it (a small message must not pin a large buffer),
  // makes `bytes` its buffer of its own (see #onData; text gives it back
  // once decoded, see #process) and returns the frame's length, header
  // included; -1 otherwise. It only finds where to cut the read: the
  // engine checks the frame.
  #adoptFrame(bytes: Uint8Array, n: number): number {
    if (n < 2 || (bytes[0] !== 0x82 && bytes[0] !== 0x81)) return -1;
    const second = bytes[1]!;
    const code = second & 0x7f;
    const header = (code === 126 ? 4 : code === 127 ? 10 : 2) + (second & 0x80 ? 4 : 0);
    if (n < header) return -1;
    let payload = code;
    if (code === 126) payload = (bytes[2]! << 8) | bytes[3]!;
    else if (code === 127) {
      if (bytes[2]! | bytes[3]! | bytes[4]! | bytes[5]!) return -1;
      payload = ((bytes[6]! * 256 + bytes[7]!) * 256 + bytes[8]!) * 256 + bytes[9]!;
    }
    const frame = header + payload;
    if (frame > bytes.length || 2 * frame < bytes.length) return -1;
    this.#ownBuffer = bytes.buffer;
    this.#ownOffset = bytes.byteOffset + header;
    this.#ownLength = payload;
    this.#ownFromPool = true;
    this.#lastOwnedLength = payload;
    return frame;
  }

  // A buffer of its own for the binary message in progress, `held` bytes
  // so far (0: none, or text) and `expected` to come in its current frame,
  // with READ_SLACK behind; null when there is none to have. Up to
  // SMALL_READ it is a plain array (smaller ones from allocate() are cut
  // from a slab that frames share, so it is then not the message's).
  #messageBuffer(held: number, expected: number): Uint8Array | null {
    if (held === 0) return null;
    const whole = held + expected;
    if (whole <= SMALL_READ) return new Uint8Array(whole + READ_SLACK);
    const buffer = this.#ownReadBuffer(whole);
    if (buffer === null) return null;
    this.#ownOffset = 0;
    this.#ownLength = whole;
    return buffer;
  }

  // A buffer of its own for the rest of the text frame in progress
  // (`expected` bytes); null for anything else.
  #textFrameBuffer(expected: number): Uint8Array | null {
    return expected > SMALL_READ && this.#parts.holdsText ? this.#ownReadBuffer(expected) : null;
  }

  // The buffer `length` bytes of a message are read into, with READ_SLACK
  // behind, made its own (#ownBuffer); null when there is none to have.
  // Up to FRAME_READ it is made (from the pool of allocate()). Past it, it
  // is only taken from the pool, never made, and while reads into pooled
  // buffers hold less than POOLED_READS: a peer that announces a large
  // frame and stalls must not make us allocate more than FRAME_READ. A
  // 256 KiB echo read in 64 KiB pieces and joined cost 2-3 times native's
  // CPU per message.
  #ownReadBuffer(length: number): Uint8Array | null {
    let buffer: Uint8Array;
    if (length <= FRAME_READ) buffer = allocate(length + READ_SLACK);
    else {
      // A byte of slack is enough to take a spare: the frame that echoed a
      // message like this one is only a few bytes longer than it.
      const spare = pooledReadBytes < POOLED_READS ? takeSpare(length + 1) : null;
      if (spare === null) return null;
      buffer = new Uint8Array(spare, 0, Math.min(spare.byteLength, length + READ_SLACK));
    }
    this.#ownBuffer = buffer.buffer;
    this.#ownFromPool = length > FRAME_READ;
    return buffer;
  }

  // `more` follows `data` (both before any event is taken, so that the
  // look past a message sees the frame after it: see #endsNext).
  #receive(data: Uint8Array | null, more: Uint8Array | null = null): void {
    // At the end of the stream the events held back are taken first, while
    // the engine can still answer them: the close found among them, not
    // the end, is how the connection ended.
    if (data === null && this.#heldForReplies !== undefined) {
      this.#releaseHeld();
      this.#process();
    }
    const state = this.#ws.state;
    // After the closing handshake or a refusal we only wait for the end.
    if (state === ConnectionState.CLOSED && data !== null) return;
    try {
      this.#ws.receiveData(data);
      if (more !== null) this.#ws.receiveData(more);
    } catch (error) {
      this.#engineError(error);
      return;
    }
    this.#process();
  }

  #process(): void {
    if (this.#heldForReplies !== undefined) return;
    try {
      // Whether a whole message went to the application in this call.
      let delivered = false;
      let event;
      while ((event = this.#ws.nextEvent()) !== null) {
        if (event instanceof TextMessage || event instanceof BytesMessage) {
          // A text frame's bytes are garbage once decoded: the buffer that
          // held them alone serves the next read or frame.
          if (event.frameFinished && this.#ownBuffer !== null && typeof event.data === "string") {
            recycle(new Uint8Array(this.#ownBuffer, 0, 0));
            this.#ownBuffer = null;
          }
          this.#onData(event.data, event.messageFinished);
          delivered ||= event.messageFinished;
        } else if (event instanceof Ping) {
          if (this.#ws.state === ConnectionState.OPEN) this.#answerPing(event);
        } else if (event instanceof Pong) this.#onPong(event.payload);
        else if (event instanceof CloseConnection) this.#onClose(event);
        else if (event instanceof AcceptConnection) this.#onAccept(event);
        else if (event instanceof RejectConnection) this.#onRefusal(event);
        else if (event instanceof RejectData) this.#onRefusalData(event);
        else this.#onRequestEvent(event);
        if (delivered && this.#endsNext()) {
          this.#holdForReplies();
          return;
        }
      }
    } catch (error) {
      this.#engineError(error);
    }
  }

  // Whether the next event, already buffered, ends the connection: the
  // peer's close, or a failure (a reserved opcode, an RSV bit no extension
  // claimed, invalid UTF-8 in a text message). The engine decodes it now
  // and yields it next; its state moves only then.
  #endsNext(): boolean {
    return this.#ws.peekEvent() instanceof CloseConnection;
  }

  // The application answers a message in the microtasks after it gets it,
  // while an ending found in the same read would be answered at once, and
  // its Close frame would refuse those answers. The ending waits a task,
  // so that answers go out first, as from a loop over the engine's events
  // (Autobahn 3.2, 4.x and 5.15 expect the echo before the 1002).
  #holdForReplies(): void {
    this.#heldForReplies = setTimeout(() => {
      this.#heldForReplies = undefined;
      if (!this.#connClosed) this.#process();
    }, 0);
  }

  #releaseHeld(): void {
    clearTimeout(this.#heldForReplies);
    this.#heldForReplies = undefined;
  }

  #onData(data: MessageData, finished: boolean): void {
    // Once we sent our close, what the peer still sends may be dropped
    // (RFC 6455 §1.4); keep it only while the reader has room. A message
    // is dropped whole: its pieces after a gap are no message.
    if (this.#droppingMessage || (this.#state !== "open" && this.#inbox.full)) {
      this.#parts.clear();
      this.#droppingMessage = !finished;
      return;
    }
    if (!finished) {
      this.#parts.push(data);
      return;
    }
    const message = this.#parts.end(data);
    if (
      typeof message !== "string" && message.buffer === this.#ownBuffer &&
      message.byteOffset === this.#ownOffset && message.length === this.#ownLength
    ) {
      releasable.add(message);
      this.#lastOwnedLength = message.length;
    }
    this.#ownBuffer = null;
    if (typeof message === "string" && message.length >= LONG_TEXT && this.#inbox.waiting) {
      longTextHandedOut = true;
      this.#inbox.push(message);
      queueMicrotask(textTurnOver);
      return;
    }
    this.#inbox.push(message);
  }

  #onPong(payload: Uint8Array): void {
    const at = this.#pings.findIndex((ping) => equalBytes(ping.payload, payload));
    if (at < 0) return; // unsolicited, or not ours
    // A pong answers the ping it echoes and, implicitly, every earlier one.
    for (const ping of this.#pings.splice(0, at + 1)) ping.resolve();
  }

  #onClose(event: CloseConnection): void {
    const info = { code: event.code, reason: event.reason };
    if (this.#ws.state === ConnectionState.REMOTE_CLOSING) {
      // The peer's close, or a protocol error the engine turned into one:
      // either way the answer is the event's response (RFC 6455 §5.5.1).
      this.#write(this.#ws.send(event.response()));
    }
    this.#closeInfo ??= info;
    this.#state = "closing";
    this.#inbox.end(this.#closeInfo);
    this.#rejectPings();
    if (event.code === 1006) return; // end of stream: the read loop ends it
    if (this.#type === ConnectionType.SERVER) {
      // RFC 6455 §7.1.1: the server closes the TCP connection first.
      this.#closeAfterFlush = true;
      if (!this.#writing && this.#out.length === 0) this.#closeWriteAndDrain();
      // A peer that stopped reading would hold the flush, and the socket, forever.
      else this.#armCloseTimer();
    } else {
      // The client waits for the server to close TCP, but not forever.
      this.#armCloseTimer();
    }
  }

  #onRequestEvent(request: Request): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#decision = Promise.withResolvers<void>();
    const onRequest = this.#onRequest;
    if (onRequest === undefined) {
      this.accept();
      return;
    }
    queueMicrotask(() => onRequest(this, request));
  }

  #onAccept(event: AcceptConnection): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#subprotocol = event.subprotocol;
    this.#extensions = this.#ws.extensions.map((extension) => extension.name);
    this.#state = "open";
    this.#pingSentAt = performance.now(); // the first ping is due pingInterval after opening
    this.#opened.resolve({ ok: true });
  }

  #onRefusal(event: RejectConnection): void {
    this.#refusal = { status: event.statusCode, headers: event.headers, body: [], size: 0 };
    if (!event.hasBody) this.#refused();
  }

  #onRefusalData(event: RejectData): void {
    const refusal = this.#refusal;
    if (refusal === null) return;
    const piece = event.data.subarray(0, MAX_REJECT_BODY - refusal.size);
    refusal.body.push(piece.slice());
    refusal.size += piece.length;
    // What is past MAX_REJECT_BODY is not kept, so it need not be read: a
    // server streaming an endless body would otherwise hold us to the end.
    if (event.bodyFinished || refusal.size >= MAX_REJECT_BODY) this.#refused();
  }

  #refused(): void {
    this.#opened.resolve(this.#failedOpen("", undefined));
    this.#abort(ABNORMAL);
  }

  // Client: why the handshake failed; a refusal, as far as it came, says it.
  #failedOpen(message: string, cause: unknown): OpenResult {
    const refusal = this.#refusal;
    return {
      ok: false,
      message: refusal === null
        ? message
        : `The server refused the WebSocket handshake with HTTP ${refusal.status}`,
      status: refusal?.status ?? null,
      headers: refusal?.headers ?? [],
      body: refusal === null ? new Uint8Array(0) : concatBytes(refusal.body),
      ...(cause === undefined ? {} : { cause }),
    };
  }

  #engineError(error: unknown): void {
    if (error instanceof RemoteProtocolError && error.eventHint instanceof RejectConnection) {
      // A bad handshake request: answer with the status it carries (400,
      // 405, 426, 431, ...) and close.
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#answered = true;
      this.#state = "closing";
      try {
        this.#write(this.#ws.send(error.eventHint));
        this.#closeAfterFlush = true;
        this.#armCloseTimer();
        return;
      } catch {
        // fall through to dropping the connection
      }
    }
    if (this.#type === ConnectionType.CLIENT && this.#state === "connecting") {
      this.#opened.resolve(
        this.#failedOpen(error instanceof Error ? error.message : String(error), error),
      );
    }
    this.#abort({
      code: 1006,
      reason: error instanceof Error ? error.message.slice(0, 123) : "",
    });
  }

  // ---- Ending ----

  #armCloseTimer(): void {
    if (this.#timer !== undefined || this.#connClosed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#abort(ABNORMAL);
    }, this.#limits.closeTimeout);
  }

  #restartCloseTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armCloseTimer();
  }

  #rejectPings(): void {
    const error = new ConnectionClosedError(this.#closeInfo ?? ABNORMAL);
    for (const ping of this.#pings.splice(0)) ping.reject(error);
  }

  #abort(info: CloseInfo): void {
    this.#closeInfo ??= info;
    this.#closeConn();
  }

  // RFC 6455 §7.1.1: the server ends TCP first. It half-closes, and reads
  // (and drops) what the peer still sends until the peer's end, within
  // closeTimeout: a socket closed with bytes unread makes the kernel send
  // a reset, which can overtake our Close frame on its way to the peer.
  #closeWriteAndDrain(): void {
    if (this.#connClosed || this.#draining) return;
    this.#draining = true;
    this.#armCloseTimer();
    this.#conn.closeWrite().catch(() => this.#closeConn());
  }

  #closeConn(): void {
    if (this.#connClosed) return;
    this.#connClosed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#releaseHeld();
    const info = this.#closeInfo ??= ABNORMAL;
    this.#state = "closed";
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer's reset
    }
    this.#parts.clear(); // a message that will never be whole
    this.#inbox.end(info);
    this.#rejectPings();
    if (this.#batch !== null) this.#failBatch(this.#batch, info);
    this.#batch = null;
    this.#out = [];
    this.#queuedPong = -1;
    this.#outBytes = 0;
    this.#decision?.resolve();
    if (this.#type === ConnectionType.CLIENT) {
      this.#opened.resolve(this.#failedOpen(
        info.reason === ""
          ? "The connection closed during the WebSocket handshake"
          : `The WebSocket handshake failed: ${info.reason}`,
        this.#ioError,
      ));
    }
    // `closed` waits for the read loop and the write in flight, so that no
    // operation is left pending on the closed resource.
    const closed = (): void => {
      this.#closed.resolve(info);
      this.#onClosed?.(this);
    };
    Promise.all([this.#readLoop, this.#pump]).then(closed, closed);
  }
}

// The writes for a queue of frames, appended to `writes`: neighbours joined
// up to COALESCE bytes, a larger frame alone and uncopied.
function coalesce(chunks: readonly Uint8Array[], writes: Uint8Array[]): void {
  if (chunks.length === 1) {
    writes.push(chunks[0]!);
    return;
  }
  let group: Uint8Array[] = [];
  let groupSize = 0;
  for (const chunk of chunks) {
    if (groupSize > 0 && groupSize + chunk.length > COALESCE) {
      writes.push(joinFrames(group));
      group = [];
      groupSize = 0;
    }
    group.push(chunk);
    groupSize += chunk.length;
  }
  if (groupSize > 0) writes.push(joinFrames(group));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function counterPayload(count: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, count >>> 0);
  return payload;
}
