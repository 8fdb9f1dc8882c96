/**
 * The plain records the inspector produces: one per handshake head, frame,
 * stretch of ignored bytes and end of stream. They hold only strings,
 * numbers, booleans and arrays of them, so `JSON.stringify` prints them as
 * they are and the renderers need nothing else.
 *
 * @module
 */

/** Which end sent the bytes being explained. */
export type Role = "client" | "server";

/** Anything the explainer reports, in stream order. */
export type InspectRecord = HandshakeRecord | FrameRecord | IgnoredRecord | EndRecord;

/** The opening handshake's request or response head (RFC 6455 §4). */
export interface HandshakeRecord {
  /** Discriminant. */
  readonly kind: "handshake";
  /** `client` for the request, `server` for the response. */
  readonly from: Role;
  /** Stream offset of the first byte of the head. */
  readonly offset: number;
  /** Bytes of the head, blank line included. */
  readonly length: number;
  /** The request or status line, or `null` when the head did not parse. */
  readonly startLine: string | null;
  /** The header fields in order, as the module's HTTP parser read them. */
  readonly headers: readonly (readonly [string, string])[];
  /** How the `Sec-WebSocket-Accept` token follows from the key, when the key is known. */
  readonly accept: AcceptDerivation | null;
  /** What the module's handshake code makes of this head. */
  readonly verdict: HandshakeVerdict;
  /** The permessage-deflate element offered (request) or accepted (response), or `null`. */
  readonly deflate: string | null;
  /** Remarks worth a line each. */
  readonly notes: readonly string[];
}

/** The accept-token derivation of RFC 6455 §4.2.2 item 5.4, one step per field. */
export interface AcceptDerivation {
  /** `Sec-WebSocket-Key`, as the client sent it. */
  readonly key: string;
  /** The key followed by the GUID of RFC 6455 §1.3. */
  readonly keyWithGuid: string;
  /** The SHA-1 digest of that string, in hex. */
  readonly sha1Hex: string;
  /** The digest in base64: the token a server must answer with. */
  readonly expected: string;
  /** The `Sec-WebSocket-Accept` the server sent, or `null` when not seen. */
  readonly received: string | null;
  /** Whether `received` equals `expected`; `null` with nothing to compare. */
  readonly correct: boolean | null;
}

/** The module's judgement of a handshake head. */
export interface HandshakeVerdict {
  /** `false` when the module could not be asked (a response whose request key is unknown). */
  readonly checked: boolean;
  /** Whether the handshake goes through. */
  readonly ok: boolean;
  /** The event the module yields or answers with: `Request`, `AcceptConnection`, `RejectConnection`, or `error`. */
  readonly event: string;
  /** The HTTP status of a rejection (sent or to be sent), else `null`. */
  readonly status: number | null;
  /** One sentence. */
  readonly message: string;
}

/** One named bit field of a frame header (RFC 6455 §5.2). */
export interface HeaderField {
  /** `FIN`, `RSV1`, `RSV2`, `RSV3`, `opcode`, `MASK`, `payload length`, `extended payload length` or `masking key`. */
  readonly name: string;
  /** Stream offset of the first byte holding the field. */
  readonly offset: number;
  /** The first bit of the field in that byte, 0 being the most significant. */
  readonly bit: number;
  /** Width in bits. */
  readonly width: number;
  /** The field's bits, most significant first, a space between bytes. */
  readonly bits: string;
  /** The field's value (a number, or hex for the masking key). */
  readonly value: number | string;
  /** What the value means. */
  readonly meaning: string;
}

/** The first bytes of a frame's payload, as sent and as read. */
export interface PayloadPreview {
  /** Stream offset of the first payload byte. */
  readonly offset: number;
  /** Payload bytes present in the stream (less than the header says when it ended early). */
  readonly length: number;
  /** Hex of the first bytes as on the wire, when masked; `null` for an unmasked frame. */
  readonly masked: string | null;
  /** Hex of the first bytes unmasked (still compressed when RSV1 marks DEFLATE data). */
  readonly unmasked: string;
  /** The unmasked bytes shown as ASCII, `.` for anything else. */
  readonly ascii: string;
  /** How many bytes the hex strings show. */
  readonly shown: number;
}

