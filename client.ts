/**
 * A WebSocket client on `Deno.connect` (`ws://`) or `Deno.connectTls`
 * (`wss://`), running a {@linkcode WSConnection}.
 *
 * @module
 */

import { base64 } from "./_bytes.ts";
import { WSConnection } from "./connection.ts";
import { checkHeaderTypes } from "./handshake.ts";
import { LocalProtocolError, wrongType } from "./errors.ts";
import { Request } from "./events.ts";
import type { Headers } from "./events.ts";
import { checkDelay, type Limits, resolveLimits } from "./limits.ts";
import { PerMessageDeflate, type PerMessageDeflateOptions } from "./permessage_deflate.ts";
import { RawSocket } from "./raw_socket.ts";
import { type Heartbeat, heartbeatOf, type Socket } from "./socket.ts";
import { ConnectionType } from "./state.ts";

const NOOP = (): void => {};

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** Subprotocols to offer, in order of preference. */
  subprotocols?: readonly string[];
  /**
   * Headers to add to the handshake request (`Origin`, `Authorization`,
   * ...): pairs, a record, or a Fetch `Headers`. A `Host` replaces the
   * URL's; the handshake's own fields (`Upgrade`, `Connection`,
   * `Sec-WebSocket-*`) cannot be given: use `subprotocols` and `deflate`.
   */
  headers?: Headers | Record<string, string> | globalThis.Headers;
  /** Offer permessage-deflate (RFC 7692): `true` for the defaults, or the options. */
  deflate?: boolean | PerMessageDeflateOptions;
  /** Limits of the connection. */
  limits?: Partial<Limits>;
  /**
   * Milliseconds for the TCP connection, TLS and the opening handshake
   * together; default `limits.handshakeTimeout` (10 s).
   */
  handshakeTimeout?: number;
  /** Aborting before the socket is open abandons the attempt. */
  signal?: AbortSignal;
  /** `wss://` only: extra root certificates in PEM to trust, as for `Deno.connectTls`. */
  caCerts?: string[];
  /**
   * Milliseconds between heartbeat pings (a ping waits for the answer to
   * the last); 0 (the default) sends none.
   */
  pingInterval?: number;
  /**
   * Milliseconds the server has to send anything after a heartbeat ping
   * before the connection is dropped (`closed` gives 1006); default 20 000,
   * and 0 never drops (the next ping waits for the answer).
   */
  pongTimeout?: number;
}

