/**
 * The events: the whole vocabulary between this module and its user. Every
 * event is plain data; `WSConnection.events()` yields them and
 * `WSConnection.send()` takes them.
 *
 * @module
 */

import type { Extension } from "./extensions.ts";

/** A list of HTTP header fields, in order, names as received or to send. */
export type Headers = readonly (readonly [name: string, value: string])[];

const EMPTY_BYTES = new Uint8Array(0);

/** Options of {@linkcode Request}. */
export interface RequestOptions {
  /**
   * The `Host` header; on a server, the authority of an absolute-form
   * target (`GET ws://example.com/chat`) in its place, which RFC 9112
   * §3.2.2 makes the one an origin server uses.
   */
  host: string;
  /** The request target, such as `/chat?room=1`. */
  target: string;
  /** Subprotocols offered, in order of preference. */
  subprotocols?: readonly string[];
  /**
   * Extensions: on a client, the `Extension` objects to offer; on a server,
   * the offers received (one string per comma-separated element).
   */
  extensions?: readonly (Extension | string)[];
  /** Headers to add (client), or every header received (server). */
  extraHeaders?: Headers;
}

/**
 * The opening handshake request (RFC 6455 §4.1). A server receives it from
 * `events()`; a client sends it to start the handshake.
 *
 * @example A client starting the handshake
 * ```ts
 * import { ConnectionType, Request, WSConnection } from "./mod.ts";
 * const client = new WSConnection(ConnectionType.CLIENT);
 * const bytes = client.send(new Request({ host: "example.com", target: "/chat" }));
 * if (!(new TextDecoder().decode(bytes).startsWith("GET /chat HTTP/1.1\r\n"))) throw new Error("Example failed");
 * ```
 */
export class Request {
  /**
   * The `Host` header; on a server, the authority of an absolute-form
   * target in its place (RFC 9112 §3.2.2).
   */
  readonly host: string;
  /** The request target. */
  readonly target: string;
  /** Subprotocols offered, in order. */
  readonly subprotocols: readonly string[];
  /** Extensions offered (see {@linkcode RequestOptions.extensions}). */
  readonly extensions: readonly (Extension | string)[];
  /** Headers to add (client), or every header received (server). */
  readonly extraHeaders: Headers;

  /**
   * Make a request event.
   *
   * @param options The request's fields.
   */
  constructor(options: RequestOptions) {
    this.host = options.host;
    this.target = options.target;
    this.subprotocols = options.subprotocols ?? [];
    this.extensions = options.extensions ?? [];
    this.extraHeaders = options.extraHeaders ?? [];
  }
}

/** Options of {@linkcode AcceptConnection}. */
export interface AcceptConnectionOptions {
  /** The subprotocol chosen from those the client offered, or `null`. */
  subprotocol?: string | null;
  /** Extensions the server supports; negotiation picks from the client's offers. */
  extensions?: readonly Extension[];
  /** Headers to add to the 101 response (server), or every header received (client). */
  extraHeaders?: Headers;
}

/**
 * The server accepts the handshake (RFC 6455 §4.2.2). A server sends it; a
 * client receives it once the 101 response checks out.
 *
 * @example Accepting with a subprotocol
 * ```ts
 * import { AcceptConnection } from "./mod.ts";
 * const accept = new AcceptConnection({ subprotocol: "chat" });
 * if (accept.subprotocol !== "chat") throw new Error("Example failed");
 * ```
 */
export class AcceptConnection {
  /** The chosen subprotocol, or `null`. */
  readonly subprotocol: string | null;
  /** Supported extensions (server, sending) or the ones negotiated (client, receiving). */
  readonly extensions: readonly Extension[];
  /** Headers to add (server), or every header of the response (client). */
  readonly extraHeaders: Headers;

  /**
   * Make an accept event.
   *
   * @param options The response's fields.
   */
  constructor(options: AcceptConnectionOptions = {}) {
    this.subprotocol = options.subprotocol ?? null;
    this.extensions = options.extensions ?? [];
    this.extraHeaders = options.extraHeaders ?? [];
  }
}

