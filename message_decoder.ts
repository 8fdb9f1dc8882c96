/**
 * The message rules above the frames (RFC 6455 §5.4-§5.6, §7.4): fragments
 * belong to one message at a time, text is valid UTF-8 (checked as it
 * arrives), close payloads carry a valid code and reason, and messages stay
 * under their limits.
 *
 * @module
 */

import { concatBytes } from "./_bytes.ts";
import { failConnection } from "./errors.ts";
import type { Extension } from "./extensions.ts";
import { CloseReason, type Frame, isValidCloseCode, MAX_CONTROL_PAYLOAD, Opcode } from "./frame.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import { decodeUtf8, Utf8StreamDecoder } from "./utf8.ts";

/** A close frame's payload, decoded (RFC 6455 §5.5.1). */
export interface ClosePayload {
  /** The status code; 1005 when the frame had none. */
  readonly code: number;
  /** The reason, possibly empty. */
  readonly reason: string;
}

/** Options of {@linkcode MessageDecoder}. */
export interface MessageDecoderOptions {
  /** The enabled extensions, in the order they were negotiated. */
  extensions?: readonly Extension[];
  /** Bytes of one message (after extensions); over it is 1009. */
  maxMessageSize?: number;
  /** Frames of one message; over it is 1009. */
  maxFragments?: number;
}

/**
 * Assembles data-frame pieces into message pieces and enforces the message
 * rules, running the extensions' payload hooks once a frame is known to be
 * in sequence. Violations throw a `RemoteProtocolError` carrying the close code:
 * 1002 for fragmentation errors, 1007 for invalid UTF-8, 1009 for limits.
 *
 * @example Text split inside a code point
 * ```ts
 * import { MessageDecoder } from "./message_decoder.ts";
 * import { Opcode } from "./frame.ts";
 * const decoder = new MessageDecoder();
 * const first = decoder.processFrame({
 *   opcode: Opcode.TEXT, payload: new Uint8Array([0xc3]), frameFinished: true, messageFinished: false,
 * });
 * const second = decoder.processFrame({
 *   opcode: Opcode.CONTINUATION, payload: new Uint8Array([0xa9]), frameFinished: true, messageFinished: true,
 * });
 * if (!(first === "" && second === "é")) throw new Error("Example failed");
 * ```
 */
export class MessageDecoder {
  readonly #maxMessageSize: number;
  readonly #maxFragments: number;
  readonly #extensions: readonly Extension[];
  readonly #utf8 = new Utf8StreamDecoder();
  #opcode: Opcode.TEXT | Opcode.BINARY | null = null;
  #messageSize = 0;
  #fragments = 0;
  // Whether the last piece ended its frame: the next CONTINUATION piece then
  // starts a new fragment (only fragments, not pieces, count to the limit).
  #pieceEndedFrame = true;

  /**
   * Make a decoder.
   *
   * @param options The extensions and the message limits.
   */
  constructor(options: MessageDecoderOptions = {}) {
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_LIMITS.maxMessageSize;
    this.#maxFragments = options.maxFragments ?? DEFAULT_LIMITS.maxFragments;
    this.#extensions = options.extensions ?? [];
  }

  /**
   * Take one piece of a data frame (TEXT, BINARY or CONTINUATION).
   *
   * @param frame The piece, as the frame decoder gave it.
   * @returns Its data: text as a string, binary as bytes. It ends the
   *   message when `frame.frameFinished && frame.messageFinished`.
   */
  processFrame(frame: Frame): string | Uint8Array {
    const startsFrame = frame.opcode !== Opcode.CONTINUATION || this.#pieceEndedFrame;
    // §5.4: the fragmentation rules are checked before any extension sees
    // the payload, so a frame out of sequence is 1002 whatever it carries.
    if (this.#opcode === null) {
      if (frame.opcode !== Opcode.TEXT && frame.opcode !== Opcode.BINARY) {
        throw failConnection(CloseReason.PROTOCOL_ERROR, "Continuation frame without a message");
      }
      this.#opcode = frame.opcode;
      this.#messageSize = 0;
      this.#fragments = 0;
    } else if (frame.opcode !== Opcode.CONTINUATION) {
      throw failConnection(
        CloseReason.PROTOCOL_ERROR,
        "New data frame inside a fragmented message",
      );
    }
    if (startsFrame && ++this.#fragments > this.#maxFragments) {
      throw failConnection(
        CloseReason.MESSAGE_TOO_BIG,
        `Message of more than ${this.#maxFragments} fragments`,
      );
    }
    this.#pieceEndedFrame = frame.frameFinished;

    const messageFinished = frame.frameFinished && frame.messageFinished;
    const payload = this.#payloadHooks(frame.payload, this.#room());
    let data: string | Uint8Array;
    if (this.#extensions.length === 0) {
      data = this.#take(payload, messageFinished);
    } else {
      // What the payload hooks gave is judged before the extensions are
      // asked for the rest: an error they raise then comes after those
      // bytes, as it does when the frame arrives in pieces. At the end of a
      // frame the rest is what the completion hooks give; before it, the
      // payload hooks run again with no bytes, so that an error an
      // extension kept for its next call (found after output it had
      // already given) is raised now: the rest of the frame may never come.
      const head = this.#take(payload, false);
      const rest = frame.frameFinished
        ? this.#completeHooks(frame.messageFinished, this.#room())
        : this.#payloadHooks(EMPTY, this.#room());
      const tail = this.#take(rest, messageFinished);
      data = typeof head === "string"
        ? head + (tail as string)
        : concatBytes([head, tail as Uint8Array]);
    }
    if (messageFinished) {
      this.#opcode = null;
      this.#utf8.reset();
    }
    return data;
  }

