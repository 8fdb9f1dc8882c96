/**
 * The high-level socket: whole messages in and out, pings, the closing
 * handshake and a `closed` promise, over one of three transports. `serve()`
 * and `connect()` run a `WSConnection` on a `Deno.Conn`
 * (`raw_socket.ts`); the `Deno.serve` helper wraps Deno's native
 * `WebSocket` (`deno_serve.ts`). The application sees one interface,
 * {@linkcode Socket}, whichever it is; this file holds it and what both
 * implementations share besides their inbox (`inbox.ts`).
 *
 * @module
 */

import type { Headers, Request } from "./events.ts";
import { checkCloseTypes, wrongType } from "./errors.ts";
import { checkDelay } from "./limits.ts";

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
 * `closed` reports it (under `Deno.serve`, Deno's framing decides, and
 * often just drops the connection: 1006); a `send()` or `ping()` left
 * unawaited on a connection that dies rejects quietly.
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
   * {@linkcode ConnectionClosedError} when the connection is closing or over;
   * throws a `TypeError` at once for `data` that is neither a `string` nor
   * a `Uint8Array`, or whose buffer was transferred (nothing is sent). A
   * view of shared memory is sent as a copy. Under `Deno.serve` (`upgrade()`)
   * Deno's `WebSocket` does not tell when bytes are written: there it
   * resolves at once while less than 1 MiB is buffered, and otherwise once
   * the buffer drains below that.
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
   * (only 1000-1003, 1007-1014 and 3000-4999 may) or a reason over 123
   * bytes of UTF-8. Messages the peer sent before it saw the close are
   * still delivered while fewer than 1 MiB wait to be taken; from the
   * first that finds no room, they are dropped (RFC 6455 §1.4), so the
   * peer's close is read however slow the reader. `Deno.serve` delivers
   * them all.
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

/**
 * Check the handler `serve()` or `upgrade()` was given, before anything
 * listens or answers: a server whose handler is not a function would fail
 * every connection it accepts.
 *
 * @param handler What the caller gave.
 * @param caller The function it was given to.
 * @throws {TypeError} When it is not a function.
 */
export function checkHandler(handler: unknown, caller: string): asserts handler is Handler {
  if (typeof handler !== "function") {
    throw wrongType(`${caller} takes a handler function`, handler);
  }
}

/** How a connection ended when it ended without a close frame. */
export const ABNORMAL: CloseInfo = Object.freeze({ code: 1006, reason: "" });

// RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
const MAX_REASON_BYTES = 123;

/**
 * Check a close code and reason an application wants to send.
 *
 * @param code The close code.
 * @param reason The close reason.
 * @throws {RangeError} For codes that may not be sent (RFC 6455 §7.4) or a reason over 123 bytes.
 * @throws {TypeError} For a code that is not a number or a reason that is not a string.
 */
export function checkClose(code: number, reason: string): void {
  checkCloseTypes(code, reason);
  const sendable = code === 1000 || (code >= 1001 && code <= 1003) ||
    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
  if (!Number.isInteger(code) || !sendable) {
    throw new RangeError(
      `Close code ${code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999`,
    );
  }
  if (new TextEncoder().encode(reason).length > MAX_REASON_BYTES) {
    throw new RangeError("A close reason is at most 123 bytes of UTF-8");
  }
}

/**
 * How a socket ends once its handler is over, if it is still open: 1000,
 * or 1011 with the name of what the handler threw, cut at a character's
 * edge to fit a close frame (a longer reason could not be sent, and the
 * socket would stay open).
 *
 * @param error What the handler threw, if it threw.
 * @param threw Whether it threw.
 * @returns The close code and reason.
 */
export function closeAfterHandler(error: unknown, threw: boolean): CloseInfo {
  if (!threw) return { code: 1000, reason: "" };
  // A name that is not a string could not be sent, and the socket stayed open.
  const name = error instanceof Error && typeof error.name === "string"
    ? error.name
    : "Internal error";
  const bytes = new TextEncoder().encode(name);
  if (bytes.length <= MAX_REASON_BYTES) return { code: 1011, reason: name };
  let end = MAX_REASON_BYTES;
  while ((bytes[end]! & 0xc0) === 0x80) end--; // back to the start of a character
  return { code: 1011, reason: new TextDecoder().decode(bytes.subarray(0, end)) };
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
  const pingInterval = checkDelay("pingInterval", options.pingInterval, 0);
  const pongTimeout = checkDelay("pongTimeout", options.pongTimeout, 20_000);
  if (pingInterval === 0) return null;
  // A ping, or the end of a wait, is late by at most a tick: a quarter of
  // the shorter, one timer for all of a server's sockets.
  const shorter = pongTimeout === 0 ? pingInterval : Math.min(pingInterval, pongTimeout);
  const tick = Math.max(1, Math.floor(shorter / 4));
  return { pingInterval, pongTimeout, tick };
}
