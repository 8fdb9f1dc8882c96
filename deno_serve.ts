/**
 * Run a {@linkcode Handler} under `Deno.serve`: the request is checked with
 * this module's handshake rules, and the accepted connection is Deno's
 * native `WebSocket` behind the same {@linkcode Socket} interface that
 * `serve()` gives, so one handler runs on both transports.
 *
 * `Deno.serve` cannot hand the raw bytes of a connection over after a 101:
 * on this path the framing is Deno's own implementation, which limits what
 * the socket can do (see {@linkcode upgrade}).
 *
 * @module
 */

import { AcceptConnection, RejectConnection } from "./events.ts";
import type { Request as WsRequest } from "./events.ts";
import { checkRejection, checkUpgradeRequest, upgradeOptions } from "./handshake.ts";
import { checkMessageData, LocalProtocolError } from "./errors.ts";
import { checkDelay, DEFAULT_LIMITS, MAX_DELAY } from "./limits.ts";
import {
  type AcceptOptions,
  checkClose,
  checkHandler,
  closeAfterHandler,
  type CloseInfo,
  ConnectionClosedError,
  type Handler,
  logError,
  type MessageData,
  type ReceiveOptions,
  type RejectOptions,
  runHandler,
  type ServerSocket,
  type SocketState,
} from "./socket.ts";
import { Inbox, iterateInbox } from "./inbox.ts";

/** Options of {@linkcode upgrade}. */
export interface UpgradeOptions {
  /** What `Deno.serve` passed as the handler's second argument; gives `remoteAddr`. */
  info?: Deno.ServeHandlerInfo;
  /**
   * `Deno.upgradeWebSocket`'s `idleTimeout`, in seconds: on Deno 2.9.6, after
   * half of it without a word from the client Deno pings it, and without a
   * pong in the other half closes the connection (1001 "No response from
   * ping frame."). Default 30; 0 disables it.
   */
  idleTimeout?: number;
  /**
   * Milliseconds for the upgraded connection to open once the handler
   * accepts: 10 s unless given, 0 waits forever. Deno tells nothing of a
   * client that leaves during the upgrade; at this limit `closed` gives
   * 1006 with the reason `"Handshake timeout"`.
   */
  handshakeTimeout?: number;
  /** Milliseconds to wait for the client's close after ours: 5 s unless given, 0 does not wait. */
  closeTimeout?: number;
  /**
   * Bytes of messages waiting for the handler (received, not yet taken)
   * past which the next message ends the connection: it is dropped, and
   * the socket closes with 1013 "Too many messages waiting". Deno's
   * `WebSocket` cannot stop reading, as `serve()` does once 1 MiB waits,
   * so without a bound a peer could fill memory while the handler is
   * slow. 16 MiB unless given; `Infinity` never closes. A message arriving
   * at an empty queue is always taken, however large.
   */
  maxQueued?: number;
  /**
   * Called with errors the handler threw, but not a `ConnectionClosedError`
   * (the peer went away); what it throws is ignored. Default: the error
   * printed as text, as for `serve()`.
   */
  onError?: (error: unknown) => void;
}

