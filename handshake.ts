/**
 * The opening handshake (RFC 6455 §4) as a sans-IO state machine: bytes in,
 * events out, bytes to write back. `WSConnection` wraps it until the
 * connection is open, then hands the bytes after the header block to the
 * framing layer.
 *
 * It also checks a Fetch `Request` for `Deno.serve` with the same code
 * ({@linkcode checkUpgradeRequest}, {@linkcode upgradeOptions}). `Deno.serve`
 * cannot hand over the raw bytes after a 101, so on that path framing stays
 * with Deno's native WebSocket and only the handshake checks are ours.
 *
 * @module
 */

import { base64, concatBytes } from "./_bytes.ts";
import {
  AcceptConnection,
  type Headers,
  RejectConnection,
  RejectData,
  Request as WsRequest,
} from "./events.ts";
import { LocalProtocolError, RemoteProtocolError, wrongType } from "./errors.ts";
import type { Extension } from "./extensions.ts";
import {
  BodyReader,
  HeadReader,
  HttpError,
  isBodiless,
  isFieldValue,
  isHost,
  isInterim,
  isRequestTarget,
  isToken,
  parseRequestHead,
  parseResponseHead,
  responseBodyFraming,
  splitList,
} from "./http1.ts";
import { type Limits, resolveLimits } from "./limits.ts";
import { sha1 } from "./sha1.ts";
import { ConnectionState, ConnectionType } from "./state.ts";

/** RFC 6455 §1.3: the GUID appended to the key before hashing. */
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** RFC 6455 §4.1 item 9: the only protocol version this module speaks. */
const WEBSOCKET_VERSION = "13";
/** RFC 6455 §4.1 item 7: a key is 16 bytes in base64, so 22 characters and "==". */
const KEY = /^[A-Za-z0-9+/]{22}==$/;
/** RFC 6455 §9.1: extension = extension-token *( ";" extension-param ), OWS allowed. */
const EXTENSION_ELEMENT = (() => {
  const token = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
  const quoted = '"(?:[^"\\\\]|\\\\.)*"';
  const param = `[ \\t]*;[ \\t]*${token}(?:[ \\t]*=[ \\t]*(?:${token}|${quoted}))?`;
  return new RegExp(`^${token}(?:${param})*$`);
})();

const ENCODER = new TextEncoder();

const PLAIN_TEXT: readonly [string, string] = ["Content-Type", "text/plain; charset=utf-8"];
/** RFC 9110 §15.5.22: a 426 names the protocol to upgrade to. */
const UPGRADE_HEADERS: Headers = [["Upgrade", "websocket"], ["Connection", "Upgrade"]];

