/**
 * The frame encoder (RFC 6455 §5.2): minimal length encoding, client-side
 * masking with fresh keys, fragmented messages, and the outbound extension
 * hooks.
 *
 * @module
 */

import { allocate, recycle } from "./_bytes.ts";
import { checkCloseTypes, checkMessageData, LocalProtocolError, wrongType } from "./errors.ts";
import type { Extension } from "./extensions.ts";
import {
  CloseReason,
  isControlOpcode,
  isValidCloseCode,
  MAX_CONTROL_PAYLOAD,
  MAX_HEADER_LENGTH,
  NO_RSV,
  Opcode,
  type RsvBits,
} from "./frame.ts";
import { mask } from "./mask.ts";
import { ConnectionType } from "./state.ts";

// Masking keys are drawn from the system CSPRNG in batches (§5.3 wants them
// unpredictable), so a small frame does not cost a getRandomValues call.
const KEY_POOL_SIZE = 4096;
const keyPool = new Uint8Array(KEY_POOL_SIZE);
let keyPoolOffset = KEY_POOL_SIZE;

function nextMaskKey(): Uint8Array {
  if (keyPoolOffset === KEY_POOL_SIZE) {
    crypto.getRandomValues(keyPool);
    keyPoolOffset = 0;
  }
  const key = keyPool.subarray(keyPoolOffset, keyPoolOffset + 4);
  keyPoolOffset += 4;
  return key;
}

const textEncoder = new TextEncoder();

// Text is encoded into this reused buffer and copied into its frame from
// there: `encode()` makes a fresh array per message, which in Deno costs a
// buffer allocation (~1.3 µs here) even for a few bytes. Up to SCRATCH_UNITS
// UTF-16 units (at most 3 bytes each); longer text goes straight into its
// frame (encodeTextFrame).
const SCRATCH_UNITS = 16 * 1024;
let scratch: Uint8Array | null = null;

/**
 * Serialise one frame: header, masking key when `maskFrames` is set, and the
 * payload (copied, then masked in the copy).
 *
 * @param opcode The frame's opcode.
 * @param payload The payload, left unchanged.
 * @param fin The FIN bit.
 * @param rsv The RSV bits.
 * @param maskFrames Whether to mask (clients must, servers must not: §5.1).
 * @returns The frame's bytes: a view into a buffer shared with other frames up
 *   to 2 KiB, and possibly into a larger reused buffer above (write the view,
 *   not its `buffer`).
 *
 * @example The RFC 6455 §5.7 unmasked "Hello"
 * ```ts
 * import { encodeFrame } from "./frame_encoder.ts";
 * import { NO_RSV, Opcode } from "./frame.ts";
 * const bytes = encodeFrame(Opcode.TEXT, new TextEncoder().encode("Hello"), true, NO_RSV, false);
 * if (bytes.join() !== [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f].join()) throw new Error("Example failed");
 * ```
 */
export function encodeFrame(
  opcode: Opcode,
  payload: Uint8Array,
  fin: boolean,
  rsv: RsvBits,
  maskFrames: boolean,
): Uint8Array {
  const headerLength = frameHeaderLength(payload.length, maskFrames);
  const frame = allocate(headerLength + payload.length);
  frame.set(payload, headerLength);
  return finishFrame(frame, headerLength, opcode, fin, rsv, maskFrames);
}

// Long text is encoded straight into its frame, behind room for the
// longest header: `encode()` made a fresh array per message and the frame
// a copy of it, and those fresh arrays are external memory for V8 to
// collect (16 x 64 KiB text echo: 65 -> 40 µs of server CPU per message).
// The frame is sized first for one byte per UTF-16 unit, which all ASCII
// text fits; other text goes on into a frame with room for the rest at
// three bytes per unit.
function encodeTextFrame(
  opcode: Opcode,
  text: string,
  fin: boolean,
  maskFrames: boolean,
): Uint8Array {
  let frame = allocate(MAX_HEADER_LENGTH + text.length);
  let { read, written } = textEncoder.encodeInto(text, frame.subarray(MAX_HEADER_LENGTH));
  if (read < text.length) {
    const larger = allocate(MAX_HEADER_LENGTH + written + 3 * (text.length - read));
    larger.set(frame.subarray(MAX_HEADER_LENGTH, MAX_HEADER_LENGTH + written), MAX_HEADER_LENGTH);
    recycle(frame);
    frame = larger;
    written += textEncoder.encodeInto(
      text.substring(read),
      frame.subarray(MAX_HEADER_LENGTH + written),
    ).written;
  }
  const headerLength = frameHeaderLength(written, maskFrames);
  return finishFrame(
    frame.subarray(MAX_HEADER_LENGTH - headerLength, MAX_HEADER_LENGTH + written),
    headerLength,
    opcode,
    fin,
    NO_RSV,
    maskFrames,
  );
}

