/**
 * The incremental frame decoder (RFC 6455 §5.2): bytes in, `Frame` pieces
 * out, with every header rule of §5 enforced before a payload byte is
 * passed up.
 *
 * @module
 */

import { ByteBuffer } from "./byte_buffer.ts";
import { checkReceivedBytes, failConnection } from "./errors.ts";
import type { Extension } from "./extensions.ts";
import {
  CloseReason,
  type Frame,
  isControlOpcode,
  MAX_CONTROL_PAYLOAD,
  Opcode,
  type RsvBits,
} from "./frame.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import { mask } from "./mask.ts";
import { ConnectionType } from "./state.ts";

/** Options of {@linkcode FrameDecoder}. */
export interface FrameDecoderOptions {
  /** The enabled extensions, asked which RSV bits each frame may carry. */
  extensions?: readonly Extension[];
  /** The largest frame payload accepted; over it is close code 1009. */
  maxFrameSize?: number;
}

const TWO_BYTE_LENGTH = 126;
const EIGHT_BYTE_LENGTH = 127;
const MAX_TWO_BYTE_PAYLOAD = 0xffff;

/**
 * Decodes frames incrementally. Feed bytes with `receiveBytes()`, then call
 * `processBuffer()` until it returns `null`. Extensions are asked at each
 * header which RSV bits they account for; their payload hooks run in the
 * message layer, after the fragmentation rules. Control frames come whole; a
 * data frame comes in pieces as its payload arrives (`frameFinished` false
 * until the last piece), so a large frame is never buffered whole. A piece
 * after the first carries the CONTINUATION opcode, as in wsproto.
 *
 * The decoder takes ownership of the bytes it is given: it unmasks them in
 * place and the frames it returns are views into them. Do not reuse a buffer
 * after passing it in.
 *
 * A protocol violation throws a `RemoteProtocolError` whose `eventHint` is
 * the `CloseConnection` to answer with (1002, or 1009 for a frame over the
 * limit); the decoder is unusable afterwards.
 *
 * @example Decoding the RFC 6455 §5.7 masked "Hello"
 * ```ts
 * import { ConnectionType, FrameDecoder, Opcode } from "./mod.ts";
 * const decoder = new FrameDecoder(ConnectionType.SERVER);
 * decoder.receiveBytes(new Uint8Array([
 *   0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
 * ]));
 * const frame = decoder.processBuffer();
 * if (frame?.opcode !== Opcode.TEXT) throw new Error("Example failed");
 * if (new TextDecoder().decode(frame?.payload) !== "Hello") throw new Error("Example failed");
 * ```
 */
export class FrameDecoder {
  readonly #expectMasked: boolean;
  readonly #extensions: readonly Extension[];
  readonly #maxFrameSize: number;
  readonly #buffer = new ByteBuffer();
  readonly #maskKey = new Uint8Array(4);

  // The frame whose payload is being read; #inFrame is false between frames.
  #inFrame = false;
  #fin = false;
  #opcode: Opcode = Opcode.CONTINUATION;
  #masked = false;
  #payloadLength = 0;
  #payloadConsumed = 0;
  // Whether the extensions saw the header being read: its masking key may
  // arrive in a later chunk, and each extension sees each header once.
  #headerShown = false;

  /**
   * Make a decoder for one end of a connection.
   *
   * @param type Which end decodes: a server requires masked frames, a client refuses them (§5.1).
   * @param options Extensions and the frame-size limit.
   */
  constructor(type: ConnectionType, options: FrameDecoderOptions = {}) {
    this.#expectMasked = type === ConnectionType.SERVER;
    this.#extensions = options.extensions ?? [];
    this.#maxFrameSize = options.maxFrameSize ?? DEFAULT_LIMITS.maxFrameSize;
  }

  /** Bytes buffered and not yet decoded. */
  get bufferedAmount(): number {
    return this.#buffer.length;
  }

