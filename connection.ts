/**
 * The connection state machines: `Connection` speaks frames once the
 * upgrade is done; `WSConnection` runs the opening handshake first and then
 * hands over to a `Connection`.
 *
 * @module
 */

import {
  checkReceivedBytes,
  LocalProtocolError,
  RemoteProtocolError,
  wrongType,
} from "./errors.ts";
import {
  AcceptConnection,
  BytesMessage,
  CloseConnection,
  type Event,
  Ping,
  Pong,
  RejectConnection,
  RejectData,
  Request,
  TextMessage,
} from "./events.ts";
import type { Extension } from "./extensions.ts";
import { CloseReason, Opcode } from "./frame.ts";
import { FrameDecoder } from "./frame_decoder.ts";
import { FrameEncoder } from "./frame_encoder.ts";
import { Handshake } from "./handshake.ts";
import { type Limits, resolveLimits } from "./limits.ts";
import { MessageDecoder, parseClosePayload } from "./message_decoder.ts";
import { ConnectionState, type ConnectionType } from "./state.ts";

/** Events a `Connection` yields once the upgrade is done. */
export type ConnectionEvent = TextMessage | BytesMessage | Ping | Pong | CloseConnection;

/** Options of {@linkcode Connection}. */
export interface ConnectionOptions {
  /** The extensions negotiated in the handshake, enabled. */
  extensions?: readonly Extension[];
  /** Bytes received after the handshake, to process first. */
  trailingData?: Uint8Array;
  /** Limits; see {@linkcode Limits} for the defaults. */
  limits?: Partial<Limits>;
}

/**
 * A WebSocket connection after the opening handshake: bytes in with
 * `receiveData()`, events out of `events()`, bytes to write from `send()`.
 * It does no I/O and keeps no time.
 *
 * The states follow wsproto (see {@linkcode ConnectionState}). A protocol
 * error from the peer yields a `CloseConnection` carrying the code to answer
 * with (1002, 1007 or 1009) and moves to REMOTE_CLOSING, so that sending
 * `event.response()` writes that close and ends in CLOSED; nothing more is
 * read after it.
 *
 * `receiveData()` takes ownership of the bytes passed in: they are unmasked
 * in place and binary events are views into them.
 *
 * @example A server-side connection echoing a client's message
 * ```ts
 * import { Connection, ConnectionType, FrameEncoder, TextMessage } from "./mod.ts";
 * const client = new FrameEncoder(ConnectionType.CLIENT);
 * const server = new Connection(ConnectionType.SERVER);
 * server.receiveData(client.encodeData("ping?", true));
 * for (const event of server.events()) {
 *   if (event instanceof TextMessage) {
 *     const reply = server.send(new TextMessage({ data: event.data }));
 *     if (!(reply[0] === 0x81 && reply[1] === 5)) throw new Error("Example failed");
 *   }
 * }
 * ```
 */
export class Connection {
  readonly #type: ConnectionType;
  readonly #decoder: FrameDecoder;
  readonly #messages: MessageDecoder;
  readonly #encoder: FrameEncoder;
  #state = ConnectionState.OPEN;
  // True once a close frame or a protocol error ended the inbound stream.
  #inboundClosed = false;
  // The event peekEvent() decoded and nextEvent() has not yet taken;
  // null when it found none (until more bytes come), undefined when
  // nothing was peeked. A driver peeks after each message, so the
  // nextEvent() that ends its loop need not decode again.
  #peeked: ConnectionEvent | null | undefined = undefined;
  // True once the transport's stream ended: what is buffered is still
  // decoded, and then a 1006 close stands in for the peer's.
  #streamEnded = false;