/**
 * Answer a `Deno.serve` request with a WebSocket run by `handler`, the same
 * handler `serve()` takes. The request is checked first (the refusal
 * response is returned without calling the handler); then the returned
 * promise resolves with the handler's `reject()` response, or the 101 once
 * the handler accepts (explicitly, by using the socket, or by returning).
 *
 * Deno's native `WebSocket` does the framing on this path, which limits
 * the socket:
 * - no permessage-deflate, and no `ping()` (Deno answers pings, and
 *   `idleTimeout` sends its own);
 * - `send()` resolves at once until 1 MiB is buffered: the native socket
 *   does not tell when bytes are written;
 * - a peer that leaves our close unanswered past `closeTimeout` keeps its
 *   connection until it closes or fails `idleTimeout`'s ping: the native
 *   socket cannot drop its transport;
 * - inbound messages are not paced by the reader: it cannot pause, so a
 *   handler that falls behind by `maxQueued` (16 MiB) loses its connection
 *   (1013);
 * - a `close()` while the peer is still sending can lose its close frame:
 *   Deno may drop the connection at the next data frame (1006 on both
 *   ends);
 * - frame and message size limits are Deno's own (just under 64 MiB: a
 *   64 MiB message is refused): a message over them ends the connection,
 *   and `closed` gives 1006, not 1009;
 * - so are the answers to protocol errors: invalid UTF-8, say, ends the
 *   connection without a close frame, and `closed` gives 1006, not 1007;
 * - when `Deno.serve` itself shuts down, Deno closes the socket (1001 to
 *   the peer) and `closed` gives 1005;
 * - the HTTP version is not visible through Fetch: an HTTP/1.0 request
 *   that `serve()` answers with 505 is upgraded by Deno;
 * - a client that leaves during the upgrade is never reported by Deno:
 *   `handshakeTimeout` then ends the socket with 1006;
 * - Deno can report 1005 for a close it started although the peer
 *   answered with a code: our own close stands in for a 1005 then.
 *
 * @param request The request `Deno.serve` passed to its handler.
 * @param handler The WebSocket handler.
 * @param options `remoteAddr` source, idle timeout, handshake and close
 *   timeouts, the bound on messages waiting, error hook.
 * @returns The response for `Deno.serve` to send.
 * @throws {RangeError} When a timeout is not an integer from 0 to 2^31 - 1, or
 *   `maxQueued` not a number of bytes.
 *
 * @example An echo endpoint on Deno.serve
 * ```ts
 * import { upgrade } from "./deno_serve.ts";
 * import type { Handler } from "./socket.ts";
 * const echo: Handler = async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * };
 * const server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   (request, info) => upgrade(request, echo, { info }),
 * );
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * const reply = await new Promise<string>((resolve) => {
 *   client.onopen = () => client.send("hello");
 *   client.onmessage = (event) => resolve(event.data);
 * });
 * if (reply !== "hello") throw new Error("Example failed");
 * const closed = new Promise((resolve) => client.onclose = resolve);
 * client.close();
 * await closed;
 * await server.shutdown();
 * ```
 */
export function upgrade(
  request: globalThis.Request,
  handler: Handler,
  options: UpgradeOptions = {},
): Promise<Response> {
  checkHandler(handler, "upgrade()");
  if (options.handshakeTimeout !== undefined) {
    checkDelay("handshakeTimeout", options.handshakeTimeout);
  }
  if (options.closeTimeout !== undefined) checkDelay("closeTimeout", options.closeTimeout);
  const idleTimeout = options.idleTimeout;
  if (
    idleTimeout !== undefined &&
    !(Number.isInteger(idleTimeout) && idleTimeout >= 0 && idleTimeout <= MAX_DELAY / 1000)
  ) {
    throw new RangeError(
      `idleTimeout must be an integer number of seconds, got ${String(idleTimeout)}`,
    );
  }
  const maxQueued = options.maxQueued;
  if (maxQueued !== undefined && !(maxQueued >= 0)) {
    throw new RangeError(`maxQueued must be a number of bytes, got ${maxQueued}`);
  }
  const check = checkUpgradeRequest(request);
  if (!check.ok) return Promise.resolve(check.response);
  const socket = new NativeSocket(request, check.request, options);
  const onError = options.onError ?? logError;
  queueMicrotask(() => void runHandler(handler, socket, check.request, onError));
  return socket.response;
}

// Past this many bytes buffered in the native socket, send() waits.
const HIGH_WATER = 1 << 20;
const DEFAULT_MAX_QUEUED = 16 * 1024 * 1024;
// How often a waiting sender looks at bufferedAmount: the native socket
// tells nobody when it drains.
const DRAIN_POLL_MS = 2;
const NOOP = (): void => {};
const ENCODER = new TextEncoder();

class NativeSocket implements ServerSocket {
  readonly #request: globalThis.Request;
  readonly #wsRequest: WsRequest;
  readonly #options: UpgradeOptions;
  readonly #remoteAddr: Deno.Addr | null;
  readonly #response = Promise.withResolvers<Response>();
  readonly #inbox = new Inbox();
  readonly #closed = Promise.withResolvers<CloseInfo>();
  #native: WebSocket | null = null;
  #answered = false;
  #state: SocketState = "connecting";
  #subprotocol: string | null = null;
  // Sends made before the native socket opened.
  #early: { data: MessageData; done: PromiseWithResolvers<void> }[] = [];
  #earlyBytes = 0;
  #drainWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #drainTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #openTimer: ReturnType<typeof setTimeout> | undefined;
  #closeInfo: CloseInfo | null = null;
  #sentClose: CloseInfo | null = null;
  // Closing because the handler fell behind (maxQueued): later messages are dropped.
  #overloaded = false;

  constructor(request: globalThis.Request, wsRequest: WsRequest, options: UpgradeOptions) {
    this.#request = request;
    this.#wsRequest = wsRequest;
    this.#options = options;
    // Read now: Deno's getter throws ("Request closed") once the 101 is out.
    let remoteAddr: Deno.Addr | null = null;
    try {
      remoteAddr = options.info?.remoteAddr ?? null;
    } catch {
      // the request was over already
    }
    this.#remoteAddr = remoteAddr;
  }

