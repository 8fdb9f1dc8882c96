/**
 * A WebSocket server on raw TCP (`Deno.listen`) or TLS (`Deno.listenTls`):
 * one {@linkcode WSConnection} per connection, from the first byte of the
 * handshake to the last of the closing handshake, with permessage-deflate
 * when asked for.
 *
 * @module
 */

import type { Limits } from "./limits.ts";
import { resolveLimits } from "./limits.ts";
import { PerMessageDeflate, type PerMessageDeflateOptions } from "./permessage_deflate.ts";
import { RawSocket } from "./raw_socket.ts";
import { checkHandler, type Handler, heartbeatOf, logError, report, runHandler } from "./socket.ts";
import { ConnectionType } from "./state.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** The address to listen on: `"0.0.0.0"` (every interface) unless given. */
  hostname?: string;
  /** The port to listen on; 0 picks a free one (see `Server.addr`). Default 8000, as for `Deno.serve`. */
  port?: number;
  /**
   * A certificate chain in PEM; with `key`, the server speaks TLS (`wss://`).
   * One limit of Deno's TLS: a client that connects and never starts TLS
   * is not released at `handshakeTimeout` (closing a `Deno.TlsConn` waits
   * for its TLS handshake; denoland/deno#14547). Nor can it turn Nagle's
   * algorithm off (it has no `setNoDelay`), so a small message sent while
   * the last is unacknowledged may wait for the client's delayed ACK, up
   * to 40 ms on Linux. Where either matters, put a TLS-terminating proxy
   * in front.
   */
  cert?: string;
  /** The private key of `cert`, in PEM. */
  key?: string;
  /**
   * Sets `SO_REUSEPORT`, so that several processes share one port (Linux).
   * Deno 2.9 needs `--unstable-net` for it; without the flag the process
   * exits.
   */
  reusePort?: boolean;
  /** Aborting shuts the server down, as `shutdown()` does. */
  signal?: AbortSignal;
  /**
   * Limits of each connection. `handshakeTimeout` bounds the time from the
   * connection to a complete request (a slow or silent client is dropped);
   * `closeTimeout` the wait for the peer's close.
   */
  limits?: Partial<Limits>;
  /**
   * Milliseconds between heartbeat pings on each open connection (a ping
   * waits for the answer to the last); 0 (the default) sends none.
   */
  pingInterval?: number;
  /**
   * Milliseconds a peer has to send anything (its pong) after a heartbeat
   * ping; after that the connection is dropped without a closing handshake
   * (a peer that does not answer pings would not answer a close either) and
   * `closed` gives 1006 with the reason `"Ping timeout"`. Default 20 000;
   * 0 never drops a peer (the next ping waits for the answer however long
   * it takes).
   */
  pongTimeout?: number;
  /**
   * Accept permessage-deflate (RFC 7692) when a client offers it: `true`
   * for the defaults, or the options. A fresh extension is made for every
   * connection; what a message inflates to is bounded by
   * `limits.maxMessageSize` (or the options' `maxMessageSize` when smaller).
   */
  deflate?: boolean | PerMessageDeflateOptions;
  /** Called once listening, with the address (the real port when `port` is 0). */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * Called with errors a handler threw (but not a `ConnectionClosedError`:
   * the peer went away), and errors accepting connections; what it throws
   * is ignored. Default: the error printed with `console.error` as text.
   * Logging the error object itself keeps it alive in Deno's inspector
   * console, and with it the socket it came from.
   */
  onError?: (error: unknown) => void;
}

/**
 * A running server, as {@linkcode serve} returns it.
 *
 * @example Stopping a server with an AbortSignal
 * ```ts
 * import { serve } from "./server.ts";
 * const controller = new AbortController();
 * const server = serve({ hostname: "127.0.0.1", port: 0, signal: controller.signal }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * if (server.addr.port === 0) throw new Error("Example failed"); // the real port
 * controller.abort(); // as server.shutdown() does
 * await server.finished;
 * ```
 */
