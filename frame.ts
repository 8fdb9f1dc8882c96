/**
 * The vocabulary of the framing layer: opcodes, close codes and the `Frame`
 * record that the decoder produces (RFC 6455 §5.2, §7.4).
 *
 * @module
 */

/**
 * Frame opcodes (RFC 6455 §5.2, §11.8). Values 0x3-0x7 and 0xB-0xF are
 * reserved and rejected by the decoder.
 *
 * @example Telling control frames from data frames
 * ```ts
 * import { isControlOpcode, Opcode } from "./frame.ts";
 * if (!isControlOpcode(Opcode.PING)) throw new Error("Example failed");
 * if (isControlOpcode(Opcode.TEXT)) throw new Error("Example failed");
 * ```
 */
export enum Opcode {
  /** A continuation of a fragmented message (§5.4). */
  CONTINUATION = 0x0,
  /** The first frame of a text message: UTF-8 (§5.6). */
  TEXT = 0x1,
  /** The first frame of a binary message (§5.6). */
  BINARY = 0x2,
  /** A close frame (§5.5.1). */
  CLOSE = 0x8,
  /** A ping (§5.5.2). */
  PING = 0x9,
  /** A pong (§5.5.3). */
  PONG = 0xa,
}

/**
 * Whether an opcode names a control frame (RFC 6455 §5.5: the high bit of
 * the opcode is set).
 *
 * @param opcode The opcode to test.
 * @returns `true` for CLOSE, PING and PONG.
 *
 * @example Control opcodes
 * ```ts
 * import { isControlOpcode, Opcode } from "./frame.ts";
 * if (!isControlOpcode(Opcode.CLOSE)) throw new Error("Example failed");
 * ```
 */
export function isControlOpcode(opcode: Opcode): boolean {
  return (opcode & 0x8) !== 0;
}

/**
 * Close status codes (RFC 6455 §7.4.1 and the IANA "WebSocket Close Code
 * Number" registry, §11.7).
 *
 * @example Answering a protocol error
 * ```ts
 * import { CloseReason } from "./frame.ts";
 * if (CloseReason.PROTOCOL_ERROR !== 1002) throw new Error("Example failed");
 * ```
 */
export enum CloseReason {
  /** 1000: the purpose of the connection has been fulfilled. */
  NORMAL_CLOSURE = 1000,
  /** 1001: the endpoint is going away (server shutdown, page navigation). */
  GOING_AWAY = 1001,
  /** 1002: the peer broke the protocol. */
  PROTOCOL_ERROR = 1002,
  /** 1003: a data type the endpoint cannot accept (binary to a text-only endpoint). */
  UNSUPPORTED_DATA = 1003,
  /** 1005: no status code was present; never sent on the wire (§7.4.1). */
  NO_STATUS_RCVD = 1005,
  /** 1006: the connection closed without a close frame; never sent on the wire. */
  ABNORMAL_CLOSURE = 1006,
  /** 1007: message data inconsistent with its type, such as invalid UTF-8 in text. */
  INVALID_FRAME_PAYLOAD_DATA = 1007,
  /** 1008: a message violated the endpoint's policy. */
  POLICY_VIOLATION = 1008,
  /** 1009: a frame or message too big to process. */
  MESSAGE_TOO_BIG = 1009,
  /** 1010: the client expected an extension the server did not negotiate. */
  MANDATORY_EXT = 1010,
  /** 1011: the server met an unexpected condition. */
  INTERNAL_ERROR = 1011,
  /** 1012: the service is restarting (IANA registry). */
  SERVICE_RESTART = 1012,
  /** 1013: try again later (IANA registry). */
  TRY_AGAIN_LATER = 1013,
  /** 1014: the gateway received an invalid response upstream (IANA registry). */
  BAD_GATEWAY = 1014,
  /** 1015: the TLS handshake failed; never sent on the wire. */
  TLS_HANDSHAKE_FAILED = 1015,
}

/**
 * Whether a close code received from the peer is acceptable (RFC 6455
 * §7.4.1, §7.4.2): the registered codes that may appear on the wire, and
 * 3000-4999 for libraries, frameworks and applications.
 *
 * @param code The code from the first two bytes of a close payload.
 * @returns `false` for 0-999, 1004-1006, 1015, 1016-2999, 5000 up, and
 *   anything not an integer.
 *
 * @example Codes a peer may and may not send
 * ```ts
 * import { isValidCloseCode } from "./frame.ts";
 * if (!(isValidCloseCode(1000) && isValidCloseCode(4000))) throw new Error("Example failed");
 * if (!(!isValidCloseCode(1005) && !isValidCloseCode(2999))) throw new Error("Example failed");
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false;
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

/** The three reserved bits of a frame header (RFC 6455 §5.2). */
export interface RsvBits {
  /** RSV1: the "per-message compressed" bit under permessage-deflate. */
  readonly rsv1: boolean;
  /** RSV2: unused by any registered extension. */
  readonly rsv2: boolean;
  /** RSV3: unused by any registered extension. */
  readonly rsv3: boolean;
}

/** RSV bits all clear. */
export const NO_RSV: RsvBits = Object.freeze({ rsv1: false, rsv2: false, rsv3: false });

/** The largest payload of a control frame (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** The longest frame header: an 8-byte length and a masking key (RFC 6455 §5.2). */
export const MAX_HEADER_LENGTH = 14;

/**
 * One piece of a frame as the decoder hands it up: a whole frame, or, for a
 * large data frame, the part of its payload that has arrived so far.
 */
export interface Frame {
  /** The opcode; CONTINUATION for the later parts of a frame and later fragments. */
  readonly opcode: Opcode;
  /** The unmasked payload, as on the wire (before extensions rewrite it). */
  readonly payload: Uint8Array;
  /** `true` when this piece ends the frame's payload. */
  readonly frameFinished: boolean;
  /** The FIN bit of the frame this piece belongs to. */
  readonly messageFinished: boolean;
}