  get response(): Promise<Response> {
    return this.#response.promise;
  }

  get subprotocol(): string | null {
    return this.#subprotocol;
  }

  get extensions(): readonly string[] {
    return [];
  }

  get remoteAddr(): Deno.Addr | null {
    return this.#remoteAddr;
  }

  get state(): SocketState {
    return this.#state;
  }

  get bufferedAmount(): number {
    return this.#earlyBytes + (this.#native?.bufferedAmount ?? 0);
  }

  get closed(): Promise<CloseInfo> {
    return this.#closed.promise;
  }

  accept(options: AcceptOptions = {}): void {
    if (this.#answered) throw new LocalProtocolError("The handshake was already answered");
    const accept = new AcceptConnection({
      subprotocol: options.subprotocol ?? null,
      extraHeaders: options.extraHeaders ?? [],
    });
    // Checked before the upgrade, which cannot be taken back: the checks
    // include Fetch's own (token names; values of bytes, no CR, LF or NUL).
    const { protocol } = upgradeOptions(this.#wsRequest, accept);
    const idleTimeout = this.#options.idleTimeout;
    const { socket, response } = Deno.upgradeWebSocket(this.#request, {
      ...(protocol === undefined ? {} : { protocol }),
      ...(idleTimeout === undefined ? {} : { idleTimeout }),
    });
    this.#answered = true;
    this.#subprotocol = accept.subprotocol;
    for (const [name, value] of accept.extraHeaders) response.headers.append(name, value);
    this.#native = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      clearTimeout(this.#openTimer);
      this.#earlyBytes = 0;
      for (const { data, done } of this.#early.splice(0)) {
        socket.send(data);
        done.resolve();
      }
      // A close() made before the socket opened goes out now, after the
      // sends made before it: on a CONNECTING socket it would do nothing.
      // So does one whose wait already ended (closeTimeout 0), and the
      // socket given up on at handshakeTimeout is closed.
      const close = this.#sentClose ??
        (this.#state === "closed" ? { code: 1000, reason: "" } : null);
      if (close === null) this.#state = "open";
      else socket.close(close.code, close.reason);
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.#overloaded) return;
      if (this.#inbox.size > (this.#options.maxQueued ?? DEFAULT_MAX_QUEUED)) {
        this.#overloaded = true;
        this.close(1013, "Too many messages waiting").catch(NOOP);
        return;
      }
      const data = event.data;
      this.#inbox.push(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
    };
    socket.onerror = NOOP; // a close event follows
    socket.onclose = (event: CloseEvent) => {
      // Deno can report 1005 when it started the close although the peer
      // answered with a code (its own WebSocket client's answer does this);
      // our own close is then the best account of the ending, though it
      // also stands in for a peer whose answer really had no code.
      const ours = this.#sentClose;
      const info = event.code === 1005 && ours !== null ? ours : event;
      // Deno gives 0 for a connection that dropped (or broke one of its own
      // limits) without a close frame: 1006, as everywhere else here.
      this.#finish({ code: info.code === 0 ? 1006 : info.code, reason: info.reason });
    };
    // A client that leaves during the upgrade is never reported: Deno's
    // socket then fires neither open, nor error, nor close.
    const openTimeout = this.#options.handshakeTimeout ?? DEFAULT_LIMITS.handshakeTimeout;
    if (openTimeout > 0) {
      this.#openTimer = setTimeout(
        () => this.#finish({ code: 1006, reason: "Handshake timeout" }),
        openTimeout,
      );
    }
    this.#response.resolve(response);
  }