/** Options of {@linkcode HandshakeError}. */
export interface HandshakeErrorOptions {
  /** The HTTP status of a refusal. */
  status?: number | null;
  /** The headers of a refusal. */
  headers?: Headers;
  /** The body of a refusal (the first 64 KiB). */
  body?: Uint8Array;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * The opening handshake failed: the server refused it (`status` is the
 * HTTP status, `body` the response body), answered something that is not a
 * valid 101, the connection dropped, or the handshake timed out.
 *
 * @example Reading a refusal
 * ```ts
 * import { connect, HandshakeError } from "./client.ts";
 * import { serve } from "./server.ts";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, (socket) => {
 *   socket.reject({ status: 403, body: "no entry" });
 * });
 * try {
 *   await connect(`ws://127.0.0.1:${server.addr.port}/`);
 * } catch (error) {
 *   if (!(error instanceof HandshakeError && error.status === 403)) throw new Error("Example failed");
 *   if (!(error instanceof HandshakeError && error.text() === "no entry")) throw new Error("Example failed");
 * }
 * ```
 */
export class HandshakeError extends Error {
  /** The HTTP status of the refusal, or `null` when there was no response. */
  readonly status: number | null;
  /** The headers of the refusal. */
  readonly headers: Headers;
  /** The body of the refusal. */
  readonly body: Uint8Array;

  /**
   * Make the error.
   *
   * @param message What went wrong, in a sentence.
   * @param options The refusal's status, headers and body, and the cause.
   */
  constructor(message: string, options: HandshakeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HandshakeError";
    this.status = options.status ?? null;
    this.headers = options.headers ?? [];
    this.body = options.body ?? new Uint8Array(0);
  }

  /**
   * The body as text.
   *
   * @returns The body decoded as UTF-8.
   */
  text(): string {
    return new TextDecoder().decode(this.body);
  }
}

/**
 * Open a WebSocket connection to a `ws://` or `wss://` URL (`http://` and
 * `https://` are taken as the same). A user and password in the URL are
 * sent as `Authorization: Basic` unless `headers` has an `Authorization`.
 *
 * @param url Where to connect.
 * @param options Subprotocols, headers, deflate, limits, timeouts, TLS roots.
 * @returns The open socket.
 * @throws {HandshakeError} When the connection or the handshake fails or
 *   times out; a refusal's status, headers and body (its first 64 KiB) come
 *   with it, and a transport or TLS failure is its `cause`.
 * @throws {TypeError} For a URL of another scheme, with a fragment, or
 *   with a malformed %-escape in its user or password.
 * @throws {LocalProtocolError} For a request that cannot be sent (a header
 *   that is not valid HTTP or belongs to the handshake, two `Host`s, a
 *   subprotocol that is not a token or is offered twice), before connecting.
 * @throws When `options.signal` aborts first: the signal's reason (an
 *   `AbortError` `DOMException` unless one was given).
 *
 * @example Connecting with a subprotocol and a header
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 }, (socket, request) => {
 *   const token = request.extraHeaders.find(([name]) => name.toLowerCase() === "x-token");
 *   if (token?.[1] !== "secret") return socket.reject({ status: 401 });
 *   socket.accept({ subprotocol: "v1" });
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
 *   subprotocols: ["v1"],
 *   headers: { "X-Token": "secret" },
 * });
 * if (socket.subprotocol !== "v1") throw new Error("Example failed");
 * await socket.close();
 * ```
 */
export async function connect(url: string | URL, options: ConnectOptions = {}): Promise<Socket> {
  const target = new URL(url);
  const secure = target.protocol === "wss:" || target.protocol === "https:";
  if (!secure && target.protocol !== "ws:" && target.protocol !== "http:") {
    throw new TypeError(`Cannot open a WebSocket to a ${target.protocol} URL`);
  }
  // Errors name the URL without its credentials.
  const shown = new URL(target);
  shown.username = "";
  shown.password = "";
  // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
  // A bare "#" leaves `hash` empty; browsers refuse it all the same.
  if (target.href.includes("#")) {
    throw new TypeError(`A WebSocket URL cannot have a fragment: ${shown.href}`);
  }
  const limits = resolveLimits(options.limits);
  const heartbeat = heartbeatOf(options);
  const timeout = checkDelay("handshakeTimeout", options.handshakeTimeout, limits.handshakeTimeout);
  const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = target.port === "" ? (secure ? 443 : 80) : Number(target.port);
  const extensions = [];
  if (options.deflate !== undefined && options.deflate !== false) {
    // The connection's limit is the extension's unless the options say (see serve()).
    extensions.push(
      new PerMessageDeflate({
        maxMessageSize: limits.maxMessageSize,
        ...(options.deflate === true ? {} : options.deflate),
      }),
    );
  }
  const given = options.headers;
  if (given !== undefined && (typeof given !== "object" || given === null)) {
    throw wrongType("headers are a Headers, an array of [name, value] pairs or a record", given);
  }
  const headers: [string, string][] = given === undefined
    ? []
    : Array.isArray(given) || given instanceof globalThis.Headers
    ? [...given]
    : Object.entries(given);
  checkHeaderTypes(headers);
  const isHost = named("host");
  const hosts = headers.filter(isHost);
  if (hosts.length > 1) throw new LocalProtocolError("A request has one Host header, not several");
  const host = hosts[0]?.[1] ?? target.host;
  if ((target.username !== "" || target.password !== "") && !headers.some(named("authorization"))) {
    headers.push(["Authorization", `Basic ${base64(credentials(target))}`]);
  }
  // The request is made before any connection: a bad one throws here.
  const engine = new WSConnection(ConnectionType.CLIENT, { limits });
  const request = engine.send(
    new Request({
      host,
      target: (target.pathname === "" ? "/" : target.pathname) + target.search,
      subprotocols: options.subprotocols ?? [],
      extensions,
      extraHeaders: headers.filter((header) => !isHost(header)),
    }),
  );

  const signal = options.signal;
  signal?.throwIfAborted();
  const deadline = new AbortController();
  // 0 disables the deadline, as it does for serve().
  const timer = timeout === 0 ? undefined : setTimeout(
    () => deadline.abort(new HandshakeError(`The WebSocket handshake took over ${timeout} ms`)),
    timeout,
  );
  const abandon = AbortSignal.any(
    signal === undefined ? [deadline.signal] : [
      deadline.signal,
      signal,
    ],
  );
  try {
    const tcp = await raceAbort(Deno.connect({ hostname, port }), abandon);
    // Frames are written whole; Nagle would only add latency: a small
    // message sent while the last is not yet acknowledged waited for the
    // peer's delayed ACK, 40 ms. Set before TLS starts, as Deno's TLS
    // connections cannot set it.
    let noDelay = false;
    try {
      tcp.setNoDelay(true);
      noDelay = true;
    } catch {
      // the peer is already gone: the socket's first read or write says so
    }
    let conn: Deno.Conn = tcp;
    if (secure) {
      const caCerts = options.caCerts;
      const starting = Deno.startTls(tcp, {
        hostname,
        ...(caCerts === undefined ? {} : { caCerts }),
      }).catch((error) => {
        try {
          tcp.close(); // where TLS failed before taking the connection over
        } catch {
          // taken over, and closed with it
        }
        throw error;
      });
      conn = await handshakeTls(await raceAbort(starting, abandon), abandon);
    }
    const socket = new RawSocket(conn, {
      type: ConnectionType.CLIENT,
      noDelay,
      // One deadline only: the one above closes the socket when it passes,
      // so the error always says which limit was hit.
      limits: { ...limits, handshakeTimeout: 0 },
      connection: engine,
      request,
    });
    const unlisten = whenAborted(abandon, () => void socket.close());
    const result = await socket.opened;
    unlisten();
    if (result.ok) {
      if (heartbeat !== null) keepAlive(socket, heartbeat);
      return socket;
    }
    await socket.closed;
    if (signal?.aborted) throw signal.reason;
    // Past the deadline, what came of a refusal still comes with the error.
    const late = deadline.signal.aborted ? deadline.signal.reason as HandshakeError : null;
    throw new HandshakeError(late?.message ?? result.message, {
      status: result.status,
      headers: result.headers,
      body: result.body,
      cause: result.cause,
    });
  } catch (error) {
    if (error instanceof HandshakeError || error === signal?.reason) throw error;
    throw new HandshakeError(
      `Could not connect to ${shown.href}: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
  }
}