/** Reason phrases of the statuses a rejection is likely to use (RFC 9110 §15). */
const REASON_PHRASES: Readonly<Record<number, string>> = {
  200: "OK",
  301: "Moved Permanently",
  302: "Found",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  414: "URI Too Long",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

type HandshakeEvent = WsRequest | AcceptConnection | RejectConnection | RejectData;

/**
 * Which events each role may send in each state; `send()` refuses the rest
 * with a `LocalProtocolError`. (A client's `Request` and a server's
 * `AcceptConnection` have one more condition each, checked where they are
 * sent: only one request, and only once a request arrived.)
 */
const SENDABLE: Readonly<Record<ConnectionType, Partial<Record<ConnectionState, string[]>>>> = {
  [ConnectionType.CLIENT]: {
    [ConnectionState.CONNECTING]: ["Request"],
  },
  [ConnectionType.SERVER]: {
    [ConnectionState.CONNECTING]: ["AcceptConnection", "RejectConnection"],
    [ConnectionState.REJECTING]: ["RejectData"],
  },
};

/** Options of {@linkcode Handshake}. */
export interface HandshakeOptions {
  /** Limits to change; `maxHeaderBytes` and `maxHeaderCount` apply here. */
  limits?: Partial<Limits>;
  /**
   * Client only: the 16 bytes of the `Sec-WebSocket-Key`, for replaying a
   * recorded handshake. Leave it out anywhere else: RFC 6455 §4.1 wants a
   * fresh random nonce per connection, which is the default.
   */
  key?: Uint8Array;
}

/**
 * The token a server answers a `Sec-WebSocket-Key` with (RFC 6455 §4.2.2
 * item 5.4): the base64 of the SHA-1 of the key and a fixed GUID.
 *
 * @param key The `Sec-WebSocket-Key` value, as sent.
 * @returns The `Sec-WebSocket-Accept` value.
 *
 * @example The example of RFC 6455 §1.3
 * ```ts
 * import { acceptToken } from "./handshake.ts";
 * if (acceptToken("dGhlIHNhbXBsZSBub25jZQ==") !== "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") throw new Error("Example failed");
 * ```
 */
export function acceptToken(key: string): string {
  return base64(sha1(ENCODER.encode(key + ACCEPT_GUID)));
}

/**
 * The opening handshake of one connection, either side. A server feeds the
 * request's bytes to {@linkcode Handshake.receiveData}, gets a `Request`
 * from {@linkcode Handshake.events}, and answers with
 * `send(new AcceptConnection())` or `send(new RejectConnection())`. A
 * client sends a `Request` and reads `AcceptConnection`, or
 * `RejectConnection` and `RejectData`, from the response.
 *
 * A bad request throws a `RemoteProtocolError` whose `eventHint` is the
 * `RejectConnection` to send (the state stays CONNECTING so it can be
 * sent); a bad response throws one without a hint and the state becomes
 * CLOSED. The end of the stream between messages makes the state CLOSED
 * without an error; inside a head it is a bad request or response like
 * any other (a server answers it with 400).
 *
 * @example A client and a server in memory
 * ```ts
 * import { Handshake } from "./handshake.ts";
 * import { AcceptConnection, Request } from "./events.ts";
 * import { ConnectionState, ConnectionType } from "./state.ts";
 *
 * const client = new Handshake(ConnectionType.CLIENT);
 * const server = new Handshake(ConnectionType.SERVER);
 * server.receiveData(client.send(new Request({ host: "example.com", target: "/chat" })));
 * const [request] = [...server.events()];
 * if (!(request instanceof Request && request.target === "/chat")) throw new Error("Example failed");
 * client.receiveData(server.send(new AcceptConnection()));
 * const [accept] = [...client.events()];
 * if (!(accept instanceof AcceptConnection)) throw new Error("Example failed");
 * if (!(client.state === ConnectionState.OPEN && server.state === ConnectionState.OPEN)) throw new Error("Example failed");
 * ```
 */
export class Handshake {
  readonly #type: ConnectionType;
  readonly #limits: Limits;
  readonly #chosenKey: Uint8Array | null;
  #state = ConnectionState.CONNECTING;
  #queue: HandshakeEvent[] = [];
  // Reads the head until it is complete; null once it is.
  #head: HeadReader | null;
  // Server: the request received. Client: the request sent.
  #request: WsRequest | null = null;
  // Server: the client's Sec-WebSocket-Key. Client: the key sent.
  #key = "";
  // Server: why the request was refused, thrown again if more bytes come.
  #error: RemoteProtocolError | null = null;
  // Client: the extensions whose offers were sent.
  #offered: Extension[] = [];
  #extensions: readonly Extension[] = [];
  #trailing: Uint8Array[] = [];
  // Client, REJECTING: decodes the response body.
  #body: BodyReader | null = null;
  // Server, REJECTING: how RejectData is written: chunked, or bytes still owed.
  #sendChunked = false;
  #sendRemaining = 0;

  /**
   * Make the handshake of one connection.
   *
   * @param type Which side this is.
   * @param options Limits on the header block.
   */
  constructor(type: ConnectionType, options: HandshakeOptions = {}) {
    this.#type = type;
    this.#limits = resolveLimits(options.limits);
    if (options.key !== undefined && options.key.length !== 16) {
      throw new RangeError(`A Sec-WebSocket-Key is 16 bytes, got ${options.key.length}`);
    }
    this.#chosenKey = options.key ?? null;
    this.#head = this.#headReader();
  }

  #headReader(): HeadReader {
    return new HeadReader(
      this.#limits,
      this.#type === ConnectionType.SERVER ? "request" : "response",
    );
  }

  /** Which side this is. */
  get type(): ConnectionType {
    return this.#type;
  }

  /** CONNECTING, then OPEN, or REJECTING and CLOSED, or CLOSED. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Once OPEN: the extensions negotiated (enabled), in the order they apply. */
  get extensions(): readonly Extension[] {
    return this.#extensions;
  }

  /**
   * Once OPEN: takes the bytes received after the header block (frames
   * pipelined behind it), and any received since.
   *
   * @returns The bytes, which are no longer kept here.
   */
  takeTrailingData(): Uint8Array {
    const chunks = this.#trailing;
    this.#trailing = [];
    return concatBytes(chunks);
  }

  /**
   * Feed bytes received from the peer, or `null` when the stream ended.
   *
   * @param data The bytes, or `null` for the end of the stream.
   * @throws {RemoteProtocolError} When the peer's request or response is bad.
   * @throws {LocalProtocolError} When a client receives data before sending its request.
   */
  receiveData(data: Uint8Array | null): void {
    if (data === null) {
      this.#receiveEnd();
      return;
    }
    switch (this.#state) {
      case ConnectionState.CONNECTING:
        if (this.#error !== null) throw this.#error;
        if (this.#type === ConnectionType.CLIENT && this.#request === null) {
          throw new LocalProtocolError("A client must send its Request before receiving data");
        }
        if (this.#head === null) this.#keep(data); // the server waits to accept
        else this.#readHead(data);
        return;
      case ConnectionState.OPEN:
        this.#keep(data);
        return;
      case ConnectionState.REJECTING:
        if (this.#body !== null) this.#readBody(data);
        return;
      default:
        // After a rejection the peer may still be sending; nobody reads it.
        return;
    }
  }

  /**
   * The events the received bytes produced, each yielded once.
   *
   * @returns A generator of the pending events.
   */
  *events(): Generator<WsRequest | AcceptConnection | RejectConnection | RejectData, void> {
    // One at a time, so a caller that stops iterating early loses nothing.
    let event;
    while ((event = this.nextEvent()) !== null) yield event;
  }

  /**
   * The next pending event, or `null` when there is none: {@linkcode events}
   * one at a time, without a generator.
   *
   * @returns The event, or `null`.
   */
  nextEvent(): WsRequest | AcceptConnection | RejectConnection | RejectData | null {
    return this.#queue.shift() ?? null;
  }

  /**
   * The event {@linkcode nextEvent} returns next, left in place.
   *
   * @returns The event, or `null`.
   */
  peekEvent(): WsRequest | AcceptConnection | RejectConnection | RejectData | null {
    return this.#queue[0] ?? null;
  }

  /**
   * The bytes that send an event to the peer.
   *
   * @param event `Request` (client), `AcceptConnection` or `RejectConnection`
   *   (server), then `RejectData` while the rejection has a body to send.
   * @returns The bytes to write.
   * @throws {LocalProtocolError} When the event does not fit the role or state.
   */
  send(event: WsRequest | AcceptConnection | RejectConnection | RejectData): Uint8Array {
    const kind = kindOf(event);
    if (!(SENDABLE[this.#type][this.#state] ?? []).includes(kind)) {
      const role = this.#type === ConnectionType.CLIENT ? "A client" : "A server";
      throw new LocalProtocolError(`${role} cannot send ${kind} in state ${this.#state}`);
    }
    if (event instanceof WsRequest) return this.#sendRequest(event);
    if (event instanceof AcceptConnection) return this.#sendAccept(event);
    if (event instanceof RejectConnection) return this.#sendReject(event);
    return this.#sendRejectData(event);
  }

  // `copy` unless the bytes are already ours: drivers often read into one
  // buffer they reuse.
  #keep(data: Uint8Array, copy = true): void {
    if (data.length > 0) this.#trailing.push(copy ? data.slice() : data);
  }

  #receiveEnd(): void {
    // The bad request's refusal is still to be sent, however the bytes came.
    if (this.#state === ConnectionState.CONNECTING && this.#error !== null) throw this.#error;
    if (this.#state === ConnectionState.REJECTING && this.#body !== null) {
      this.#readBody(null);
      return;
    }
    const truncated = this.#state === ConnectionState.CONNECTING && this.#head !== null &&
      this.#head.bufferedLength > 0;
    // A head cut short is an incomplete message (RFC 9112 §8), and a client
    // must fail the connection on it (RFC 6455 §4.1), as wsproto does; a
    // stream that ends between messages is just closed. A server stays
    // CONNECTING, as for any bad request, so that the 400 the error carries
    // can still reach a peer that only shut its sending side.
    if (truncated) {
      throw this.#fail(new HttpError(400, "The stream ended inside the handshake head"));
    }
    this.#state = ConnectionState.CLOSED;
  }

  #readHead(data: Uint8Array): void {
    let chunk = data;
    while (this.#head !== null) {
      let result;
      try {
        result = this.#head.push(chunk);
      } catch (error) {
        throw this.#fail(error);
      }
      if (result === null) return;
      this.#head = null;
      if (this.#type === ConnectionType.SERVER) {
        this.#receiveRequest(result.head);
        this.#keep(result.rest);
        return;
      }
      chunk = this.#receiveResponse(result.head, result.rest);
    }
  }

  // Turns a parse failure into the error receiveData throws.
  #fail(error: unknown): unknown {
    if (this.#type === ConnectionType.CLIENT) {
      this.#state = ConnectionState.CLOSED;
      if (error instanceof HttpError) {
        return new RemoteProtocolError(`Bad handshake response: ${error.message}`);
      }
      return error;
    }
    if (error instanceof HttpError) error = rejection(error.status, error.message);
    if (error instanceof RemoteProtocolError) this.#error = error;
    return error;
  }

  // ---- Server ----

  #receiveRequest(bytes: Uint8Array): void {
    try {
      const head = parseRequestHead(bytes);
      const { request, key } = validateRequest(head.method, head.target, head.headers);
      this.#request = request;
      this.#key = key;
      this.#queue.push(request);
    } catch (error) {
      throw this.#fail(error);
    }
  }

  #sendAccept(event: AcceptConnection): Uint8Array {
    const request = this.#request;
    if (request === null) {
      throw new LocalProtocolError("A server cannot accept before it has received a Request");
    }
    checkSubprotocol(request.subprotocols, event.subprotocol);
    checkExtraHeaders(event.extraHeaders, "101", "the subprotocol and extensions");
    const headers: [string, string][] = [["Sec-WebSocket-Accept", acceptToken(this.#key)]];
    if (event.subprotocol !== null) headers.push(["Sec-WebSocket-Protocol", event.subprotocol]);
    const { enabled, answers } = negotiate(request.extensions, event.extensions);
    if (answers.length > 0) headers.push(["Sec-WebSocket-Extensions", answers.join(", ")]);
    const bytes = writeHead(
      "HTTP/1.1 101 Switching Protocols",
      UPGRADE_HEADERS,
      headers,
      event.extraHeaders,
    );
    this.#extensions = enabled;
    this.#state = ConnectionState.OPEN;
    return bytes;
  }

  #sendReject(event: RejectConnection): Uint8Array {
    checkRejection(event);
    const status = event.statusCode;
    const headers = [...event.headers];
    const lengths = headers.filter(([name]) => /^content-length$/i.test(name));
    // The server closes the connection after a rejection (RFC 9112 §9.6).
    if (!headers.some(([name]) => /^connection$/i.test(name))) {
      headers.push(["Connection", "close"]);
    }
    const startLine = `HTTP/1.1 ${status} ${REASON_PHRASES[status] ?? ""}`;
    const bodiless = isBodiless(status);
    if (event.body !== null && !bodiless) {
      headers.push(["Content-Length", String(event.body.length)]);
      const head = writeHead(startLine, headers);
      this.#state = ConnectionState.CLOSED;
      return concatBytes([head, event.body]);
    }
    if (!event.hasBody || bodiless) {
      // 204 and 304 are not given Content-Length: 0 (RFC 9110 §8.6).
      if (lengths.length === 0 && !bodiless) {
        headers.push(["Content-Length", "0"]);
      }
      this.#state = ConnectionState.CLOSED;
      return writeHead(startLine, headers);
    }
    const length = lengths[0];
    this.#sendChunked = length === undefined;
    this.#sendRemaining = length === undefined ? 0 : Number(length[1]);
    if (this.#sendChunked) headers.push(["Transfer-Encoding", "chunked"]);
    this.#state = ConnectionState.REJECTING;
    return writeHead(startLine, headers);
  }

  #sendRejectData(event: RejectData): Uint8Array {
    const data = event.data;
    let bytes: Uint8Array;
    if (this.#sendChunked) {
      // RFC 9112 §7.1: an empty chunk would end the body, so none is written.
      const pieces: Uint8Array[] = [];
      if (data.length > 0) {
        pieces.push(
          ENCODER.encode(`${data.length.toString(16)}\r\n`),
          data,
          ENCODER.encode("\r\n"),
        );
      }
      // RFC 9112 §7.1: the last chunk has size zero and no trailers.
      if (event.bodyFinished) pieces.push(ENCODER.encode("0\r\n\r\n"));
      bytes = concatBytes(pieces);
    } else {
      if (data.length > this.#sendRemaining) {
        throw new LocalProtocolError(
          `RejectData of ${data.length} bytes passes the Content-Length by ${
            data.length - this.#sendRemaining
          }`,
        );
      }
      if (event.bodyFinished && data.length < this.#sendRemaining) {
        throw new LocalProtocolError(
          `The body ends ${this.#sendRemaining - data.length} bytes short of its Content-Length`,
        );
      }
      this.#sendRemaining -= data.length;
      bytes = data.slice();
    }
    if (event.bodyFinished) this.#state = ConnectionState.CLOSED;
    return bytes;
  }

  // ---- Client ----

  #sendRequest(event: WsRequest): Uint8Array {
    if (this.#request !== null) {
      throw new LocalProtocolError("A client sends its Request once");
    }
    if (!isRequestTarget(event.target)) {
      throw new LocalProtocolError(`Invalid request target ${JSON.stringify(event.target)}`);
    }
    if (!isHost(event.host) || event.host === "") {
      throw new LocalProtocolError(`Invalid Host ${JSON.stringify(event.host)}: not host[:port]`);
    }
    const offered: Extension[] = [];
    const offers: string[] = [];
    for (const extension of event.extensions) {
      if (typeof extension === "string") {
        throw new LocalProtocolError("A client offers Extension objects, not strings");
      }
      const offer = extension.offer();
      if (offer === null) continue;
      offered.push(extension);
      offers.push(offer);
    }
    const key = base64(this.#chosenKey ?? crypto.getRandomValues(new Uint8Array(16)));
    const headers: [string, string][] = [
      ["Host", event.host],
      ["Upgrade", "websocket"],
      ["Connection", "Upgrade"],
      ["Sec-WebSocket-Key", key],
      ["Sec-WebSocket-Version", WEBSOCKET_VERSION],
    ];
    checkExtraHeaders(event.extraHeaders, "request", "host, subprotocols and extensions");
    if (!Array.isArray(event.subprotocols)) {
      throw wrongType("A request's subprotocols are an array of strings", event.subprotocols);
    }
    if (event.subprotocols.length > 0) {
      const bad = badSubprotocol(event.subprotocols);
      if (bad !== undefined) {
        throw new LocalProtocolError(
          `A subprotocol must be an HTTP token, offered once, not "${bad}"`,
        );
      }
      headers.push(["Sec-WebSocket-Protocol", event.subprotocols.join(", ")]);
    }
    if (offers.length > 0) headers.push(["Sec-WebSocket-Extensions", offers.join(", ")]);
    const bytes = writeHead(`GET ${event.target} HTTP/1.1`, headers, event.extraHeaders);
    this.#request = event;
    this.#key = key;
    this.#offered = offered;
    return bytes;
  }

  // Returns the bytes left to parse as another head (after a 1xx), or an
  // empty array when there are none.
  #receiveResponse(bytes: Uint8Array, rest: Uint8Array): Uint8Array {
    let head;
    try {
      head = parseResponseHead(bytes);
    } catch (error) {
      throw this.#fail(error);
    }
    const status = head.statusCode;
    if (status === 101) {
      try {
        // HTTP/1.0 has no upgrade (RFC 9110 §7.8); its refusals are read.
        if (head.minorVersion === 0) {
          throw new RemoteProtocolError("Bad handshake response: a 101 in HTTP/1.0");
        }
        const accept = this.#checkAccept(head.headers);
        this.#extensions = accept.extensions;
        this.#state = ConnectionState.OPEN;
        this.#queue.push(accept);
      } catch (error) {
        this.#state = ConnectionState.CLOSED;
        throw error;
      }
      this.#keep(rest);
      return new Uint8Array(0);
    }
    if (isInterim(status)) {
      // RFC 9110 §15.2: a client may ignore an unexpected interim response.
      this.#head = this.#headReader();
      return rest;
    }
    let framing;
    try {
      framing = responseBodyFraming(status, head.headers);
    } catch (error) {
      throw this.#fail(error);
    }
    const hasBody = framing.kind !== "none";
    this.#queue.push(new RejectConnection({ statusCode: status, headers: head.headers, hasBody }));
    if (!hasBody) {
      this.#state = ConnectionState.CLOSED;
      return new Uint8Array(0);
    }
    this.#state = ConnectionState.REJECTING;
    this.#body = new BodyReader(framing, { maxTrailerBytes: this.#limits.maxHeaderBytes });
    // A copy: the body's pieces are handed out, and `rest` is a view into
    // the caller's bytes, which a driver reuses.
    if (rest.length > 0) this.#readBody(rest.slice());
    return new Uint8Array(0);
  }

  // RFC 6455 §4.1, the client's checks of the server's 101 response.
  #checkAccept(headers: Headers): AcceptConnection {
    const upgrades = values(headers, "upgrade");
    const connection = values(headers, "connection");
    const accepts = values(headers, "sec-websocket-accept");
    const protocols = values(headers, "sec-websocket-protocol");
    const extensions = values(headers, "sec-websocket-extensions");
    const fail = (message: string) => new RemoteProtocolError(`Bad handshake response: ${message}`);

    if (upgrades.length !== 1 || !equalsLowercase(upgrades[0]!, "websocket")) {
      throw fail("the Upgrade header must be websocket");
    }
    if (!includesLowercase(listOrFail(connection, fail), "upgrade")) {
      throw fail("the Connection header must include upgrade");
    }
    if (accepts.length !== 1 || accepts[0] !== acceptToken(this.#key)) {
      throw fail("the Sec-WebSocket-Accept header does not match the key sent");
    }
    let subprotocol: string | null = null;
    if (protocols.length > 0) {
      subprotocol = protocols[0]!;
      if (protocols.length > 1 || !this.#request!.subprotocols.includes(subprotocol)) {
        throw fail(
          `the server chose subprotocol ${JSON.stringify(protocols.join(", "))}, not offered`,
        );
      }
    }
    const finalized: Extension[] = [];
    for (const element of listOrFail(extensions, fail)) {
      if (!EXTENSION_ELEMENT.test(element)) {
        throw fail(`malformed Sec-WebSocket-Extensions element ${JSON.stringify(element)}`);
      }
      const name = extensionName(element);
      const candidates = this.#offered.filter((offered) => offered.name.toLowerCase() === name);
      if (candidates.length === 0) {
        throw fail(`the server accepted extension ${name}, which was not offered`);
      }
      if (finalized.some((extension) => candidates.includes(extension))) {
        throw fail(`the server accepted extension ${name} twice`);
      }
      finalized.push(finalizeOne(candidates, element));
    }
    return new AcceptConnection({ subprotocol, extensions: finalized, extraHeaders: headers });
  }

  #readBody(data: Uint8Array | null): void {
    const body = this.#body!;
    let pieces;
    try {
      pieces = body.push(data);
    } catch (error) {
      this.#body = null;
      if (error instanceof HttpError && error.bodyPieces.length > 0) {
        this.#queue.push(
          new RejectData({ data: concatBytes(error.bodyPieces), bodyFinished: false }),
        );
      }
      throw this.#fail(error);
    }
    if (pieces.length === 0 && !body.done) return;
    const bytes = concatBytes(pieces);
    this.#queue.push(new RejectData({ data: bytes, bodyFinished: body.done }));
    if (body.done) {
      this.#body = null;
      this.#state = ConnectionState.CLOSED;
    }
  }
}