  // Counts bytes of the current message against the limit and decodes text.
  // Chopping must not decide which error wins: the bytes within the limit
  // are validated before the byte that breaks it is refused, exactly as when
  // they arrive one at a time.
  #take(bytes: Uint8Array, final: boolean): string | Uint8Array {
    const room = this.#maxMessageSize - this.#messageSize;
    const over = bytes.length > room;
    const within = over ? bytes.subarray(0, room) : bytes;
    this.#messageSize += within.length;
    let data: string | Uint8Array = within;
    if (this.#opcode === Opcode.TEXT) {
      const text = this.#utf8.decode(within, final && !over);
      if (text === null) {
        throw failConnection(
          CloseReason.INVALID_FRAME_PAYLOAD_DATA,
          "Invalid UTF-8 in text message",
        );
      }
      data = text;
    }
    if (over) {
      throw failConnection(
        CloseReason.MESSAGE_TOO_BIG,
        `Message over the limit of ${this.#maxMessageSize} bytes`,
      );
    }
    return data;
  }

  /**
   * Take a whole control frame: its payload passes through the extensions'
   * payload hooks, as every frame's does (RFC 6455 §9).
   *
   * @param frame A PING, PONG or CLOSE frame.
   * @returns Its payload after the extensions.
   */
  processControl(frame: Frame): Uint8Array {
    const head = this.#payloadHooks(frame.payload, MAX_CONTROL_PAYLOAD);
    const tail = this.#completeHooks(
      frame.messageFinished,
      Math.max(0, MAX_CONTROL_PAYLOAD - head.length),
    );
    const payload = concatBytes([head, tail]);
    // What extensions made of it is a control frame's payload all the same.
    if (payload.length > MAX_CONTROL_PAYLOAD) {
      throw failConnection(
        CloseReason.MESSAGE_TOO_BIG,
        `A control frame's payload is over ${MAX_CONTROL_PAYLOAD} bytes after its extensions`,
      );
    }
    return payload;
  }

  // What the message may still grow by: an extension that inflates stops
  // one byte past it, so that a small bomb is never expanded whole.
  #room(): number {
    return this.#maxMessageSize - this.#messageSize;
  }

  // Inbound, the extension closest to the wire (listed last, RFC 6455
  // §9.1) goes first.
  #payloadHooks(payload: Uint8Array, room: number): Uint8Array {
    for (let i = this.#extensions.length - 1; i >= 0; i--) {
      payload = this.#extensions[i]!.frameInboundPayloadData(payload, room);
    }
    return payload;
  }

  // What an extension gives at the frame's end is payload to every
  // extension after it, which takes it before its own end.
  #completeHooks(fin: boolean, room: number): Uint8Array {
    let tail: Uint8Array = EMPTY;
    for (let i = this.#extensions.length - 1; i >= 0; i--) {
      const extension = this.#extensions[i]!;
      if (tail.length > 0) tail = extension.frameInboundPayloadData(tail, room);
      const more = extension.frameInboundComplete(fin, room);
      if (more !== null && more.length > 0) tail = concatBytes([tail, more]);
    }
    return tail;
  }
}

/**
 * Decode and check a close frame's payload (RFC 6455 §5.5.1, §7.4).
 *
 * @param payload The whole, unmasked payload of a close frame.
 * @returns The code (1005 when absent) and the reason.
 *
 * @example
 * ```ts
 * import { parseClosePayload } from "./message_decoder.ts";
 * const close = parseClosePayload(new Uint8Array([0x03, 0xe8, 0x6f, 0x6b]));
 * if (!(close.code === 1000 && close.reason === "ok")) throw new Error("Example failed");
 * ```
 */
export function parseClosePayload(payload: Uint8Array): ClosePayload {
  if (payload.length === 0) return { code: CloseReason.NO_STATUS_RCVD, reason: "" };
  if (payload.length === 1) {
    throw failConnection(CloseReason.PROTOCOL_ERROR, "Close frame with a one-byte payload");
  }
  const code = (payload[0]! << 8) | payload[1]!;
  if (!isValidCloseCode(code)) {
    throw failConnection(CloseReason.PROTOCOL_ERROR, `Invalid close code ${code}`);
  }
  const reason = decodeUtf8(payload.subarray(2));
  if (reason === null) {
    throw failConnection(CloseReason.INVALID_FRAME_PAYLOAD_DATA, "Invalid UTF-8 in close reason");
  }
  return { code, reason };
}

const EMPTY = new Uint8Array(0);