/** An event the module's `Connection` yielded, as plain data. */
export type EventRecord =
  | {
    readonly type: "TextMessage";
    /** The text, cut to the preview length. */
    readonly data: string;
    /** Characters of text in the event, before any cut. */
    readonly length: number;
    readonly frameFinished: boolean;
    readonly messageFinished: boolean;
  }
  | {
    readonly type: "BytesMessage";
    /** Hex of the first bytes. */
    readonly data: string;
    /** Bytes in the event. */
    readonly length: number;
    readonly frameFinished: boolean;
    readonly messageFinished: boolean;
  }
  | {
    readonly type: "Ping" | "Pong";
    /** Hex of the payload. */
    readonly data: string;
    readonly length: number;
  }
  | {
    readonly type: "CloseConnection";
    readonly code: number;
    /** The `CloseReason` name of the code, or `""`. */
    readonly codeName: string;
    readonly reason: string;
  };

/** Where and how the module failed the connection (RFC 6455 §7.1.7). */
export interface ProtocolErrorRecord {
  /** Stream offset of the byte whose arrival made the `Connection` fail. */
  readonly offset: number;
  /** The same byte, counted from the first byte of the frame. */
  readonly frameOffset: number;
  /** That byte's value as the module read it (unmasked in a masked payload). */
  readonly byte: number;
  /** The close code the module sends in answer. */
  readonly code: number;
  /** Its `CloseReason` name. */
  readonly codeName: string;
  /** The module's reason (its error message). */
  readonly reason: string;
}

/** One frame, or as much of it as the stream held or the module read. */
export interface FrameRecord {
  /** Discriminant. */
  readonly kind: "frame";
  /** 1 for the first frame of this direction. */
  readonly index: number;
  /** The end that sent the frame. */
  readonly from: Role;
  /** Stream offset of the first header byte. */
  readonly offset: number;
  /** Bytes of the frame shown: the whole frame, or up to the failing byte of a bad header, or what the stream held. */
  readonly length: number;
  /** Whether the module read the whole frame: its header and every payload byte announced. */
  readonly complete: boolean;
  /** Hex of the header bytes present. */
  readonly header: string;
  readonly fin: boolean | null;
  readonly rsv1: boolean | null;
  readonly rsv2: boolean | null;
  readonly rsv3: boolean | null;
  readonly opcode: number | null;
  /** `TEXT`, `BINARY`, `CONTINUATION`, `CLOSE`, `PING`, `PONG` or `reserved`. */
  readonly opcodeName: string | null;
  readonly masked: boolean | null;
  /** The length encoding used: 7 bits, 7 + 16 or 7 + 64. */
  readonly lengthForm: 7 | 16 | 64 | null;
  readonly payloadLength: number | null;
  /** Hex of the masking key. */
  readonly maskingKey: string | null;
  /** Every header field present, in order. */
  readonly fields: readonly HeaderField[];
  /** The payload's first bytes, or `null` when the module stopped in the header. */
  readonly payload: PayloadPreview | null;
  /** The events the `Connection` yielded for this frame (message pieces merged). */
  readonly events: readonly EventRecord[];
  /** The protocol error the frame caused, or `null`. */
  readonly error: ProtocolErrorRecord | null;
  /** Remarks: close code bytes, compression, a control frame between fragments. */
  readonly notes: readonly string[];
}

/** Bytes the module does not read: after a close, a protocol error or a refused handshake. */
export interface IgnoredRecord {
  /** Discriminant. */
  readonly kind: "ignored";
  readonly offset: number;
  readonly length: number;
  /** Hex of the first bytes. */
  readonly preview: string;
  /** Why nobody reads them. */
  readonly reason: string;
}

/** The end of the stream. */
export interface EndRecord {
  /** Discriminant. */
  readonly kind: "end";
  /** Bytes in the stream. */
  readonly offset: number;
  /** What the end means to the module. */
  readonly note: string;
  /** The events the module yields at end of stream (1006 when no close came first). */
  readonly events: readonly EventRecord[];
}