/**
 * The result of {@linkcode checkUpgradeRequest}: the request as our event,
 * or the response that refuses it.
 */
export type UpgradeCheck =
  | {
    /** The request is a valid WebSocket upgrade. */
    ok: true;
    /** Our event, built from the Fetch request. */
    request: WsRequest;
  }
  | {
    /** The request is not a valid WebSocket upgrade. */
    ok: false;
    /** The rejection: the same status, headers and body as the raw-bytes path. */
    response: globalThis.Response;
  };

/**
 * Check a Fetch request from `Deno.serve` as an opening handshake (RFC 6455
 * §4.2.1), with the same rules and answers as {@linkcode Handshake} applies
 * to raw bytes.
 *
 * On this path Deno writes the 101 and runs the framing itself:
 * `Deno.serve` cannot hand over the raw bytes after a 101, so extensions
 * are not negotiated and frames never pass through this module.
 *
 * The event's `extraHeaders` are the Fetch request's: names in lower case,
 * repeated fields joined with ", ", in Fetch's sorted order.
 *
 * @param request The request `Deno.serve` passed to the handler.
 * @returns The request as our event, or the response refusing it.
 *
 * @example A plain GET is refused with 426
 * ```ts
 * import { checkUpgradeRequest } from "./handshake.ts";
 * const check = checkUpgradeRequest(new Request("http://localhost/chat", { headers: { host: "localhost" } }));
 * if (!(!check.ok && check.response.status === 426)) throw new Error("Example failed");
 * if (!check.ok) await check.response.body?.cancel();
 * ```
 */