export interface Server extends AsyncDisposable {
  /** The address listened on. */
  readonly addr: Deno.NetAddr;
  /**
   * Stop accepting, close every open socket with 1001 (and drop those still
   * in the handshake), and wait until every connection is over and every
   * handler returned. A handler that never returns (one awaiting something
   * other than its socket) keeps this promise pending: end such work on
   * `socket.closed`.
   */
  shutdown(): Promise<void>;
  /** Resolves once the server has shut down and every handler returned. */
  readonly finished: Promise<void>;
}

/**
 * Serve WebSockets on raw TCP, or TLS when `cert` and `key` are given.
 * `handler(socket, request)` runs for each valid handshake request; the
 * socket waits for `accept()` or `reject()` (using it accepts), and
 * closes when the handler returns (see {@linkcode Handler}). An invalid
 * handshake is answered with the HTTP status the handshake chose (400,
 * 405, 426, 431, ...) without calling the handler.
 *
 * @param options Address, TLS, limits, heartbeat, deflate and callbacks.
 * @param handler Called for each connection.
 * @returns The running server.
 * @throws {TypeError} When only one of `cert` and `key` is given.
 * @throws What `onListen` throws (the server is shut down first).
 *
 * @example An echo server with permessage-deflate
 * ```ts
 * import { serve } from "./server.ts";
 * import { connect } from "./client.ts";
 * const server = serve({ hostname: "127.0.0.1", port: 0, deflate: true }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, { deflate: true });
 * if (socket.extensions[0] !== "permessage-deflate") throw new Error("Example failed");
 * await socket.send("hello ".repeat(100));
 * if ((await socket.receive()) !== "hello ".repeat(100)) throw new Error("Example failed");
 * await server.shutdown(); // closes the socket with 1001
 * if ((await socket.closed).code !== 1001) throw new Error("Example failed");
 * ```
 */
export function serve(options: ServeOptions, handler: Handler): Server {
  checkHandler(handler, "serve()");
  return new WebSocketServer(options, handler);
}

// The pause after a failed accept: from this, doubling up to the maximum.
const ACCEPT_PAUSE_MIN = 5;
const ACCEPT_PAUSE_MAX = 1000;

class WebSocketServer implements Server {
  readonly #listener: Deno.Listener;
  readonly #handler: Handler;
  readonly #limits: Limits;
  readonly #extensions: (() => PerMessageDeflate[]) | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #sockets = new Set<RawSocket>();
  // Handlers still running; with the open sockets, what shutdown waits for.
  #handlers = 0;
  // Made at shutdown if sockets or handlers remain; resolved by the last.
  #drained: PromiseWithResolvers<void> | null = null;
  readonly #finished: Promise<void>;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => void this.shutdown();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #shutdown: Promise<void> | null = null;
  // Ends the accept loop's pause after an error early, at shutdown.
  #wake: (() => void) | null = null;