  reject(options: RejectOptions = {}): void {
    if (this.#answered) throw new LocalProtocolError("The handshake was already answered");
    // The rules of a rejection on raw TCP, checked before anything is sent.
    const reject = new RejectConnection({
      statusCode: options.status ?? 403,
      headers: options.headers ?? [],
      ...(options.body === undefined ? {} : { body: options.body }),
    });
    checkRejection(reject);
    // Fetch refuses even an empty body with 204 and 304 (which end at their head).
    const body = reject.body === null || reject.body.length === 0
      ? null
      : new Uint8Array(reject.body);
    const response = new Response(body, {
      status: reject.statusCode,
      headers: reject.headers.map(([name, value]) => [name, value]),
    });
    this.#answered = true;
    this.#response.resolve(response);
    this.#finish({ code: 1006, reason: "" });
  }

  receive(options?: ReceiveOptions): Promise<MessageData> {
    return this.#inbox.receive(options, () => this.#acceptIfPending());
  }

  [Symbol.asyncIterator](): AsyncIterator<MessageData, undefined> {
    return iterateInbox(this.#inbox, () => this.#acceptIfPending());
  }

  // Messages come from Deno's WebSocket, whose buffers are not ours to reuse.
  release(_message: MessageData): void {}

  send(data: MessageData): Promise<void> {
    checkMessageData(data);
    this.#acceptIfPending();
    const native = this.#native;
    if (this.#state === "connecting" && native !== null) {
      const done = Promise.withResolvers<void>();
      done.promise.catch(NOOP);
      // A copy: send() takes the bytes before it returns (Socket.send).
      this.#early.push({ data: typeof data === "string" ? data : data.slice(), done });
      // Counted as Deno counts them once given to its socket: UTF-8 bytes.
      this.#earlyBytes += typeof data === "string" ? ENCODER.encode(data).length : data.length;
      return done.promise;
    }
    if (this.#state !== "open" || native === null) return this.#rejection();
    // Deno's WebSocket refuses a view of shared memory, which raw TCP sends.
    native.send(
      typeof data !== "string" && data.buffer instanceof SharedArrayBuffer ? data.slice() : data,
    );
    if (native.bufferedAmount < HIGH_WATER) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    promise.catch(NOOP);
    this.#drainWaiters.push({ resolve, reject });
    this.#pollDrain();
    return promise;
  }

  ping(_payload?: Uint8Array): Promise<void> {
    this.#acceptIfPending();
    const promise = Promise.reject(
      new Deno.errors.NotSupported(
        "ping() is not available on Deno.serve: Deno's WebSocket sends its own (idleTimeout)",
      ),
    );
    promise.catch(NOOP);
    return promise;
  }

  close(code = 1000, reason = ""): Promise<CloseInfo> {
    // Checked before a pending handshake is accepted: a close that cannot
    // be sent leaves the handler free to reject instead, as on raw TCP.
    // Deno's server-side WebSocket sends any code, not only the WebSocket
    // API's 1000 and 3000-4999, so the codes taken are raw TCP's.
    try {
      checkClose(code, reason);
      this.#acceptIfPending();
    } catch (error) {
      return Promise.reject(error);
    }
    const native = this.#native;
    if (native !== null && this.#state !== "closed" && this.#closeTimer === undefined) {
      const opened = this.#state === "open";
      this.#state = "closing";
      this.#sentClose = { code, reason };
      if (opened) native.close(code, reason); // else once open (see accept)
      this.#closeTimer = setTimeout(
        () => this.#finish({ code: 1006, reason: "" }),
        this.#options.closeTimeout ?? DEFAULT_LIMITS.closeTimeout,
      );
    }
    return this.#closed.promise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  handlerDone(error: unknown, threw: boolean): void {
    if (!this.#answered) {
      if (threw) {
        this.reject({ status: 500 });
        return;
      }
      this.accept();
    }
    if (this.#state === "closed") return;
    const { code, reason } = closeAfterHandler(error, threw);
    this.close(code, reason).catch(NOOP);
  }

  #acceptIfPending(): void {
    if (!this.#answered) this.accept();
  }

  #rejection(): Promise<never> {
    const promise = Promise.reject(new ConnectionClosedError(this.#closeInfo ?? undefined));
    promise.catch(NOOP);
    return promise;
  }

  #pollDrain(): void {
    if (this.#drainTimer !== undefined) return;
    this.#drainTimer = setTimeout(() => {
      this.#drainTimer = undefined;
      const native = this.#native;
      // Once closing, Deno's WebSocket says 0 bytes are buffered whether they
      // went out or not: the waiters wait for the end, which rejects them.
      if (native === null || this.#state === "closing" || this.#state === "closed") return;
      if (native.bufferedAmount < HIGH_WATER) {
        for (const waiter of this.#drainWaiters.splice(0)) waiter.resolve();
      } else this.#pollDrain();
    }, DRAIN_POLL_MS);
  }

  #finish(info: CloseInfo): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closeInfo = info;
    clearTimeout(this.#openTimer);
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    if (this.#drainTimer !== undefined) clearTimeout(this.#drainTimer);
    const error = new ConnectionClosedError(info);
    for (const waiter of this.#drainWaiters.splice(0)) waiter.reject(error);
    this.#earlyBytes = 0;
    for (const { done } of this.#early.splice(0)) done.reject(error);
    this.#inbox.end(info);
    this.#closed.resolve(info);
  }
}