/** Options of {@linkcode RejectConnection}. */
export interface RejectConnectionOptions {
  /**
   * The HTTP status, 400 unless given: 200 to 599 when sent, and no body
   * with 204 or 304.
   */
  statusCode?: number;
  /** The response headers. */
  headers?: Headers;
  /**
   * Whether `RejectData` events carrying a body follow. Without a
   * `Content-Length` header the body is sent chunked.
   */
  hasBody?: boolean;
  /**
   * Sending only: a whole body to send with the response, with its
   * `Content-Length`; implies `hasBody` and finishes the response.
   */
  body?: string | Uint8Array;
}

/**
 * The handshake is refused with an HTTP response other than 101. A server
 * sends it; a client receives it, followed by `RejectData` events carrying
 * the body when `hasBody` is true.
 *
 * @example Refusing with a body
 * ```ts
 * import { RejectConnection } from "./mod.ts";
 * const reject = new RejectConnection({ statusCode: 403, body: "Forbidden\n" });
 * if (!(reject.hasBody && reject.statusCode === 403)) throw new Error("Example failed");
 * ```
 */
export class RejectConnection {
  /** The HTTP status code. */
  readonly statusCode: number;
  /** The response headers. */
  readonly headers: Headers;
  /** Whether a body follows (in `body` or in `RejectData` events). */
  readonly hasBody: boolean;
  /** A whole body to send (sending side only), or `null`. */
  readonly body: Uint8Array | null;

  /**
   * Make a reject event.
   *
   * @param options The response's fields.
   */
  constructor(options: RejectConnectionOptions = {}) {
    this.statusCode = options.statusCode ?? 400;
    this.headers = options.headers ?? [];
    this.body = typeof options.body === "string"
      ? new TextEncoder().encode(options.body)
      : options.body ?? null;
    this.hasBody = this.body !== null || (options.hasBody ?? false);
  }
}

/** Options of {@linkcode RejectData}. */
export interface RejectDataOptions {
  /** A piece of the rejection's body. */
  data: Uint8Array;
  /** Whether this is the last piece, `true` unless given. */
  bodyFinished?: boolean;
}

/**
 * A piece of the body of a rejection response.
 *
 * @example The last piece of a body
 * ```ts
 * import { RejectData } from "./mod.ts";
 * const piece = new RejectData({ data: new TextEncoder().encode("Go away") });
 * if (!piece.bodyFinished) throw new Error("Example failed");
 * ```
 */
export class RejectData {
  /** The bytes of this piece. */
  readonly data: Uint8Array;
  /** Whether the body ends with this piece. */
  readonly bodyFinished: boolean;

  /**
   * Make a body piece.
   *
   * @param options The piece.
   */
  constructor(options: RejectDataOptions) {
    this.data = options.data;
    this.bodyFinished = options.bodyFinished ?? true;
  }
}

/** Options of {@linkcode CloseConnection}. */
export interface CloseConnectionOptions {
  /** The close code (RFC 6455 §7.4). */
  code: number;
  /** The reason, at most 123 bytes of UTF-8 on the wire. */
  reason?: string;
}

/**
 * A close frame received, or one to send (RFC 6455 §5.5.1). Received with
 * code 1005 when the frame had no code, and 1006 when the stream ended
 * without a close frame.
 *
 * @example Answering a close
 * ```ts
 * import { CloseConnection } from "./mod.ts";
 * const received = new CloseConnection({ code: 1001, reason: "bye" });
 * if (received.response().code !== 1001) throw new Error("Example failed");
 * ```
 */
export class CloseConnection {
  /** The close code. */
  readonly code: number;
  /** The reason text, possibly empty. */
  readonly reason: string;

  /**
   * Make a close event.
   *
   * @param options The code and reason.
   */
  constructor(options: CloseConnectionOptions) {
    this.code = options.code;
    this.reason = options.reason ?? "";
  }

  /**
   * The close to send back: RFC 6455 §5.5.1 asks the answer to echo the
   * status code received.
   *
   * @returns A `CloseConnection` with the same code and reason.
   */
  response(): CloseConnection {
    return new CloseConnection({ code: this.code, reason: this.reason });
  }
}

