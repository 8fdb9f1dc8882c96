/**
 * The socket over a `Deno.Conn` that `serve()` and `connect()` hand out: one
 * read loop feeding a {@linkcode WSConnection}, writes coalesced, read
 * buffers sized and reused for the messages that come.
 *
 * @module
 */

import { emptied } from "./_array.ts";
import {
  allocate,
  allocateKept,
  concatBytes,
  copyBytes,
  inSlab,
  joinFrames,
  recycle,
  takeSpare,
} from "./_bytes.ts";
import { WSConnection } from "./connection.ts";
import { checkMessageData, LocalProtocolError, RemoteProtocolError } from "./errors.ts";
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
import { type Limits, resolveLimits } from "./limits.ts";
import { Inbox, iterateInbox, MessageParts } from "./inbox.ts";
import {
  ABNORMAL,
  type AcceptOptions,
  checkClose,
  closeAfterHandler,
  type CloseInfo,
  ConnectionClosedError,
  type Heartbeat,
  type MessageData,
  type ReceiveOptions,
  type RejectOptions,
  type ServerSocket,
  type SocketState,
} from "./socket.ts";
import { ConnectionState, ConnectionType } from "./state.ts";

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

// Messages handed to the application that are all of the buffer a
// RawSocket read them into: Socket.release() may give the buffer back
// (once: it deletes them here). The message itself, not its buffer, is the
// key, so that a view of part of it gives nothing back.
const releasable = new WeakSet<Uint8Array>();

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
  /**
   * Whether the transport sends every write at once (TCP_NODELAY is set).
   * Only then are replies to a burst split into several writes (see
   * LONE_BURST): Nagle's algorithm holds a write back while an earlier one
   * is not acknowledged, and a peer that waits for the rest of its replies
   * delays its ACK, 40 ms on Linux.
   */
  noDelay?: boolean;
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
// Replies a socket holds back for a burst of pipelined messages, while no
// other socket of this process has output (see #settle). Holding them all
// until the burst is taken makes the fewest writes, which is what a
// process busy with many sockets needs; a process busy with one has a core
// to spare, and then the peer sat idle until our last reply was made and
// we sat idle while it answered: taking turns, not working at once. A lone
// socket's replies now go out about this many at a time, and the peer
// works on each batch while we make the next. 1 x 32 B pipelined 32 deep:
// 0.44 -> 0.6-0.75 M msg/s (the floor server, one write per read, 0.5 M);
// 16 x 1 KiB 16 deep, where other sockets nearly always have output,
// unchanged. 4 made more writes than the overlap gained, 12 and 16 less
// overlap.
const LONE_BURST = 8;
// Sockets of this process with output queued or in flight.
let socketsWriting = 0;

/**
 * How many sockets of this process have output queued or in flight: for
 * tests, which check that every closed socket stopped counting (a socket
 * that never did would keep every other from being alone, see LONE_BURST).
 *
 * @returns The count.
 */