function frameHeaderLength(payloadLength: number, maskFrames: boolean): number {
  const lengthBytes = payloadLength <= MAX_CONTROL_PAYLOAD ? 0 : payloadLength <= 0xffff ? 2 : 8;
  return 2 + lengthBytes + (maskFrames ? 4 : 0);
}

// Write the header in front of the payload already in place behind it
// (headerLength bytes in), and mask the payload when asked.
function finishFrame(
  frame: Uint8Array,
  headerLength: number,
  opcode: Opcode,
  fin: boolean,
  rsv: RsvBits,
  maskFrames: boolean,
): Uint8Array {
  const length = frame.length - headerLength;
  frame[0] = (fin ? 0x80 : 0) | (rsv.rsv1 ? 0x40 : 0) | (rsv.rsv2 ? 0x20 : 0) |
    (rsv.rsv3 ? 0x10 : 0) | opcode;
  const maskBit = maskFrames ? 0x80 : 0;
  if (length <= MAX_CONTROL_PAYLOAD) {
    frame[1] = maskBit | length;
  } else if (length <= 0xffff) {
    frame[1] = maskBit | 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = maskBit | 127;
    const high = Math.floor(length / 0x1_0000_0000);
    frame[2] = high >>> 24;
    frame[3] = (high >>> 16) & 0xff;
    frame[4] = (high >>> 8) & 0xff;
    frame[5] = high & 0xff;
    frame[6] = length >>> 24;
    frame[7] = (length >>> 16) & 0xff;
    frame[8] = (length >>> 8) & 0xff;
    frame[9] = length & 0xff;
  }
  if (maskFrames) {
    const key = nextMaskKey();
    frame.set(key, headerLength - 4);
    mask(frame.subarray(headerLength), key);
  }
  return frame;
}

/** Options of {@linkcode FrameEncoder}. */
export interface FrameEncoderOptions {
  /** The enabled extensions, in the order they were negotiated. */
  extensions?: readonly Extension[];
}

/**
 * Encodes the frames one end of a connection sends: data messages (whole or
 * fragmented), pings, pongs and closes, passing each through the outbound
 * extension hooks.
 *
 * @example A client's masked text frame
 * ```ts
 * import { FrameEncoder } from "./frame_encoder.ts";
 * import { ConnectionType } from "./state.ts";
 * const encoder = new FrameEncoder(ConnectionType.CLIENT);
 * const bytes = encoder.encodeData("hi", true);
 * if (!(bytes[0] === 0x81 && bytes[1] === (0x80 | 2) && bytes.length === 8)) throw new Error("Example failed");
 * ```
 */
export class FrameEncoder {
  readonly #maskFrames: boolean;
  readonly #extensions: readonly Extension[];
  // The opcode of the message being sent in fragments, or null between messages.
  #messageOpcode: Opcode.TEXT | Opcode.BINARY | null = null;

  /**
   * Make an encoder for one end of a connection.
   *
   * @param type Which end sends: clients mask every frame (§5.3).
   * @param options The enabled extensions.
   */
  constructor(type: ConnectionType, options: FrameEncoderOptions = {}) {
    this.#maskFrames = type === ConnectionType.CLIENT;
    this.#extensions = options.extensions ?? [];
  }