export function checkUpgradeRequest(request: globalThis.Request): UpgradeCheck {
  // Fetch lower-cases the names and joins repeated fields with ", ". A
  // missing Host is refused (400) as on raw bytes, not taken from the URL.
  const headers: [string, string][] = [...request.headers];
  try {
    const { authority, target } = splitUrl(request.url);
    const checked = validateRequest(request.method, target, headers, authority);
    return { ok: true, request: checked.request };
  } catch (error) {
    if (!(error instanceof RemoteProtocolError && error.eventHint instanceof RejectConnection)) {
      throw error;
    }
    const reject = error.eventHint;
    const response = new Response(reject.body === null ? null : new Uint8Array(reject.body), {
      status: reject.statusCode,
      statusText: REASON_PHRASES[reject.statusCode] ?? "",
      headers: reject.headers.map(([name, value]) => [name, value]),
    });
    return { ok: false, response };
  }
}

// Deno.serve's `request.url` is the scheme, the Host field and the target as
// they came, or an absolute-form target alone: its authority is the one
// RFC 9112 §3.2.2 has an origin server use either way. Not parsed as a
// URL: a Host that is no host[:port] made that throw where validateRequest
// refuses it with 400, and parsing normalises the path the raw path keeps
// as sent.
function splitUrl(url: string): { authority: string; target: string } {
  const start = ABSOLUTE_START.exec(url);
  const rest = start === null ? url : url.slice(start[0].length);
  return { authority: start?.[1] ?? "", target: rest.startsWith("/") ? rest : `/${rest}` };
}