export function socketsWithOutput(): number {
  return socketsWriting;
}
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
 * import { RawSocket } from "./raw_socket.ts";
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
  // The handshake's own bytes among them (the request, or the answer to
  // it), until the first write is done: bufferedAmount leaves them out.
  #handshakeBytes = 0;
  // Where our Close frame is: queued, in the write in flight, or written.
  // Once it is out, writing (pongs, RFC 6455 §5.5.3) is no progress that
  // holds off closeTimeout: a peer pinging on would hold the socket open.
  #closeFrame: "none" | "queued" | "writing" | "written" = "none";
  // Whether #process left events in the engine for the reader to catch up.
  #backlog = false;
  #batch: PromiseWithResolvers<void> | null = null;
  #writing = false;
  readonly #noDelay: boolean;
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
  #dropping = false;
  // Set while the events after a message wait for the application's answer.
  #heldForReplies: ReturnType<typeof setTimeout> | undefined;
  // Whether a message went to the application since an ending last waited
  // for its answers (see #holdForReplies).
  #answerDue = false;
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
  // Where the wait for the outstanding ping's answer counts from: its
  // sending, and then each write that made progress (see #onWritten).
  #pongWaitFrom = 0;
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
    this.#noDelay = options.noDelay ?? false;
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
      this.#writeHandshake(options.request);
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

  /** Bytes of messages and control frames queued or being written. */
  get bufferedAmount(): number {
    return this.#outBytes - this.#handshakeBytes;
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
    this.#writeHandshake(bytes);
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
    this.#writeHandshake(bytes);
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
    return this.#inbox.receive(options, () => this.#acceptIfPending());
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
    // The engine checks too, but only after a pending handshake would be
    // accepted here, and a closed socket would hide the mistake.
    checkMessageData(data);
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
    // Not of the right type, it goes to the engine as it is, to be refused
    // there as every other payload is.
    const data = payload === undefined
      ? counterPayload(++this.#pingCounter)
      : payload instanceof Uint8Array
      ? payload.slice()
      : payload;
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
      this.#closeFrame = "queued";
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
    const { code, reason } = closeAfterHandler(error, threw);
    this.close(code, reason).catch(NOOP);
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
        if (pongTimeout > 0 && now - this.#pongWaitFrom >= pongTimeout) {
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
      this.#pongWaitFrom = now;
      // Not ping(): that waits for this very pong, and a peer that sends
      // but never answers would add a waiter every interval.
      this.#write(this.#ws.send(new Ping({ payload: EMPTY })));
      // A pong may answer only the latest ping (RFC 6455 §5.5.3): this
      // one's then settles the ping() calls before it. One mark stands for
      // every heartbeat since the last of them.
      const last = this.#pings.at(-1);
      if (last !== undefined && last.payload !== EMPTY) {
        this.#pings.push({ payload: EMPTY, resolve: NOOP, reject: NOOP });
      }
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

  // The first write of a connection.
  #writeHandshake(bytes: Uint8Array): void {
    this.#handshakeBytes = bytes.length;
    this.#write(bytes);
  }

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
      socketsWriting++;
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
    // is queued (less when this socket alone has output: LONE_BURST);
    // reads, and so new messages, only come in a later task.
    let taken = this.#inbox.taken;
    let idle = 0;
    while (idle < FLUSH_PATIENCE && this.#outBytes < COALESCE && !this.#connClosed) {
      // Caught up: the reader took everything and waits for more.
      if (this.#inbox.size === 0 && this.#inbox.waiting) break;
      if (this.#out.length >= LONE_BURST && socketsWriting === 1 && this.#noDelay) break;
      await undefined;
      if (this.#inbox.taken === taken) idle++;
      else {
        taken = this.#inbox.taken;
        idle = 0;
      }
    }
  }

  #writingDone(): void {
    if (this.#writing) socketsWriting--;
    this.#writing = false;
  }

  // Write what is queued, or end the flush when nothing is.
  #flushNext(): void {
    if (this.#out.length === 0 || this.#connClosed) {
      this.#writingDone();
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
    if (this.#closeFrame === "queued") this.#closeFrame = "writing";
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
    // A ping waits behind what was queued before it, here and in the
    // kernel: while writes make progress the peer is reading, and so alive.
    // A peer that reads slowly a backlog was dropped as silent (1006), its
    // ping not yet read; a dead one stops the writes once the kernel's
    // buffer is full, and the wait runs out pongTimeout after.
    if (this.#pingOutstanding) this.#pongWaitFrom = performance.now();
    // closeTimeout bounds a peer that stopped reading, not one that reads
    // slowly the megabytes queued ahead of our Close frame.
    if (this.#state === "closing" && this.#timer !== undefined && this.#closeFrame !== "written") {
      this.#restartCloseTimer();
    }
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
    this.#handshakeBytes = 0; // the handshake went out in the first write
    if (this.#closeFrame === "writing") this.#closeFrame = "written";
    this.#endWriteBatch().resolve();
    this.#flushNext();
  };

  readonly #onWriteFailed = (error: unknown): void => {
    if (!this.#connClosed) this.#ioError ??= error;
    const batch = this.#endWriteBatch();
    this.#writingDone();
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
      if (this.#backlog) {
        // Events the last read brought and #process left for now.
        this.#backlog = false;
        this.#process();
        continue;
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
          : expected > size && frameRest.length >= MIN_TAIL)
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
        const soFar = plain ? this.#parts.binaryLength : 0;
        const message = this.#messageBuffer(soFar, expected);
        const text = plain && message === null ? this.#textFrameBuffer(expected) : null;
        if (message !== null) {
          held = soFar;
          target = message;
          this.#parts.moveTo(target);
        } else if (text !== null) {
          // The rest of a text frame: into a pooled buffer that holds it
          // alone, given back once it is decoded (see #process), where a
          // fresh one per message was external memory for V8 to collect.
          // The next read is sized for a frame like it: at most the last
          // read and this rest.
          target = text;
          this.#lastOwnedLength = lastRead + expected;
        } else {
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
        // The rest of the frame goes behind what came, in the buffer it
        // came into: after a bulk read, and after any read into the
        // message's own buffer while the frame is not whole. A small read
        // was copied out, and its room serves the next piece: dropping the
        // buffer then left the pieces before it pinning all of it, and a
        // peer alternating 8 KiB and 1-byte writes held 6.7 times its
        // message (431 MiB for one of 64 MiB).
        if (!reused) {
          if (owned ? n < expected : n > SMALL_READ) frameRest = into.subarray(n);
          else if (!owned) frameRest = into;
        }
      }
      if (n === null && (this.#answerDue || this.#heldForReplies !== undefined)) {
        // The end waits a task too, as an ending after messages does (see
        // #holdForReplies), and so comes after an ending held: found by
        // the read after the last messages, often before the application
        // had its turn, it closed the engine, and their answers (or the
        // answer to a close) were refused.
        this.#answerDue = false;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      const waited = n !== null && n > SMALL_READ && longTextHandedOut;
      if (waited) {
        textTurnsWaited++;
        await new Promise<void>((resolve) => waitingForTextTurn.push(resolve));
      }
      try {
        if (this.#connClosed) break;
        this.#receive(data, next);
      } finally {
        // The next waiting read goes once this one was handled (or dropped).
        if (waited) nextTextTurn();
      }
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
      // An ending found after messages, in this read or a later one, waits
      // for their answers.
      while (!(this.#answerDue && this.#endsNext())) {
        // One read of compressed frames can inflate to hundreds of MiB. Past
        // the high-water mark the rest waits in the engine, still
        // compressed, until the reader catches up (#read), as unread bytes
        // wait in the kernel; plain frames are views of the read, no more.
        if (this.#inbox.full && this.#state === "open" && this.#ws.extensions.length > 0) {
          this.#backlog = true;
          return;
        }
        const event = this.#ws.nextEvent();
        if (event === null) return;
        if (event instanceof TextMessage || event instanceof BytesMessage) {
          // A text frame's bytes are garbage once decoded: the buffer that
          // held them alone serves the next read or frame.
          if (event.frameFinished && this.#ownBuffer !== null && typeof event.data === "string") {
            recycle(new Uint8Array(this.#ownBuffer, 0, 0));
            this.#ownBuffer = null;
          }
          this.#onData(event.data, event.messageFinished);
        } else if (event instanceof Ping) {
          // RFC 6455 §5.5.3: answered until the peer's close, ours notwithstanding.
          const state = this.#ws.state;
          if (state === ConnectionState.OPEN || state === ConnectionState.LOCAL_CLOSING) {
            this.#answerPing(event);
          }
        } else if (event instanceof Pong) this.#onPong(event.payload);
        else if (event instanceof CloseConnection) this.#onClose(event);
        else if (event instanceof AcceptConnection) this.#onAccept(event);
        else if (event instanceof RejectConnection) this.#onRefusal(event);
        else if (event instanceof RejectData) this.#onRefusalData(event);
        else this.#onRequestEvent(event);
      }
      this.#holdForReplies();
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
  // its Close frame would refuse those answers; so would one found in the
  // next read, when that read completed at once. The ending waits a task,
  // so that answers go out first, as from a loop over the engine's events
  // (Autobahn 3.2, 4.x and 5.15 expect the echo before the 1002).
  #holdForReplies(): void {
    this.#heldForReplies = setTimeout(() => {
      this.#heldForReplies = undefined;
      this.#answerDue = false;
      if (!this.#connClosed) this.#process();
    }, 0);
  }

  #releaseHeld(): void {
    clearTimeout(this.#heldForReplies);
    this.#heldForReplies = undefined;
  }

  #onData(data: MessageData, finished: boolean): void {
    // Once we sent our close, what the peer still sends may be dropped
    // (RFC 6455 §1.4), and reading no longer waits for the reader: the
    // peer's close is to be found behind it. It is kept while the reader
    // has room; from the first message that finds none, it and all after it
    // are dropped, so that what the reader gets is what was sent up to a
    // point, never with a gap (kept again when room came, later messages
    // followed lost ones).
    if (this.#dropping || (this.#state !== "open" && this.#inbox.full)) {
      this.#parts.clear();
      this.#dropping = true;
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
    const handedOut = typeof message === "string" && message.length >= LONG_TEXT &&
      this.#inbox.waiting;
    this.#inbox.push(message);
    this.#answerDue = true;
    if (handedOut) {
      longTextHandedOut = true;
      // After the reader's continuation, which push() just queued.
      queueMicrotask(textTurnOver);
    }
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