  /**
   * Encode a data message or one fragment of it.
   *
   * @param data A string for text, bytes for binary.
   * @param fin Whether this ends the message.
   * @returns The frame's bytes.
   */
  encodeData(data: string | Uint8Array, fin: boolean): Uint8Array {
    checkMessageData(data);
    const opcode = typeof data === "string" ? Opcode.TEXT : Opcode.BINARY;
    let frameOpcode: Opcode = opcode;
    if (this.#messageOpcode !== null) {
      if (this.#messageOpcode !== opcode) {
        throw new LocalProtocolError(
          "A fragmented message must keep one type: text and bytes cannot mix",
        );
      }
      frameOpcode = Opcode.CONTINUATION;
    }
    // Without extensions: theirs is a transformed copy anyway.
    const bytes =
      typeof data === "string" && data.length > SCRATCH_UNITS && this.#extensions.length === 0
        ? encodeTextFrame(frameOpcode, data, fin, this.#maskFrames)
        : this.#encode(frameOpcode, typeof data === "string" ? this.#utf8(data) : data, fin);
    // Only once encoded: a hook that threw sent nothing, and the next
    // message must not go out as this one's continuation.
    this.#messageOpcode = fin ? null : opcode;
    return bytes;
  }

  /**
   * Encode a ping or a pong.
   *
   * @param opcode PING or PONG.
   * @param payload At most 125 bytes.
   * @returns The frame's bytes.
   */
  encodeControl(opcode: Opcode.PING | Opcode.PONG, payload: Uint8Array): Uint8Array {
    if (!(payload instanceof Uint8Array)) {
      throw wrongType(`A ${Opcode[opcode]} payload is a Uint8Array`, payload);
    }
    if (payload.length > MAX_CONTROL_PAYLOAD) {
      throw new LocalProtocolError(
        `A ${Opcode[opcode]} payload is at most 125 bytes, got ${payload.length}`,
      );
    }
    return this.#encode(opcode, payload, true);
  }

  /**
   * Encode a close frame (§5.5.1). Code 1005 sends an empty payload; 1006
   * and 1015, which describe a connection that ended without a close, send
   * 1000, as wsproto does; any other code a peer must reject (1004,
   * 1016-2999, ...) is a `LocalProtocolError`. A reason longer than 123 bytes of UTF-8 is cut at a
   * character boundary.
   *
   * @param code The close code.
   * @param reason The reason.
   * @returns The frame's bytes.
   * @throws {TypeError} When the code is not a number or the reason not a string.
   */
  encodeClose(code: number, reason: string): Uint8Array {
    checkCloseTypes(code, reason);
    if (code === CloseReason.NO_STATUS_RCVD) {
      if (reason !== "") {
        throw new LocalProtocolError("A close reason needs a close code other than 1005");
      }
      return this.#encode(Opcode.CLOSE, new Uint8Array(0), true);
    }
    if (code === CloseReason.ABNORMAL_CLOSURE || code === CloseReason.TLS_HANDSHAKE_FAILED) {
      code = CloseReason.NORMAL_CLOSURE;
    }
    // Sending a code the peer must reject (§7.4.2) would only fail the
    // connection on the other end.
    if (!isValidCloseCode(code)) {
      throw new LocalProtocolError(
        `Close code ${code} may not be sent: use 1000-1003, 1007-1014 or 3000-4999`,
      );
    }
    const payload = new Uint8Array(MAX_CONTROL_PAYLOAD);
    payload[0] = code >>> 8;
    payload[1] = code & 0xff;
    // encodeInto writes whole code points only, so the cut never splits one.
    const { written } = textEncoder.encodeInto(reason, payload.subarray(2));
    return this.#encode(Opcode.CLOSE, payload.subarray(0, 2 + written), true);
  }

  // Into the shared scratch, extensions or not: they are lent what they
  // are given for the call only (Extension.frameOutbound), as they are an
  // application's own bytes. A fresh array per message cost 0.5-1.1 µs
  // more (32 B to 1 KiB), a few percent of a compressed message.
  #utf8(text: string): Uint8Array {
    if (text.length > SCRATCH_UNITS) return textEncoder.encode(text);
    scratch ??= new Uint8Array(3 * SCRATCH_UNITS);
    const { written } = textEncoder.encodeInto(text, scratch);
    return scratch.subarray(0, written);
  }

  #encode(opcode: Opcode, payload: Uint8Array, fin: boolean): Uint8Array {
    let rsv: RsvBits = NO_RSV;
    // In negotiation order: with "foo, bar" in the server's answer, the
    // data goes out as bar(foo(data)) (RFC 6455 §9.1), the extension
    // listed last closest to the wire.
    for (let i = 0; i < this.#extensions.length; i++) {
      const outbound = this.#extensions[i]!.frameOutbound(opcode, rsv, payload, fin);
      rsv = outbound.rsv;
      payload = outbound.data;
    }
    if (isControlOpcode(opcode) && payload.length > MAX_CONTROL_PAYLOAD) {
      throw new LocalProtocolError("A control frame payload is at most 125 bytes");
    }
    return encodeFrame(opcode, payload, fin, rsv, this.#maskFrames);
  }
}