/** Options of {@linkcode Message}. */
export interface MessageOptions<T> {
  /** The message data, or the part of it this event carries. */
  data: T;
  /** Whether this event ends a frame, `true` unless given. */
  frameFinished?: boolean;
  /** Whether this event ends the message, `true` unless given. */
  messageFinished?: boolean;
}

/**
 * A data message, or a part of one: large frames and fragmented messages
 * arrive as several events, the last with `messageFinished` true. Sending
 * with `messageFinished: false` starts or continues a fragmented message.
 *
 * @typeParam T `string` for text, `Uint8Array` for binary.
 *
 * @example Checking for the last part
 * ```ts
 * import { TextMessage } from "./mod.ts";
 * const part = new TextMessage({ data: "hel", messageFinished: false });
 * if (!(!part.messageFinished && part.frameFinished)) throw new Error("Example failed");
 * ```
 */
export abstract class Message<T extends string | Uint8Array> {
  /** The data of this event. */
  readonly data: T;
  /** Whether this event ends a frame. */
  readonly frameFinished: boolean;
  /** Whether this event ends the message. */
  readonly messageFinished: boolean;

  /**
   * Make a message event.
   *
   * @param options The data and flags.
   */
  constructor(options: MessageOptions<T>) {
    this.data = options.data;
    this.frameFinished = options.frameFinished ?? true;
    this.messageFinished = options.messageFinished ?? true;
  }
}

/**
 * A text message (opcode 0x1), or part of one.
 *
 * @example Sending text
 * ```ts
 * import { TextMessage } from "./mod.ts";
 * const message = new TextMessage({ data: "hello" });
 * if (message.data !== "hello") throw new Error("Example failed");
 * ```
 */
export class TextMessage extends Message<string> {}

/**
 * A binary message (opcode 0x2), or part of one.
 *
 * @example Sending bytes
 * ```ts
 * import { BytesMessage } from "./mod.ts";
 * const message = new BytesMessage({ data: new Uint8Array([1, 2, 3]) });
 * if (message.data.length !== 3) throw new Error("Example failed");
 * ```
 */
export class BytesMessage extends Message<Uint8Array> {}

/** Options of {@linkcode Ping} and {@linkcode Pong}. */
export interface ControlOptions {
  /** Up to 125 bytes of application data. */
  payload?: Uint8Array;
}

/**
 * A ping (RFC 6455 §5.5.2).
 *
 * @example Answering a ping
 * ```ts
 * import { Ping } from "./mod.ts";
 * const ping = new Ping({ payload: new Uint8Array([7]) });
 * if (ping.response().payload[0] !== 7) throw new Error("Example failed");
 * ```
 */
export class Ping {
  /** The application data. */
  readonly payload: Uint8Array;

  /**
   * Make a ping.
   *
   * @param options The payload, empty unless given.
   */
  constructor(options: ControlOptions = {}) {
    this.payload = options.payload ?? EMPTY_BYTES;
  }

  /**
   * The pong to send back, with the same payload (RFC 6455 §5.5.3).
   *
   * @returns A `Pong` echoing this ping's payload.
   */
  response(): Pong {
    return new Pong({ payload: this.payload });
  }
}

/**
 * A pong (RFC 6455 §5.5.3): an answer to a ping, or an unsolicited heartbeat.
 *
 * @example An empty pong
 * ```ts
 * import { Pong } from "./mod.ts";
 * if (new Pong().payload.length !== 0) throw new Error("Example failed");
 * ```
 */
export class Pong {
  /** The application data. */
  readonly payload: Uint8Array;

  /**
   * Make a pong.
   *
   * @param options The payload, empty unless given.
   */
  constructor(options: ControlOptions = {}) {
    this.payload = options.payload ?? EMPTY_BYTES;
  }
}

/** Every event the module yields or accepts. */
export type Event =
  | Request
  | AcceptConnection
  | RejectConnection
  | RejectData
  | CloseConnection
  | TextMessage
  | BytesMessage
  | Ping
  | Pong;