// Settles with the connection, or rejects when the signal aborts first
// (then the connection, should it still come, is closed).
function raceAbort<T extends Deno.Conn>(connecting: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // A connection that completes after the abort is closed once, below.
    const unlisten = whenAborted(signal, () => reject(signal.reason));
    connecting.then(
      (conn) => {
        unlisten();
        if (signal.aborted) conn.close();
        else resolve(conn);
      },
      (error) => {
        unlisten();
        reject(error);
      },
    );
  });
}

// Runs `action` when the signal aborts, or at once if it has: an abort in
// the microtasks since the last step would otherwise go unheard, and with
// it the handshake deadline, which aborts the same signal. Returns what
// stops listening.
function whenAborted(signal: AbortSignal, action: () => void): () => void {
  if (signal.aborted) {
    action();
    return NOOP;
  }
  signal.addEventListener("abort", action, { once: true });
  return () => signal.removeEventListener("abort", action);
}

// Deno runs TLS's handshake on the first read or write, whose errors the
// socket only sees as a closed connection: run it here, so that a bad
// certificate is the error's cause. An abort during it closes the connection.
async function handshakeTls(conn: Deno.TlsConn, signal: AbortSignal): Promise<Deno.TlsConn> {
  const unlisten = whenAborted(signal, () => conn.close());
  try {
    signal.throwIfAborted();
    await conn.handshake();
    return conn;
  } catch (error) {
    if (!signal.aborted) conn.close();
    signal.throwIfAborted();
    throw error;
  } finally {
    unlisten();
  }
}

// The URL's user and password, decoded, as Basic authentication takes them.
function credentials(url: URL): Uint8Array {
  try {
    return new TextEncoder().encode(
      `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`,
    );
  } catch {
    throw new TypeError("The URL's user or password holds a malformed %-escape");
  }
}

// Whether a header is `name` (lower case), whatever the case it came in.
function named(name: string): (header: readonly [string, string]) => boolean {
  return ([field]) => field.toLowerCase() === name;
}

function keepAlive(socket: RawSocket, heartbeat: Heartbeat): void {
  const timer = setInterval(() => socket.heartbeat(performance.now(), heartbeat), heartbeat.tick);
  socket.closed.then(() => clearInterval(timer));
}