  constructor(options: ServeOptions, handler: Handler) {
    this.#handler = handler;
    this.#limits = resolveLimits(options.limits);
    const heartbeat = heartbeatOf(options);
    this.#onError = options.onError ?? logError;
    const deflate = options.deflate ?? false;
    if (deflate !== false) {
      // The connection's limit is the extension's unless the options say:
      // its own default (64 MiB) would cap a larger limits.maxMessageSize.
      const deflateOptions: PerMessageDeflateOptions = {
        maxMessageSize: this.#limits.maxMessageSize,
        ...(deflate === true ? {} : deflate),
      };
      // Validate once, up front, rather than on the first connection.
      new PerMessageDeflate(deflateOptions);
      this.#extensions = () => [new PerMessageDeflate(deflateOptions)];
    }
    const hostname = options.hostname ?? "0.0.0.0";
    const tls = options.cert !== undefined || options.key !== undefined;
    if (tls && (options.cert === undefined || options.key === undefined)) {
      throw new TypeError("TLS needs both cert and key");
    }
    const reusePort = options.reusePort ?? false;
    this.#listener = tls
      ? Deno.listenTls({
        hostname,
        port: options.port ?? 8000,
        cert: options.cert!,
        key: options.key!,
        reusePort,
      })
      : Deno.listen({ hostname, port: options.port ?? 8000, reusePort, transport: "tcp" });

    if (heartbeat !== null) {
      // One timer for every connection, not one each.
      this.#heartbeat = setInterval(() => {
        const now = performance.now();
        for (const socket of this.#sockets) socket.heartbeat(now, heartbeat);
      }, heartbeat.tick);
    }
    this.#signal = options.signal;
    this.#finished = this.#run();
    if (options.signal?.aborted) {
      void this.shutdown();
      return;
    }
    options.signal?.addEventListener("abort", this.#onAbort, { once: true });
    try {
      options.onListen?.(this.addr);
    } catch (error) {
      // serve() throws, and no one could stop a server it did not return.
      void this.shutdown();
      throw error;
    }
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  get finished(): Promise<void> {
    return this.#finished;
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= (async () => {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
      this.#wake?.();
      for (const socket of this.#sockets) socket.shutdown();
      await this.#finished;
    })();
    return this.#shutdown;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #run(): Promise<void> {
    await this.#acceptLoop();
    if (this.#sockets.size > 0 || this.#handlers > 0) {
      this.#drained = Promise.withResolvers<void>();
      await this.#drained.promise;
    }
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  async #acceptLoop(): Promise<void> {
    let pause = 0;
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) break;
        // Out of file descriptors and the like: report, and try again after
        // a pause that doubles while the errors last (as Go's net/http
        // does), so a lasting error neither spins nor floods onError.
        report(this.#onError, error);
        pause = Math.min(Math.max(ACCEPT_PAUSE_MIN, 2 * pause), ACCEPT_PAUSE_MAX);
        await this.#sleep(pause);
        continue;
      }
      pause = 0;
      if (this.#closing) {
        conn.close();
        break;
      }
      this.#handle(conn);
    }
  }

  #sleep(ms: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    const timer = setTimeout(() => this.#wake?.(), ms);
    this.#wake = () => {
      clearTimeout(timer);
      this.#wake = null;
      resolve();
    };
    return promise;
  }

  #handle(conn: Deno.Conn): void {
    let noDelay = false;
    if ("setNoDelay" in conn && typeof conn.setNoDelay === "function") {
      try {
        // Frames are written whole; Nagle would only add latency.
        (conn as Deno.TcpConn).setNoDelay(true);
        noDelay = true;
      } catch {
        // the peer is already gone; the read loop will see it
      }
    }
    const socket = new RawSocket(conn, {
      type: ConnectionType.SERVER,
      noDelay,
      limits: this.#limits,
      ...(this.#extensions === undefined ? {} : { extensions: this.#extensions }),
      onRequest: (socket, request) => this.#runHandler(socket, request),
      // A callback, not a chain on `closed`: an idle connection then holds
      // no promise of the server's.
      onClosed: (socket) => {
        this.#sockets.delete(socket);
        this.#checkDrained();
      },
    });
    this.#sockets.add(socket);
  }

  #runHandler(socket: RawSocket, request: Parameters<Handler>[1]): void {
    if (this.#closing) {
      socket.shutdown();
      return;
    }
    this.#handlers++;
    void runHandler(this.#handler, socket, request, this.#onError).then(this.#handlerOver);
  }

  readonly #handlerOver = (): void => {
    this.#handlers--;
    this.#checkDrained();
  };

  #checkDrained(): void {
    if (this.#drained !== null && this.#sockets.size === 0 && this.#handlers === 0) {
      this.#drained.resolve();
    }
  }
}