/**
 * Check the server's choice against a request that
 * {@linkcode checkUpgradeRequest} passed, and give the options for
 * `Deno.upgradeWebSocket`. The subprotocol must be one the client offered
 * and the extra headers valid and not the handshake's own, as for
 * `Handshake.send(AcceptConnection)`. The accept's extensions do not apply
 * on this path: Deno's WebSocket runs the frames. The caller adds the extra
 * headers to the response `Deno.upgradeWebSocket` returns.
 *
 * @param request The request event from `checkUpgradeRequest`.
 * @param accept The server's choice.
 * @returns The options to pass to `Deno.upgradeWebSocket`.
 * @throws {LocalProtocolError} When the subprotocol was not offered, or an
 *   extra header cannot be sent.
 *
 * @example Choosing a subprotocol
 * ```ts
 * import { upgradeOptions } from "./handshake.ts";
 * import { AcceptConnection, Request } from "./events.ts";
 * const request = new Request({ host: "h", target: "/", subprotocols: ["chat", "v2"] });
 * const options = upgradeOptions(request, new AcceptConnection({ subprotocol: "v2" }));
 * if (options.protocol !== "v2") throw new Error("Example failed");
 * ```
 */
export function upgradeOptions(
  request: WsRequest,
  accept: AcceptConnection,
): { protocol?: string } {
  checkSubprotocol(request.subprotocols, accept.subprotocol);
  checkExtraHeaders(accept.extraHeaders, "101", "the subprotocol");
  for (const [name, value] of accept.extraHeaders) checkField(name, value);
  return accept.subprotocol === null ? {} : { protocol: accept.subprotocol };
}