  /**
   * Make a connection for one end of an upgraded stream.
   *
   * @param type Which end this is.
   * @param options Extensions, trailing bytes and limits.
   */
  constructor(type: ConnectionType, options: ConnectionOptions = {}) {
    this.#type = type;
    const limits = resolveLimits(options.limits);
    const extensions = (options.extensions ?? []).filter((extension) => extension.enabled());
    this.#decoder = new FrameDecoder(type, { extensions, maxFrameSize: limits.maxFrameSize });
    this.#messages = new MessageDecoder({
      maxMessageSize: limits.maxMessageSize,
      maxFragments: limits.maxFragments,
      extensions,
    });
    this.#encoder = new FrameEncoder(type, { extensions });
    if (options.trailingData !== undefined && options.trailingData.length > 0) {
      this.receiveData(options.trailingData);
    }
  }

  /** Which end of the connection this is. */
  get type(): ConnectionType {
    return this.#type;
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * Bytes of the frame being read that have not arrived yet (0 between
   * frames): a hint for sizing the next read, never a limit.
   */
  get bytesExpected(): number {
    return this.#inboundEnds() ? 0 : this.#decoder.bytesExpected;
  }

  /**
   * The first byte (FIN, RSV and opcode bits) of the next frame once it
   * is buffered and not yet decoded; -1 otherwise, and once nothing more
   * is decoded. A look ahead, say at whether a close comes next.
   */
  get nextHeaderByte(): number {
    return this.#inboundEnds() ? -1 : this.#decoder.nextHeaderByte;
  }

  /**
   * Pass received bytes in, or `null` at end of stream. End of stream
   * before a close frame arrived yields `CloseConnection` with 1006 (RFC
   * 6455 §7.1.5), after the events of the bytes that came before it; after
   * a close frame it just moves to CLOSED. Data after CLOSED is a
   * `LocalProtocolError`; data after the peer's close or a protocol error
   * is ignored.
   *
   * @param data The bytes received (the connection keeps them), or `null`.
   * @throws {TypeError} When the data is not a `Uint8Array` (nor `null`).
   * @throws {LocalProtocolError} When data comes after the state is CLOSED.
   */
  receiveData(data: Uint8Array | null): void {
    // "Nothing yet" no longer holds: the bytes, or the end, may make one.
    if (this.#peeked === null) this.#peeked = undefined;
    if (data === null) {
      this.#streamEnded = true;
      this.#state = ConnectionState.CLOSED;
      return;
    }
    if (this.#state === ConnectionState.CLOSED) {
      throw new LocalProtocolError("The connection is closed: no more data can be received");
    }
    // The decoder checks the type of what it takes; what is ignored, here.
    if (this.#inboundEnds()) checkReceivedBytes(data);
    else this.#decoder.receiveBytes(data);
  }

  /**
   * The events the received bytes make up. Yields what the buffered bytes
   * allow and stops; call again after more `receiveData()`.
   *
   * @returns A generator of events.
   */
  *events(): Generator<ConnectionEvent, void> {
    let event;
    while ((event = this.nextEvent()) !== null) yield event;
  }

  /**
   * The next event the received bytes make up, or `null` until more
   * arrive: {@linkcode events} one at a time, without a generator object
   * per call (what a driver's loop over every read wants).
   *
   * @example
   * ```ts
   * import * as ws from "./mod.ts";
   * const client = new ws.Connection(ws.ConnectionType.CLIENT);
   * const server = new ws.Connection(ws.ConnectionType.SERVER);
   * server.receiveData(client.send(new ws.TextMessage({ data: "hi" })));
   * const event = server.nextEvent();
   * if (!(event instanceof ws.TextMessage && event.data === "hi")) throw new Error("Example failed");
   * if (server.nextEvent() !== null) throw new Error("Example failed");
   * ```
   *
   * @returns The event, or `null`.
   */
  nextEvent(): ConnectionEvent | null {
    const event = this.#peeked === undefined ? this.#readEvent() : this.#peeked;
    this.#peeked = undefined;
    // Every close the engine yields ends what it reads: the peer's, a
    // failure standing in for one (§7.1.7), or the end of the stream.
    if (event instanceof CloseConnection) this.#endInbound();
    return event;
  }

  /**
   * The event {@linkcode nextEvent} returns next, without taking it: the
   * state does not move until it is taken. So a driver can see that the
   * peer's close, or a failure (a reserved opcode, invalid UTF-8 in a
   * text message), comes next, and let the application answer the
   * messages before it while the connection is still OPEN, as a loop over
   * `events()` would.
   *
   * @example A failure behind a message waits its turn
   * ```ts
   * import * as ws from "./mod.ts";
   * const client = new ws.FrameEncoder(ws.ConnectionType.CLIENT);
   * const server = new ws.Connection(ws.ConnectionType.SERVER);
   * server.receiveData(client.encodeData("hello", true));
   * // A text frame holding 0xff, masked with a zero key: never UTF-8.
   * server.receiveData(new Uint8Array([0x81, 0x81, 0, 0, 0, 0, 0xff]));
   * const hello = server.nextEvent();
   * if (!(hello instanceof ws.TextMessage)) throw new Error("Example failed");
   * const next = server.peekEvent();
   * if (!(next instanceof ws.CloseConnection && next.code === 1007)) throw new Error("Example failed");
   * server.send(new ws.TextMessage({ data: hello.data })); // still OPEN
   * if (server.nextEvent() !== next) throw new Error("Example failed");
   * if (server.state !== ws.ConnectionState.REMOTE_CLOSING) throw new Error("Example failed");
   * ```
   *
   * @returns The next event, or `null` until more bytes arrive.
   */
  peekEvent(): ConnectionEvent | null {
    if (this.#peeked === undefined) this.#peeked = this.#readEvent();
    return this.#peeked;
  }

  // Once a close is peeked, nothing after it is decoded or kept.
  #inboundEnds(): boolean {
    return this.#inboundClosed || this.#peeked instanceof CloseConnection;
  }

  #readEvent(): ConnectionEvent | null {
    if (this.#inboundEnds()) return null;
    let event: ConnectionEvent | null;
    try {
      event = this.#decodeEvent();
    } catch (error) {
      if (
        !(error instanceof RemoteProtocolError) || !(error.eventHint instanceof CloseConnection)
      ) {
        throw error;
      }
      // §7.1.7: fail the connection, as if the peer had sent that close.
      return error.eventHint;
    }
    if (event !== null || !this.#streamEnded) return event;
    // §7.1.5: 1006 is the close code only when no close frame arrived;
    // after the peer's close (or a failure already reported) the end of
    // the stream just ends the connection.
    return new CloseConnection({ code: CloseReason.ABNORMAL_CLOSURE });
  }

  #decodeEvent(): ConnectionEvent | null {
    const frame = this.#decoder.processBuffer();
    if (frame === null) return null;
    switch (frame.opcode) {
      case Opcode.TEXT:
      case Opcode.BINARY:
      case Opcode.CONTINUATION: {
        const data = this.#messages.processFrame(frame);
        const frameFinished = frame.frameFinished;
        const messageFinished = frameFinished && frame.messageFinished;
        // Literal options, no spread and no intermediate record: the event
        // and its data are the only allocations a frame costs beyond the
        // decoder's (bench/heap_growth.ts).
        return typeof data === "string"
          ? new TextMessage({ data, frameFinished, messageFinished })
          : new BytesMessage({ data, frameFinished, messageFinished });
      }
      case Opcode.PING:
        return new Ping({ payload: this.#messages.processControl(frame) });
      case Opcode.PONG:
        return new Pong({ payload: this.#messages.processControl(frame) });
      case Opcode.CLOSE: {
        const { code, reason } = parseClosePayload(this.#messages.processControl(frame));
        return new CloseConnection({ code, reason });
      }
      default:
        return assertNever(frame.opcode);
    }
  }

  // Nothing more is read after the peer's close (or a failure standing in
  // for one); the closing handshake is over if our close is already out.
  #endInbound(): void {
    this.#inboundClosed = true;
    if (this.#streamEnded) return; // over already: CLOSED
    this.#state = this.#state === ConnectionState.LOCAL_CLOSING
      ? ConnectionState.CLOSED
      : ConnectionState.REMOTE_CLOSING;
  }

  /**
   * Turn an event into bytes to write. Messages need the OPEN state; pings
   * and pongs OPEN or LOCAL_CLOSING (RFC 6455 §5.5.3: a ping is answered
   * until the peer's close arrives, our own close notwithstanding; §5.5.1
   * bars only data frames after it); a close is allowed in OPEN (it starts
   * the closing handshake) and REMOTE_CLOSING (it finishes it).
   *
   * @param event The event to send.
   * @returns The bytes to write to the peer: yours to keep, but a view (small frames
   *   share their buffer with other frames), so write the view, not its `buffer`.
   */
  send(event: Event): Uint8Array {
    if (typeof event !== "object" || event === null) {
      throw wrongType("send() takes an event", event);
    }
    const state = this.#state;
    if (event instanceof Ping || event instanceof Pong) {
      if (state !== ConnectionState.OPEN && state !== ConnectionState.LOCAL_CLOSING) {
        throw new LocalProtocolError(
          `Cannot send ${event.constructor.name} in state ${state}: only OPEN and LOCAL_CLOSING do`,
        );
      }
      const opcode = event instanceof Ping ? Opcode.PING : Opcode.PONG;
      return this.#encoder.encodeControl(opcode, event.payload);
    }
    if (event instanceof CloseConnection) {
      if (state !== ConnectionState.OPEN && state !== ConnectionState.REMOTE_CLOSING) {
        throw new LocalProtocolError(`Cannot send a close in state ${state}`);
      }
      const bytes = this.#encoder.encodeClose(event.code, event.reason);
      this.#state = state === ConnectionState.REMOTE_CLOSING
        ? ConnectionState.CLOSED
        : ConnectionState.LOCAL_CLOSING;
      return bytes;
    }
    if (state !== ConnectionState.OPEN) {
      throw new LocalProtocolError(
        `Cannot send ${event.constructor.name} in state ${state}: only OPEN carries messages`,
      );
    }
    if (event instanceof TextMessage || event instanceof BytesMessage) {
      // The encoder takes the type from the data: a mismatch would send
      // the other type without a word.
      const text = event instanceof TextMessage;
      if (text !== (typeof event.data === "string")) {
        const expected = text
          ? "A TextMessage's data is a string"
          : "A BytesMessage's data is a Uint8Array";
        throw wrongType(expected, event.data);
      }
      return this.#encoder.encodeData(event.data, event.messageFinished);
    }
    throw new LocalProtocolError(
      `Cannot send ${event.constructor.name} on an open connection: the handshake is over`,
    );
  }
}

/** Options of {@linkcode WSConnection}. */
export interface WSConnectionOptions {
  /** Limits; see {@linkcode Limits} for the defaults. */
  limits?: Partial<Limits>;
}

/**
 * A whole WebSocket connection, from the first byte of the opening
 * handshake (RFC 6455 §4) to the end of the closing handshake (§7).
 *
 * A server receives a `Request` event and answers with `AcceptConnection`
 * or `RejectConnection`; a client sends a `Request` and receives
 * `AcceptConnection` or `RejectConnection` and `RejectData`. After that it
 * behaves as a {@linkcode Connection}. A bad handshake request throws a
 * `RemoteProtocolError` whose `eventHint` is the HTTP response to send.
 *
 * @example A server and a client talking in memory
 * ```ts
 * import * as ws from "./mod.ts";
 * const server = new ws.WSConnection(ws.ConnectionType.SERVER);
 * const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
 * server.receiveData(client.send(new ws.Request({ host: "localhost", target: "/" })));
 * for (const event of server.events()) {
 *   if (event instanceof ws.Request) client.receiveData(server.send(new ws.AcceptConnection()));
 * }
 * if (!([...client.events()][0] instanceof ws.AcceptConnection)) throw new Error("Example failed");
 * server.receiveData(client.send(new ws.TextMessage({ data: "hello" })));
 * const [message] = server.events();
 * if (!(message instanceof ws.TextMessage && message.data === "hello")) throw new Error("Example failed");
 * ```
 */
export class WSConnection {
  readonly #type: ConnectionType;
  readonly #limits: Readonly<Limits>;
  // Dropped once the connection is open and its last event was taken: it
  // holds the request (its headers) and parsing state no open connection
  // needs, which idle connections would otherwise keep for their lifetime.
  #handshake: Handshake | null;
  #connection: Connection | null = null;
  #extensions: readonly Extension[] = [];

  /**
   * Make a connection for one end.
   *
   * @param type Which end this is.
   * @param options Limits.
   */
  constructor(type: ConnectionType, options: WSConnectionOptions = {}) {
    this.#type = type;
    this.#limits = resolveLimits(options.limits);
    this.#handshake = new Handshake(type, { limits: this.#limits });
  }

  /** Which end of the connection this is. */
  get type(): ConnectionType {
    return this.#type;
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#connection?.state ?? this.#handshake!.state;
  }

  /** The extensions negotiated in the handshake (empty before it completes). */
  get extensions(): readonly Extension[] {
    return this.#extensions;
  }

  /**
   * Bytes of the frame being read that have not arrived yet (0 between
   * frames and during the handshake): a hint for sizing the next read.
   */
  get bytesExpected(): number {
    return this.#connection?.bytesExpected ?? 0;
  }

  /**
   * The first byte (FIN, RSV and opcode bits) of the next frame once it
   * is buffered and not yet decoded; -1 otherwise (and during the
   * handshake). A look ahead, say at whether a close comes next.
   */
  get nextHeaderByte(): number {
    return this.#connection?.nextHeaderByte ?? -1;
  }

  /**
   * Pass received bytes in, or `null` at end of stream. During the
   * handshake a bad request or response throws here, not from
   * {@linkcode WSConnection.events}; once open, the peer's protocol errors
   * are `CloseConnection` events, as in {@linkcode Connection.receiveData}.
   * The events of what came before the error in the same bytes can still
   * be taken after a throw: a refusal whose body turns out malformed still
   * shows its `RejectConnection` (and the body so far), as it would had
   * the bytes come in pieces.
   *
   * @param data The bytes received (the connection keeps them), or `null`.
   * @throws {RemoteProtocolError} When the peer's request or response is
   *   bad; a server's error carries the `RejectConnection` to answer with.
   * @throws {TypeError} When the data is not a `Uint8Array` (nor `null`).
   * @throws {LocalProtocolError} When data comes after an open connection
   *   is CLOSED. Bytes after a refusal or a failed handshake are dropped: a
   *   refused peer may still be sending, and nobody reads it.
   */
  receiveData(data: Uint8Array | null): void {
    if (this.#connection !== null) {
      this.#connection.receiveData(data);
      return;
    }
    if (data !== null) checkReceivedBytes(data);
    this.#handshake!.receiveData(data);
    this.#openIfUpgraded();
  }

  /**
   * The events the received bytes make up: handshake events first, then
   * frames once the connection is open.
   *
   * @returns A generator of events.
   */
  *events(): Generator<Event, void> {
    let event;
    while ((event = this.nextEvent()) !== null) yield event;
  }

  /**
   * The next event, or `null` until more bytes arrive: {@linkcode events}
   * one at a time, without a generator object per call.
   *
   * @example
   * ```ts
   * import * as ws from "./mod.ts";
   * const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
   * const server = new ws.WSConnection(ws.ConnectionType.SERVER);
   * server.receiveData(client.send(new ws.Request({ host: "example.com", target: "/" })));
   * if (!(server.nextEvent() instanceof ws.Request)) throw new Error("Example failed");
   * if (server.nextEvent() !== null) throw new Error("Example failed");
   * ```
   *
   * @returns The event, or `null`.
   */
  nextEvent(): Event | null {
    if (this.#handshake !== null) {
      const event = this.#handshake.nextEvent();
      if (event !== null || this.#connection === null) return event;
      this.#handshake = null;
    }
    return this.#connection?.nextEvent() ?? null;
  }

  /**
   * The event {@linkcode WSConnection.nextEvent} returns next, without
   * taking it; see {@linkcode Connection.peekEvent}. During the handshake
   * the state moves when the response is parsed, as in wsproto, not when
   * its event is taken: a client is OPEN (or CLOSED after a refusal) with
   * its `AcceptConnection` (or `RejectConnection`) still to take.
   *
   * @example
   * ```ts
   * import * as ws from "./mod.ts";
   * const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
   * const server = new ws.WSConnection(ws.ConnectionType.SERVER);
   * server.receiveData(client.send(new ws.Request({ host: "example.com", target: "/" })));
   * const request = server.peekEvent();
   * if (!(request instanceof ws.Request && server.nextEvent() === request)) {
   *   throw new Error("Example failed");
   * }
   * ```
   *
   * @returns The event, or `null`.
   */
  peekEvent(): Event | null {
    if (this.#handshake !== null) {
      const event = this.#handshake.peekEvent();
      if (event !== null || this.#connection === null) return event;
    }
    return this.#connection?.peekEvent() ?? null;
  }

  /**
   * Turn an event into bytes to write.
   *
   * @param event The event to send.
   * @returns The bytes to write to the peer, a view (small frames share their
   *   buffer with other frames): write the view, not its `buffer`.
   */
  send(event: Event): Uint8Array {
    if (this.#connection !== null) return this.#connection.send(event);
    if (typeof event !== "object" || event === null) {
      throw wrongType("send() takes an event", event);
    }
    if (
      !(event instanceof Request || event instanceof AcceptConnection ||
        event instanceof RejectConnection || event instanceof RejectData)
    ) {
      throw new LocalProtocolError(
        `Cannot send ${event.constructor.name} before the handshake completes`,
      );
    }
    const bytes = this.#handshake!.send(event);
    this.#openIfUpgraded();
    return bytes;
  }

  #openIfUpgraded(): void {
    const handshake = this.#handshake!;
    if (this.#connection !== null || handshake.state !== ConnectionState.OPEN) return;
    this.#extensions = handshake.extensions;
    this.#connection = new Connection(this.#type, {
      extensions: this.#extensions,
      trailingData: handshake.takeTrailingData(),
      limits: this.#limits,
    });
  }
}

function assertNever(value: never): never {
  throw new TypeError(`Unexpected value ${String(value)}`);
}