  /**
   * Bytes of the frame being read that have not arrived yet: 0 between
   * frames or while a header is incomplete. A driver can size its next read
   * to this, so a large payload lands in one buffer instead of many.
   */
  get bytesExpected(): number {
    if (!this.#inFrame) return 0;
    return Math.max(0, this.#payloadLength - this.#payloadConsumed - this.#buffer.length);
  }

  /**
   * The first byte of the next frame's header (its FIN, RSV and opcode
   * bits) once it is buffered, before the frame is decoded; -1 while a
   * frame is being read or nothing is buffered. A driver can look ahead
   * with it, say to see whether a close comes next.
   */
  get nextHeaderByte(): number {
    return this.#inFrame || this.#buffer.length === 0 ? -1 : this.#buffer.byteAt(0);
  }

  /**
   * Add received bytes; the decoder keeps (and will unmask) them.
   *
   * @param data The bytes, in the order received.
   * @throws {TypeError} When the data is not a `Uint8Array`.
   */
  receiveBytes(data: Uint8Array): void {
    checkReceivedBytes(data);
    this.#buffer.push(data);
  }

  /**
   * Decode the next frame or piece of a frame from the buffered bytes.
   *
   * @returns The next `Frame`, or `null` when more bytes are needed.
   */
  processBuffer(): Frame | null {
    if (!this.#inFrame && !this.#parseHeader()) return null;

    const remaining = this.#payloadLength - this.#payloadConsumed;
    // Control frames are at most 125 bytes and always come whole (§5.5).
    if (isControlOpcode(this.#opcode) && this.#buffer.length < remaining) return null;
    if (remaining > 0 && this.#buffer.length === 0) return null;

    const payload = this.#buffer.consumeAtMost(remaining);
    if (this.#masked) mask(payload, this.#maskKey, this.#payloadConsumed);
    this.#payloadConsumed += payload.length;
    const frameFinished = this.#payloadConsumed === this.#payloadLength;

    const frame: Frame = {
      opcode: this.#opcode,
      payload,
      frameFinished,
      messageFinished: this.#fin,
    };
    if (frameFinished) this.#inFrame = false;
    else this.#opcode = Opcode.CONTINUATION;
    return frame;
  }

  // Reads a whole header or nothing: the bytes stay buffered until all of
  // the header (up to 14 bytes) has arrived, so there is no partial state.
  #parseHeader(): boolean {
    const buffer = this.#buffer;
    if (buffer.length < 2) return false;
    const first = buffer.byteAt(0);
    const second = buffer.byteAt(1);
    const fin = (first & 0x80) !== 0;
    const opcode = first & 0x0f;
    if (!isKnownOpcode(opcode)) {
      throw failConnection(
        CloseReason.PROTOCOL_ERROR,
        `Reserved opcode 0x${opcode.toString(16)}`,
      );
    }
    const control = isControlOpcode(opcode);
    if (control && !fin) {
      throw failConnection(CloseReason.PROTOCOL_ERROR, "Fragmented control frame");
    }
    const masked = (second & 0x80) !== 0;
    const shortLength = second & 0x7f;
    if (control && shortLength > MAX_CONTROL_PAYLOAD) {
      throw failConnection(CloseReason.PROTOCOL_ERROR, "Control frame payload over 125 bytes");
    }

    let headerLength = 2;
    let payloadLength = shortLength;
    if (shortLength === TWO_BYTE_LENGTH) {
      if (buffer.length < 4) return false;
      headerLength = 4;
      payloadLength = (buffer.byteAt(2) << 8) | buffer.byteAt(3);
      // §5.2: "the minimal number of bytes MUST be used to encode the length".
      if (payloadLength <= MAX_CONTROL_PAYLOAD) {
        throw failConnection(CloseReason.PROTOCOL_ERROR, "Payload length not minimally encoded");
      }
    } else if (shortLength === EIGHT_BYTE_LENGTH) {
      if (buffer.length < 10) return false;
      headerLength = 10;
      const high = readUint32(buffer, 2);
      if (high >= 0x80000000) {
        throw failConnection(
          CloseReason.PROTOCOL_ERROR,
          "64-bit payload length has its top bit set",
        );
      }
      // Exact below 2^53; anything larger is far over every limit anyway.
      payloadLength = high * 0x1_0000_0000 + readUint32(buffer, 6);
      if (payloadLength <= MAX_TWO_BYTE_PAYLOAD) {
        throw failConnection(CloseReason.PROTOCOL_ERROR, "Payload length not minimally encoded");
      }
    }

    if (!this.#headerShown) {
      this.#checkRsv(opcode, rsvBits(first), payloadLength);
      this.#headerShown = true;
    }

    if (masked !== this.#expectMasked) {
      throw failConnection(
        CloseReason.PROTOCOL_ERROR,
        masked ? "Masked frame from the server" : "Unmasked frame from the client",
      );
    }
    if (payloadLength > this.#maxFrameSize) {
      throw failConnection(
        CloseReason.MESSAGE_TOO_BIG,
        `Frame of ${payloadLength} bytes is over the limit of ${this.#maxFrameSize}`,
      );
    }
    if (masked) {
      if (buffer.length < headerLength + 4) return false;
      for (let i = 0; i < 4; i++) this.#maskKey[i] = buffer.byteAt(headerLength + i);
      headerLength += 4;
    }

    buffer.skip(headerLength);
    this.#headerShown = false;
    this.#inFrame = true;
    this.#fin = fin;
    this.#opcode = opcode;
    this.#masked = masked;
    this.#payloadLength = payloadLength;
    this.#payloadConsumed = 0;
    return true;
  }

  // §5.2: "If a nonzero value is received and none of the negotiated
  // extensions defines the meaning of such a nonzero value, the receiving
  // endpoint MUST _Fail the WebSocket Connection_."
  #checkRsv(opcode: Opcode, rsv: RsvBits, payloadLength: number): void {
    let claimed = 0;
    for (const extension of this.#extensions) {
      const bits = extension.frameInboundHeader(opcode, rsv, payloadLength);
      claimed |= (bits.rsv1 ? 0x40 : 0) | (bits.rsv2 ? 0x20 : 0) | (bits.rsv3 ? 0x10 : 0);
    }
    const set = (rsv.rsv1 ? 0x40 : 0) | (rsv.rsv2 ? 0x20 : 0) | (rsv.rsv3 ? 0x10 : 0);
    if ((set & ~claimed) !== 0) {
      throw failConnection(CloseReason.PROTOCOL_ERROR, "Reserved bit set without an extension");
    }
  }
}

const RSV_CACHE: readonly RsvBits[] = Array.from({ length: 8 }, (_, bits) =>
  Object.freeze({
    rsv1: (bits & 4) !== 0,
    rsv2: (bits & 2) !== 0,
    rsv3: (bits & 1) !== 0,
  }));

function rsvBits(firstByte: number): RsvBits {
  // Shared frozen objects: no allocation per frame.
  return RSV_CACHE[(firstByte >> 4) & 7]!;
}

function isKnownOpcode(opcode: number): opcode is Opcode {
  return opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xa);
}

function readUint32(buffer: ByteBuffer, at: number): number {
  return ((buffer.byteAt(at) << 24) >>> 0) + (buffer.byteAt(at + 1) << 16) +
    (buffer.byteAt(at + 2) << 8) + buffer.byteAt(at + 3);
}