/**
 * Check a rejection as {@linkcode Handshake} sends one, for a path that
 * writes the response itself (`upgrade()` under `Deno.serve`): a status from
 * 200 to 599, valid header fields, no `Transfer-Encoding` (the handshake
 * sets it), no body with 204 or 304, and a `Content-Length` of the caller's
 * only as one decimal number for a body sent in pieces (`0` without a body,
 * none beside a whole body, and none on a 204).
 *
 * @param event The rejection.
 * @throws {LocalProtocolError} When the rejection cannot be sent.
 *
 * @example
 * ```ts
 * import { checkRejection } from "./handshake.ts";
 * import { RejectConnection } from "./events.ts";
 * checkRejection(new RejectConnection({ statusCode: 403, body: "no" }));
 * try {
 *   checkRejection(new RejectConnection({ statusCode: 101 }));
 *   throw new Error("Example failed");
 * } catch (error) {
 *   if (!(error instanceof Error && error.name === "LocalProtocolError")) throw error;
 * }
 * ```
 */
export function checkRejection(event: RejectConnection): void {
  const status = event.statusCode;
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new LocalProtocolError(
      `A rejection's status must be from 200 to 599 (101 is AcceptConnection), not ${status}`,
    );
  }
  checkHeaderTypes(event.headers);
  for (const [name, value] of event.headers) checkField(name, value);
  if (event.headers.some(([name]) => /^transfer-encoding$/i.test(name))) {
    throw new LocalProtocolError("A rejection's Transfer-Encoding is set by the handshake");
  }
  // RFC 9110 §6.4.1: these responses end at their head, and a peer reads
  // no body after them (nor does our client).
  if (
    isBodiless(status) && event.hasBody &&
    (event.body === null || event.body.length > 0)
  ) {
    throw new LocalProtocolError(`A ${status} rejection cannot have a body`);
  }
  const lengths = event.headers.filter(([name]) => /^content-length$/i.test(name));
  if (lengths.length === 0) return;
  if (event.body !== null) {
    throw new LocalProtocolError("A rejection with a body sets its own Content-Length");
  }
  // RFC 9110 §8.6: never on a 204.
  if (status === 204) throw new LocalProtocolError("A 204 rejection cannot have a Content-Length");
  if ((!event.hasBody || isBodiless(status)) && lengths.some(([, value]) => value !== "0")) {
    throw new LocalProtocolError("A rejection without a body cannot have a Content-Length");
  }
  if (lengths.length > 1 || !/^[0-9]{1,15}$/.test(lengths[0]![1])) {
    throw new LocalProtocolError("A rejection's Content-Length must be one decimal number");
  }
}

// ---- Shared by both paths ----

// The event's class name, found without `constructor.name`, which minifiers rename.
function kindOf(event: HandshakeEvent): string {
  if (event instanceof WsRequest) return "Request";
  if (event instanceof AcceptConnection) return "AcceptConnection";
  if (event instanceof RejectConnection) return "RejectConnection";
  return "RejectData";
}

// The scheme and authority that start an absolute-form target (RFC 9112 §3.2.2).
const ABSOLUTE_START = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/;

