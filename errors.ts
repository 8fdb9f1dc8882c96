/**
 * The two ways a WebSocket conversation goes wrong: the application misused
 * the API, or the peer broke the protocol.
 *
 * @module
 */

import { CloseConnection, type RejectConnection } from "./events.ts";

/**
 * The application asked for something the protocol or the connection's
 * state does not allow, such as sending a message before the handshake.
 *
 * @example Catching misuse
 * ```ts
 * import { ConnectionType, LocalProtocolError, TextMessage, WSConnection } from "./mod.ts";
 * const conn = new WSConnection(ConnectionType.SERVER);
 * try {
 *   conn.send(new TextMessage({ data: "too early" }));
 * } catch (error) {
 *   if (!(error instanceof LocalProtocolError)) throw new Error("Example failed");
 * }
 * ```
 */
export class LocalProtocolError extends Error {
  /**
   * Make the error.
   *
   * @param message What was wrong, in a sentence.
   */
  constructor(message: string) {
    super(message);
    this.name = "LocalProtocolError";
  }
}

/** Options of {@linkcode RemoteProtocolError}. */
export interface RemoteProtocolErrorOptions {
  /** The event to send in answer, if any. */
  eventHint?: RejectConnection | CloseConnection | null;
}

/**
 * The peer broke the protocol. `eventHint` is what to send in answer: a
 * `RejectConnection` carrying the HTTP status (a bad handshake request), a
 * `CloseConnection` carrying the close code (a bad frame), or `null` when
 * the only answer is to drop the connection (a bad handshake response).
 *
 * @example Answering a bad request
 * ```ts
 * import { ConnectionType, RemoteProtocolError, WSConnection } from "./mod.ts";
 * const server = new WSConnection(ConnectionType.SERVER);
 * try {
 *   server.receiveData(new TextEncoder().encode("POST / HTTP/1.1\r\nHost: x\r\n\r\n"));
 *   [...server.events()];
 * } catch (error) {
 *   if (!(error instanceof RemoteProtocolError) || error.eventHint === null) throw error;
 *   const answer = server.send(error.eventHint); // an HTTP 405 response
 *   if (!(new TextDecoder().decode(answer).startsWith("HTTP/1.1 405"))) throw new Error("Example failed");
 * }
 * ```
 */
export class RemoteProtocolError extends Error {
  /** The event to send in answer, or `null` to just drop the connection. */
  readonly eventHint: RejectConnection | CloseConnection | null;

  /**
   * Make the error.
   *
   * @param message What the peer did wrong, in a sentence.
   * @param options The event to answer with.
   */
  constructor(message: string, options: RemoteProtocolErrorOptions = {}) {
    super(message);
    this.name = "RemoteProtocolError";
    this.eventHint = options.eventHint ?? null;
  }
}

/**
 * The error the frame and message layers raise: the peer broke the protocol
 * and the connection must close with `code` (RFC 6455 §7.1.7).
 *
 * @param code The close code to answer with.
 * @param message What was wrong; it becomes the close reason.
 * @returns A `RemoteProtocolError` whose hint is that close.
 *
 * @example Failing with 1002
 * ```ts
 * import { failConnection } from "./errors.ts";
 * const error = failConnection(1002, "Reserved opcode 0x3");
 * if (error.eventHint?.code !== 1002) throw new Error("Example failed");
 * ```
 */
export function failConnection(
  code: number,
  message: string,
): RemoteProtocolError & { readonly eventHint: CloseConnection } {
  const error = new RemoteProtocolError(message, {
    eventHint: new CloseConnection({ code, reason: message }),
  });
  return error as RemoteProtocolError & { readonly eventHint: CloseConnection };
}

/**
 * Check what a caller gives as a message: a `string` for text, a
 * `Uint8Array` for binary. Callers without TypeScript's checks otherwise
 * got errors from deep inside the encoder, or garbage on the wire: a plain
 * array sent as bytes, `undefined` as the text "undefined".
 *
 * @param data What the caller gave.
 * @throws {TypeError} For anything else, naming what it was, and for a
 *   `Uint8Array` whose buffer was transferred (detached).
 *
 * @example
 * ```ts
 * import { checkMessageData } from "./errors.ts";
 * checkMessageData("text");
 * try {
 *   checkMessageData(new ArrayBuffer(4));
 *   throw new Error("Example failed");
 * } catch (error) {
 *   if (!(error instanceof TypeError && error.message.endsWith("not ArrayBuffer"))) throw error;
 * }
 * ```
 */
export function checkMessageData(data: unknown): asserts data is string | Uint8Array {
  if (typeof data === "string") return;
  if (!(data instanceof Uint8Array)) {
    throw wrongType("A message is a string (text) or a Uint8Array (binary)", data);
  }
  // A view of a transferred buffer reads as empty; copying from it threw on
  // raw TCP, where Deno.serve sent an empty message. Only an empty view can be one.
  if (data.length === 0 && data.buffer instanceof ArrayBuffer && data.buffer.detached) {
    throw new TypeError("A message's bytes were transferred: its ArrayBuffer is detached");
  }
}

/**
 * Check that received bytes are a `Uint8Array`. Anything else taken in
 * would be counted by its `length` (an `ArrayBuffer`'s is undefined, and a
 * decoder's byte count NaN from then on) or read as bytes it is not (a
 * `Uint16Array`'s elements, a string's characters).
 *
 * @param data What was passed as received bytes.
 * @throws {TypeError} When it is not a `Uint8Array`.
 *
 * @example
 * ```ts
 * import { checkReceivedBytes } from "./errors.ts";
 * checkReceivedBytes(new Uint8Array(2));
 * try {
 *   checkReceivedBytes(new Uint16Array(2));
 *   throw new Error("Example failed");
 * } catch (error) {
 *   if (!(error instanceof TypeError && error.message.endsWith("not Uint16Array"))) throw error;
 * }
 * ```
 */
export function checkReceivedBytes(data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw wrongType("Received data is a Uint8Array (or null at the end of the stream)", data);
  }
}

/**
 * Check the types of a close code and reason, which a caller without
 * TypeScript's checks may get wrong: a code "1000" was refused as a code
 * that may not be sent, and a reason 42 went out as the text "42".
 *
 * @param code What was given as the close code.
 * @param reason What was given as the reason.
 * @throws {TypeError} When the code is not a number or the reason not a string.
 *
 * @example
 * ```ts
 * import { checkCloseTypes } from "./errors.ts";
 * checkCloseTypes(1000, "bye");
 * try {
 *   checkCloseTypes("1000", "bye");
 *   throw new Error("Example failed");
 * } catch (error) {
 *   if (!(error instanceof TypeError && error.message.endsWith("not string"))) throw error;
 * }
 * ```
 */
export function checkCloseTypes(code: unknown, reason: unknown): void {
  if (typeof code !== "number") throw wrongType("A close code is a number", code);
  if (typeof reason !== "string") throw wrongType("A close reason is a string", reason);
}

/**
 * The error for an argument of the wrong type: what it must be, and what
 * came (`typeof` for a primitive, the built-in tag for an object, as
 * `Array` or `DataView`).
 *
 * @param expected What the argument must be.
 * @param value What came.
 * @returns The error, to throw.
 */
export function wrongType(expected: string, value: unknown): TypeError {
  const kind = value === null
    ? "null"
    : typeof value === "object" || typeof value === "function"
    ? Object.prototype.toString.call(value).slice(8, -1)
    : typeof value;
  return new TypeError(`${expected}, not ${kind}`);
}