// RFC 6455 §4.2.1, the server's checks of the client's request, over the
// request's fields in order. Throws a RemoteProtocolError carrying the
// rejection to send.
function validateRequest(
  method: string,
  target: string,
  headers: Headers,
  // The authority of Deno.serve's request.url: the Host's, or that of an
  // absolute-form target, which Deno puts in the URL as it came.
  urlAuthority = "",
): { request: WsRequest; key: string } {
  if (method !== "GET") {
    throw rejection(405, `The method must be GET, not ${method}`, [["Allow", "GET"]]);
  }
  // RFC 9112 §6.3: a body would come first, ahead of the frames, and an
  // upgrade has none. Read as frames, it would leave a proxy and us
  // disagreeing on where they start. Deno.serve refuses even a length of 0,
  // and so do we, so that one handler sees one rule on both transports.
  if (values(headers, "transfer-encoding").length + values(headers, "content-length").length > 0) {
    throw rejection(400, "An upgrade request cannot announce a body");
  }
  const hosts = values(headers, "host");
  if (hosts.length !== 1) {
    throw rejection(400, hosts.length === 0 ? "Missing Host header" : "More than one Host header");
  }
  // RFC 9112 §3.2: 400 for a Host that is not host[:port] too.
  if (!isHost(hosts[0]!)) throw rejection(400, "The Host header is not host[:port]");
  // RFC 9112 §3.2: origin-form, or absolute-form such as ws://host/path,
  // whose authority an origin server uses in place of Host (§3.2.2).
  let host = hosts[0]!;
  if (!target.startsWith("/")) {
    const authority = ABSOLUTE_START.exec(target)?.[1];
    if (authority === undefined) {
      throw rejection(400, `Request target ${JSON.stringify(target)} is not a path or URI`);
    }
    host = authority;
  } else if (urlAuthority !== "") host = urlAuthority;
  if (host !== hosts[0] && (!isHost(host) || host === "")) {
    throw rejection(
      400,
      `The request target's authority ${JSON.stringify(host)} is not host[:port]`,
    );
  }
  const fail = (message: string) => rejection(400, message);
  const upgrade = listOrFail(values(headers, "upgrade"), fail);
  if (!includesLowercase(upgrade, "websocket")) {
    throw rejection(426, "The Upgrade header must include websocket", UPGRADE_HEADERS);
  }
  const connection = listOrFail(values(headers, "connection"), fail);
  if (!includesLowercase(connection, "upgrade")) {
    throw rejection(426, "The Connection header must include upgrade", UPGRADE_HEADERS);
  }
  // RFC 6455 §4.2.2 item 4: name the version understood.
  const versions = listOrFail(values(headers, "sec-websocket-version"), fail);
  if (versions.length !== 1 || versions[0] !== WEBSOCKET_VERSION) {
    throw rejection(426, "Sec-WebSocket-Version must be 13", [
      ["Sec-WebSocket-Version", WEBSOCKET_VERSION],
      ...UPGRADE_HEADERS,
    ]);
  }
  const keys = values(headers, "sec-websocket-key");
  if (keys.length !== 1) {
    throw rejection(
      400,
      keys.length === 0 ? "Missing Sec-WebSocket-Key header" : "More than one Sec-WebSocket-Key",
    );
  }
  const key = keys[0]!;
  if (!KEY.test(key)) throw rejection(400, "Sec-WebSocket-Key must be 16 bytes in base64");
  const subprotocols = listOrFail(values(headers, "sec-websocket-protocol"), fail);
  // One that is not could be chosen, and written back in a 101 that no
  // client accepts.
  const badProtocol = badSubprotocol(subprotocols);
  if (badProtocol !== undefined) {
    throw rejection(
      400,
      `Sec-WebSocket-Protocol ${JSON.stringify(badProtocol)} is not a token, or named twice`,
    );
  }
  const extensions = listOrFail(values(headers, "sec-websocket-extensions"), fail);
  for (const element of extensions) {
    if (!EXTENSION_ELEMENT.test(element)) {
      throw rejection(400, `Malformed Sec-WebSocket-Extensions element ${JSON.stringify(element)}`);
    }
  }
  const request = new WsRequest({
    host,
    target,
    subprotocols,
    extensions,
    // The parsed list is this request's own: no copy.
    extraHeaders: headers,
  });
  return { request, key };
}

// RFC 6455 §4.1: the subprotocols offered are unique tokens, so a comma or
// space cannot split one in two. Returns the first that breaks the rule.
function badSubprotocol(subprotocols: readonly string[]): string | undefined {
  return subprotocols.find((protocol, at) =>
    !isToken(protocol) || subprotocols.indexOf(protocol) !== at
  );
}

function checkSubprotocol(offered: readonly string[], chosen: string | null): void {
  if (chosen !== null && !offered.includes(chosen)) {
    throw new LocalProtocolError(
      `Subprotocol ${JSON.stringify(chosen)} was not offered by the client (offered: ${
        offered.length === 0 ? "none" : offered.join(", ")
      })`,
    );
  }
}

// RFC 6455 §9.1: for each offer in the client's order, the supported
// extension of that name answers it; the first acceptable offer of each
// extension wins. The response lists the answers in the order they apply.
function negotiate(
  offers: readonly (Extension | string)[],
  supported: readonly Extension[],
): { enabled: Extension[]; answers: string[] } {
  const enabled: Extension[] = [];
  const answers: string[] = [];
  for (const offer of offers) {
    if (typeof offer !== "string") continue;
    const name = extensionName(offer);
    const extension = supported.find((candidate) => candidate.name.toLowerCase() === name);
    if (extension === undefined || enabled.includes(extension)) continue;
    const answer = extension.accept(offer);
    if (answer === null) continue;
    // RFC 6455 §9.1: what the server lists is what is in use; an answer the
    // client cannot read as this extension would leave the two ends apart.
    if (!EXTENSION_ELEMENT.test(answer) || extensionName(answer) !== name) {
      throw new LocalProtocolError(
        `Extension ${extension.name} answered ${
          JSON.stringify(answer)
        }, not an element of its name`,
      );
    }
    enabled.push(extension);
    answers.push(answer);
  }
  return { enabled, answers };
}

function extensionName(element: string): string {
  return (element.split(";")[0] ?? "").trim().toLowerCase();
}

function rejection(status: number, reason: string, headers: Headers = []): RemoteProtocolError {
  return new RemoteProtocolError(reason, {
    eventHint: new RejectConnection({
      statusCode: status,
      headers: [...headers, PLAIN_TEXT],
      body: `${reason}\n`,
    }),
  });
}

// The values of every field named `name` (lower case), in order.
function values(headers: Headers, name: string): string[] {
  // Most names occur once or not at all; a list pushed to from empty gets
  // room for 17, so make the list only for a second occurrence.
  let first: string | undefined;
  let found: string[] | undefined;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i]!;
    if (!equalsLowercase(field[0], name)) continue;
    if (first === undefined) first = field[1];
    else (found ??= [first]).push(field[1]);
  }
  return found ?? (first === undefined ? [] : [first]);
}

// Whether `text` is `lower` but for the case of ASCII letters: header names
// and list tokens compare case-insensitively (RFC 9110 §5.1, §7.8), and
// toLowerCase() made a string per field per lookup, the largest share of a
// handshake's garbage.
function equalsLowercase(text: string, lower: string): boolean {
  if (text.length !== lower.length) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code >= 0x41 && code <= 0x5a ? code + 0x20 : code) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function includesLowercase(tokens: readonly string[], lower: string): boolean {
  for (const token of tokens) if (equalsLowercase(token, lower)) return true;
  return false;
}

// Several fields of one name form one comma-separated list (RFC 9110 §5.3).
function listOrFail(fields: string[], fail: (message: string) => Error): string[] {
  try {
    if (fields.length === 0) return [];
    return splitList(fields.length === 1 ? fields[0]! : fields.join(", "));
  } catch (error) {
    if (error instanceof HttpError) throw fail(error.message);
    throw error;
  }
}

function checkField(name: string, value: string): void {
  if (!isToken(name)) {
    throw new LocalProtocolError(`Invalid header name ${JSON.stringify(name)}`);
  }
  if (!isFieldValue(value)) {
    throw new LocalProtocolError(
      /[\u0100-\uffff]/.test(value)
        ? `The value of header ${name} holds a character above U+00FF: a value is bytes, ` +
          "one per character, as in Fetch (encode it first)"
        : `The value of header ${name} holds a control character`,
    );
  }
}

// The head's bytes, written once: building the text and then encoding it
// made a string per line and a flat copy of the whole. Indexed loops, not
// for-of with destructuring: this runs once per connection, mostly before
// the optimizing compiler gets to it, and iterators there are allocations.
function writeHead(startLine: string, ...lists: Headers[]): Uint8Array {
  if (!isFieldValue(startLine)) {
    throw new LocalProtocolError(`The start line holds a control character`);
  }
  let length = startLine.length + 4;
  for (let l = 0; l < lists.length; l++) {
    const headers = lists[l]!;
    for (let h = 0; h < headers.length; h++) {
      const name = headers[h]![0];
      const value = headers[h]![1];
      checkField(name, value);
      length += name.length + value.length + 4;
    }
  }
  const bytes = new Uint8Array(length);
  let at = putLine(bytes, putLatin1(bytes, 0, startLine));
  for (let l = 0; l < lists.length; l++) {
    const headers = lists[l]!;
    for (let h = 0; h < headers.length; h++) {
      at = putLatin1(bytes, at, headers[h]![0]);
      bytes[at++] = 0x3a; // ":"
      bytes[at++] = 0x20;
      at = putLine(bytes, putLatin1(bytes, at, headers[h]![1]));
    }
  }
  putLine(bytes, at);
  return bytes;
}

// Writes `text`, no character above U+00FF (checkField), one byte per
// character at `at`; returns where it ends.
function putLatin1(bytes: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i);
  return at + text.length;
}

// The fields the handshake writes itself (RFC 6455 §4.1, §4.2.2): given
// again as extra headers they would be sent twice, which a server refuses
// (two Host, two keys) or which would make us reject our own choice (an
// unlisted Sec-WebSocket-Protocol). Every other Sec-WebSocket-* field is
// the protocol's too (RFC 6455 §11.3), and refused alike.
const REQUEST_FIELDS = new Set(["host", "upgrade", "connection"]);
const ACCEPT_FIELDS = new Set(["upgrade", "connection"]);

// The extra headers of a request or a 101: pairs of strings, none of the
// handshake's own fields, and none that announces a body, which RFC 9110
// §8.6 and RFC 9112 §6.1 forbid on a 101, and which a server (ours among
// them) refuses on a request.
function checkExtraHeaders(headers: Headers, of: "request" | "101", instead: string): void {
  checkHeaderTypes(headers);
  const own = of === "request" ? REQUEST_FIELDS : ACCEPT_FIELDS;
  for (const [name] of headers) {
    const lower = name.toLowerCase();
    if (own.has(lower) || lower.startsWith("sec-websocket-")) {
      throw new LocalProtocolError(
        `${name} is written by the handshake and cannot be an extra header (set ${instead} instead)`,
      );
    }
    if (lower === "content-length" || lower === "transfer-encoding") {
      const what = of === "request" ? "An upgrade request" : "A 101 response";
      throw new LocalProtocolError(`${what} has no body: ${name} cannot be an extra header`);
    }
  }
}

// RFC 7692 §5: a client may offer one extension several times, each a
// fallback for the one before; the server accepts one of them, and its
// answer goes to the first offer it fits. When it fits none, the error is
// the most preferred offer's.
function finalizeOne(candidates: readonly Extension[], answer: string): Extension {
  let firstError: unknown = null;
  for (const extension of candidates) {
    try {
      extension.finalize(answer);
      return extension;
    } catch (error) {
      if (!(error instanceof RemoteProtocolError)) throw error;
      firstError ??= error;
    }
  }
  throw firstError;
}

/**
 * Check that headers are `[name, value]` pairs of strings. From a caller
 * without TypeScript's checks (a number from a JSON config, say), a value
 * with no length made a head's length NaN, and a request went out as no
 * bytes at all.
 *
 * @param headers The headers to check.
 * @throws {TypeError} When one is not a pair of strings.
 *
 * @example
 * ```ts
 * import { checkHeaderTypes } from "./handshake.ts";
 * checkHeaderTypes([["X-Retry", "3"]]);
 * try {
 *   checkHeaderTypes([["X-Retry", 3]] as never);
 *   throw new Error("Example failed");
 * } catch (error) {
 *   if (!(error instanceof TypeError && error.message.endsWith("not number"))) throw error;
 * }
 * ```
 */
export function checkHeaderTypes(headers: Headers): void {
  for (const header of headers) {
    if (!Array.isArray(header)) throw wrongType("A header is a [name, value] pair", header);
    if (header.length !== 2) {
      throw new TypeError(
        `A header is a [name, value] pair, not ${header.length} item${
          header.length === 1 ? "" : "s"
        }`,
      );
    }
    const [name, value]: unknown[] = header;
    if (typeof name !== "string") throw wrongType("A header name is a string", name);
    if (typeof value !== "string") {
      throw wrongType(`The value of header ${name} is a string`, value);
    }
  }
}

// Writes CRLF at `at`; returns where it ends.
function putLine(bytes: Uint8Array, at: number): number {
  bytes[at] = 0x0d;
  bytes[at + 1] = 0x0a;
  return at + 2;
}
