/**
 * The inspector's explaining logic: the bytes of one direction of a
 * WebSocket connection in, plain records out. No I/O.
 *
 * What the records say the module does is what the module does: the
 * handshake is judged by `Handshake`, and every frame's bytes (copies) are
 * fed to a real `Connection` whose events are recorded. Only the display of
 * header fields comes from a reader of its own here, since the decoder keeps
 * its fields private.
 *
 * @module
 */

import { ByteBuffer } from "../../byte_buffer.ts";
import { Connection, type ConnectionEvent } from "../../connection.ts";
import { RemoteProtocolError } from "../../errors.ts";
import {
  AcceptConnection,
  BytesMessage,
  CloseConnection,
  Ping,
  Pong,
  RejectConnection,
  Request as WsRequest,
  TextMessage,
} from "../../events.ts";
import type { Extension } from "../../extensions.ts";
import { CloseReason, Opcode } from "../../frame.ts";
import { acceptToken, Handshake } from "../../handshake.ts";
import {
  HeadReader,
  HttpError,
  parseRequestHead,
  parseResponseHead,
  splitList,
} from "../../http1.ts";
import { DEFAULT_LIMITS } from "../../limits.ts";
import { mask } from "../../mask.ts";
import { PerMessageDeflate } from "../../permessage_deflate.ts";
import { sha1 } from "../../sha1.ts";
import { ConnectionType } from "../../state.ts";
import type {
  AcceptDerivation,
  EventRecord,
  FrameRecord,
  HandshakeRecord,
  HandshakeVerdict,
  HeaderField,
  InspectRecord,
  PayloadPreview,
  ProtocolErrorRecord,
  Role,
} from "./records.ts";

export type * from "./records.ts";

/** RFC 6455 §1.3: the GUID appended to the key; `acceptToken()` keeps its own copy private. */
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const REQUEST_PREFIX = new TextEncoder().encode("GET ");
const RESPONSE_PREFIX = new TextEncoder().encode("HTTP/");

/**
 * What the two directions of one connection learn from each other: the
 * server's response is checked against the client's key, and both
 * directions inflate frames with what the response negotiated.
 */
export interface Session {
  /** The request's `Sec-WebSocket-Key`. */
  key: string | null;
  /** The request's `Sec-WebSocket-Protocol` list, `null` before a request is seen. */
  subprotocols: string[] | null;
  /** The request's `Sec-WebSocket-Extensions` value. */
  offeredExtensions: string | null;
  /** Whether a response head has been seen. */
  responseSeen: boolean;
  /** The 101 response's `Sec-WebSocket-Extensions` value. */
  acceptedExtensions: string | null;
}

/**
 * A fresh session, for two explainers that watch the two directions of
 * one connection.
 *
 * @returns A session that knows nothing yet.
 */
export function newSession(): Session {
  return {
    key: null,
    subprotocols: null,
    offeredExtensions: null,
    responseSeen: false,
    acceptedExtensions: null,
  };
}

/** Options of {@linkcode Explainer}. */
export interface ExplainOptions {
  /** Who sent the bytes; found from the handshake or the first MASK bit unless given. */
  role?: Role;
  /** Inflate RSV1 messages as permessage-deflate even without a handshake saying so. */
  deflate?: boolean;
  /** The request's `Sec-WebSocket-Key`, to check a response seen without its request. */
  key?: string;
  /** Payload bytes shown in hex; 16 unless given. */
  previewBytes?: number;
  /** Characters of text shown per event; 80 unless given. */
  previewText?: number;
  /** Shared with the explainer of the other direction (live mode). */
  session?: Session;
}

type Phase = "start" | "head" | "frames" | "stopped";

// A frame whose bytes are still arriving. Header bytes are fed to the
// connection one at a time, so a header error is caught at its very byte.
interface PendingFrame {
  readonly offset: number;
  readonly header: number[];
  headerDone: boolean;
  payload: Uint8Array | null;
  readonly events: ConnectionEvent[];
  error: ProtocolErrorRecord | null;
}

/**
 * Explains one direction of a WebSocket byte stream, fed incrementally:
 * {@linkcode Explainer.push} the bytes as they come, then
 * {@linkcode Explainer.end}. Each call returns the records completed by
 * the bytes given; a frame is reported once all of it has arrived.
 *
 * The bytes passed in are never changed.
 *
 * @example The masked "Hello" of RFC 6455 §5.7
 * ```ts
 * import { Explainer } from "./explain.ts";
 * const explainer = new Explainer();
 * const [frame] = explainer.push(new Uint8Array([
 *   0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
 * ]));
 * console.assert(frame?.kind === "frame" && frame.events[0]?.type === "TextMessage");
 * ```
 */
export class Explainer {
  readonly #options: ExplainOptions;
  readonly #session: Session;
  readonly #previewBytes: number;
  readonly #previewText: number;
  readonly #buffer = new ByteBuffer();
  // Stream offset of the first byte in #buffer.
  #offset = 0;
  #phase: Phase = "start";
  #head: HeadReader | null = null;
  #headStart = 0;
  #headFrom: Role = "client";
  #role: Role | null;
  #stopReason = "";
  #deflateElement: string | null = null;
  // The connection whose events are reported, and a twin fed the same
  // frames one frame later: when a frame fails the connection, the twin
  // replays it byte by byte to find the byte at which the module failed.
  #connection: Connection | null = null;
  #twin: Connection | null = null;
  #frame: PendingFrame | null = null;
  #frameIndex = 0;
  #closed = false;

  /**
   * Make an explainer for one direction of a connection.
   *
   * @param options Role, deflate, key, preview sizes and a shared session.
   */
  constructor(options: ExplainOptions = {}) {
    this.#options = options;
    this.#session = options.session ?? newSession();
    this.#previewBytes = options.previewBytes ?? 16;
    this.#previewText = options.previewText ?? 80;
    this.#role = options.role ?? null;
  }

  /**
   * Feed the next bytes of the stream.
   *
   * @param bytes The bytes, in the order received; they are copied.
   * @returns The records these bytes completed.
   */
  push(bytes: Uint8Array): InspectRecord[] {
    if (bytes.length === 0) return [];
    this.#buffer.push(bytes.slice());
    return this.#run(false);
  }

  /**
   * The stream ended: report what is left, and the event the module yields
   * at end of stream.
   *
   * @returns The last records.
   */
  end(): InspectRecord[] {
    const records = this.#run(true);
    const total = this.#offset + this.#buffer.length;
    if (this.#phase === "start" || this.#phase === "head") {
      records.push({
        kind: "end",
        offset: total,
        note: total === 0
          ? "The stream is empty."
          : "The stream ended inside the handshake head: the module reports no event and the connection is CLOSED.",
        events: [],
      });
      return records;
    }
    if (this.#connection === null || this.#closed) {
      const note = this.#connection === null
        ? "End of stream."
        : "End of stream; the module had already stopped reading.";
      records.push({ kind: "end", offset: total, note, events: [] });
      return records;
    }
    this.#connection.receiveData(null);
    const events = [...this.#connection.events()].map((event) => this.#eventRecord(event));
    records.push({
      kind: "end",
      offset: total,
      note: "The stream ended without a close frame: the connection did not close cleanly.",
      events,
    });
    return records;
  }

  #run(final: boolean): InspectRecord[] {
    const records: InspectRecord[] = [];
    for (;;) {
      const before = this.#phase;
      if (before === "start") this.#start(final);
      if (this.#phase === "head") this.#readHead(records);
      if (this.#phase === "frames") this.#readFrames(records, final);
      if (this.#phase === "stopped") {
        this.#ignoreRest(records);
        return records;
      }
      if (this.#phase === before) return records;
    }
  }

  // Decides from the first bytes whether the stream opens with an HTTP head.
  #start(final: boolean): void {
    const length = this.#buffer.length;
    for (
      const [prefix, from] of [[REQUEST_PREFIX, "client"], [RESPONSE_PREFIX, "server"]] as const
    ) {
      let matches = true;
      for (let i = 0; i < Math.min(length, prefix.length); i++) {
        if (this.#buffer.byteAt(i) !== prefix[i]) matches = false;
      }
      if (!matches) continue;
      if (length < prefix.length) {
        if (final) break;
        return; // too early to tell
      }
      this.#phase = "head";
      this.#headFrom = from;
      this.#role ??= from;
      this.#head = new HeadReader(DEFAULT_LIMITS);
      this.#headStart = this.#offset;
      return;
    }
    if (length === 0 && !final) return;
    this.#phase = "frames";
  }

  #readHead(records: InspectRecord[]): void {
    if (this.#buffer.length === 0) return; // end() reports an unfinished head
    const chunk = this.#buffer.consume(this.#buffer.length);
    const chunkOffset = this.#offset;
    this.#offset += chunk.length;
    const fromClient = this.#headFrom === "client";
    let done;
    try {
      done = this.#head!.push(chunk);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      records.push(this.#badHead(error, fromClient));
      this.#stop("The head could not be parsed, so nothing after it is read.");
      return;
    }
    if (done === null) return;
    // The bytes after the head go back into the (now empty) buffer, to be
    // read as frames or as a body.
    this.#offset = chunkOffset + chunk.length - done.rest.length;
    // A copy: the frames after the head are unmasked in place, and the
    // caller's bytes are shown as they came.
    if (done.rest.length > 0) this.#buffer.push(done.rest.slice());
    const record = fromClient ? this.#request(done.head) : this.#response(done.head);
    records.push(record);
    const status = /^\S+ ([0-9]{3})/.exec(record.startLine ?? "")?.[1];
    if (!fromClient && status !== "101") {
      this.#stop("The upgrade was refused: what follows is the response body, not frames.");
      return;
    }
    this.#phase = "frames";
  }

  #badHead(error: HttpError, fromClient: boolean): HandshakeRecord {
    return {
      kind: "handshake",
      from: fromClient ? "client" : "server",
      offset: this.#headStart,
      length: this.#offset - this.#headStart,
      startLine: null,
      headers: [],
      accept: null,
      verdict: {
        checked: true,
        ok: false,
        event: fromClient ? "RejectConnection" : "error",
        status: fromClient ? error.status : null,
        message: error.message,
      },
      deflate: null,
      notes: [],
    };
  }

  #request(head: Uint8Array): HandshakeRecord {
    const notes: string[] = [];
    const { startLine, headers } = describeHead(head, "request");
    const session = this.#session;
    const key = headerValue(headers, "sec-websocket-key");
    session.key = key;
    session.subprotocols = headerList(headers, "sec-websocket-protocol");
    session.offeredExtensions = headerValue(headers, "sec-websocket-extensions");
    const verdict = checkRequest(head);
    const accept = key === null ? null : deriveAccept(key, null);
    if (key === null) notes.push("No Sec-WebSocket-Key: there is no accept token to derive.");
    if (!verdict.ok) {
      notes.push("The module's server refuses this request; any frames after it are shown anyway.");
    }
    // Which deflate settings the client's frames are inflated with is
    // decided when the first frame arrives: by then the response may be known.
    const offer = deflateElements(session.offeredExtensions)[0] ?? null;
    if (offer !== null) {
      notes.push(
        "The client offers permessage-deflate: its frames are inflated as the response accepts it, or as offered when no response is seen.",
      );
    }
    return {
      kind: "handshake",
      from: "client",
      offset: this.#headStart,
      length: head.length,
      startLine,
      headers,
      accept,
      verdict,
      deflate: offer,
      notes,
    };
  }

  #response(head: Uint8Array): HandshakeRecord {
    const notes: string[] = [];
    const { startLine, headers, status } = describeHead(head, "response");
    const session = this.#session;
    session.responseSeen = true;
    session.acceptedExtensions = status === 101
      ? headerValue(headers, "sec-websocket-extensions")
      : null;
    const key = this.#options.key ?? session.key;
    const received = headerValue(headers, "sec-websocket-accept");
    const accept = key === null ? null : deriveAccept(key, received);
    const verdict: HandshakeVerdict = key !== null ? checkResponse(head, key, session, headers) : {
      checked: false,
      ok: status === 101,
      event: status === 101 ? "AcceptConnection" : "RejectConnection",
      status: status === 101 ? null : status,
      message: status === 101
        ? "Not checked by the module: the request's Sec-WebSocket-Key is unknown (give it with --key)."
        : `The server refused the upgrade with status ${status}.`,
    };
    if (verdict.checked && !verdict.ok && status === 101) {
      notes.push(
        "The module's client fails the connection here; the frames that follow are shown anyway.",
      );
    }
    return this.#responseRecord(head, startLine, headers, accept, verdict, notes);
  }

  #responseRecord(
    head: Uint8Array,
    startLine: string | null,
    headers: [string, string][],
    accept: AcceptDerivation | null,
    verdict: HandshakeVerdict,
    notes: string[],
  ): HandshakeRecord {
    return {
      kind: "handshake",
      from: "server",
      offset: this.#headStart,
      length: head.length,
      startLine,
      headers,
      accept,
      verdict,
      deflate: deflateElements(this.#session.acceptedExtensions)[0] ?? null,
      notes,
    };
  }

  #stop(reason: string): void {
    this.#phase = "stopped";
    this.#stopReason = reason;
  }

  #ignoreRest(records: InspectRecord[]): void {
    const length = this.#buffer.length;
    if (length === 0) return;
    const bytes = this.#buffer.consume(length);
    records.push({
      kind: "ignored",
      offset: this.#offset,
      length,
      preview: hex(bytes.subarray(0, this.#previewBytes)),
      reason: this.#stopReason,
    });
    this.#offset += length;
  }

  // ---- Frames ----

  #readFrames(records: InspectRecord[], final: boolean): void {
    for (;;) {
      if (this.#frame === null) {
        if (this.#buffer.length === 0) return;
        this.#frame = {
          offset: this.#offset,
          header: [],
          headerDone: false,
          payload: null,
          events: [],
          error: null,
        };
      }
      const frame = this.#frame;
      if (!frame.headerDone) this.#readHeader(frame, final);
      if (frame.error === null && frame.headerDone && frame.payload === null) {
        this.#readPayload(frame, final);
      }
      if (frame.error === null && frame.payload === null && !final) return;
      records.push(this.#frameRecord(frame));
      this.#frame = null;
      if (frame.error !== null) {
        this.#stop("The connection failed at the byte marked: the module reads nothing after it.");
        return;
      }
      if (this.#closed) {
        this.#stop("After a close frame the module reads nothing more (RFC 6455 §5.5.1).");
        return;
      }
    }
  }

  // Feeds header bytes to the connection one at a time as they arrive.
  #readHeader(frame: PendingFrame, final: boolean): void {
    while (!frame.headerDone && frame.error === null && this.#buffer.length > 0) {
      if (this.#connection === null) {
        // The MASK bit of the first frame tells who sent the stream.
        if (this.#buffer.length < 2 && !final) return;
        this.#open(this.#buffer.length >= 2 ? (this.#buffer.byteAt(1) & 0x80) !== 0 : true);
      }
      const byte = this.#buffer.consume(1)[0]!;
      this.#offset++;
      frame.header.push(byte);
      frame.headerDone = frame.header.length === headerLengthOf(frame.header);
      const empty = frame.headerDone && payloadLengthOf(frame.header) === 0;
      this.#feed(frame, Uint8Array.of(byte), empty);
      if (empty && frame.error === null) frame.payload = new Uint8Array(0);
    }
  }

  // Takes the payload once all of it is here (or the stream ended) and
  // feeds it to the connection in one piece.
  #readPayload(frame: PendingFrame, final: boolean): void {
    const length = payloadLengthOf(frame.header)!;
    if (this.#buffer.length < length && !final) return;
    const take = Math.min(length, this.#buffer.length);
    const payload = this.#buffer.consume(take).slice();
    this.#offset += take;
    frame.payload = payload;
    if (take > 0) this.#feed(frame, payload.slice(), take === length);
  }

  // Feeds bytes of the current frame to the connection and keeps its events.
  // `last` is true when these bytes end the frame.
  #feed(frame: PendingFrame, bytes: Uint8Array, last: boolean): void {
    const connection = this.#connection!;
    connection.receiveData(bytes);
    for (const event of connection.events()) {
      frame.events.push(event);
      if (!(event instanceof CloseConnection)) continue;
      this.#closed = true;
      if (this.#isProtocolError(frame, event, last)) {
        frame.error = this.#locateError(frame, event);
      }
    }
    if (frame.error === null && last) {
      this.#twin!.receiveData(frameBytes(frame));
      for (const _ of this.#twin!.events()) { /* the twin only keeps pace */ }
    }
  }

  // `Connection` reports a received close and a protocol error alike, as a
  // CloseConnection: a close is genuine only when it comes with the last
  // byte of a close frame and says what that frame's payload says.
  #isProtocolError(frame: PendingFrame, event: CloseConnection, last: boolean): boolean {
    if (opcodeOf(frame.header) !== Opcode.CLOSE || !last) return true;
    const payload = unmasked(frame.header, frame.payload ?? new Uint8Array(0));
    const close = readClose(payload);
    return close === null || close.code !== event.code || close.reason !== event.reason;
  }

  // Replays the frame into the twin one byte at a time: the byte after
  // which it yields a CloseConnection is where the module failed.
  #locateError(frame: PendingFrame, event: CloseConnection): ProtocolErrorRecord {
    const bytes = frameBytes(frame);
    const twin = this.#twin!;
    let at = bytes.length - 1;
    search: for (let i = 0; i < bytes.length; i++) {
      twin.receiveData(bytes.slice(i, i + 1));
      for (const twinEvent of twin.events()) {
        if (twinEvent instanceof CloseConnection) {
          at = i;
          break search;
        }
      }
    }
    const wire = bytes[at]!;
    const payloadIndex = at - frame.header.length;
    const key = maskingKeyOf(frame.header);
    return {
      offset: frame.offset + at,
      frameOffset: at,
      byte: payloadIndex >= 0 && key !== null ? wire ^ key[payloadIndex & 3]! : wire,
      code: event.code,
      codeName: closeCodeName(event.code),
      reason: event.reason,
    };
  }

  #open(firstFrameMasked: boolean): void {
    const role = this.#role ??= firstFrameMasked ? "client" : "server";
    // Bytes a client sent are read by a server, and the other way round.
    const type = role === "client" ? ConnectionType.SERVER : ConnectionType.CLIENT;
    const element = this.#deflateFor();
    this.#deflateElement = element;
    const make = (): Connection => {
      const extensions: Extension[] = [];
      if (element !== null) {
        const extension = enableDeflate(type, element);
        if (extension !== null) extensions.push(extension);
      }
      return new Connection(type, { extensions });
    };
    this.#connection = make();
    this.#twin = make();
  }

  #deflateFor(): string | null {
    const session = this.#session;
    const accepted = deflateElements(session.acceptedExtensions)[0];
    if (accepted !== undefined) return accepted;
    if (!session.responseSeen) {
      const offered = deflateElements(session.offeredExtensions)[0];
      if (offered !== undefined) return offered;
    }
    return this.#options.deflate === true ? "permessage-deflate" : null;
  }

  #frameRecord(frame: PendingFrame): FrameRecord {
    const header = frame.header;
    const key = maskingKeyOf(header);
    const notes: string[] = [];
    let payload: PayloadPreview | null = null;
    if (frame.payload !== null) {
      const shown = frame.payload.subarray(0, this.#previewBytes);
      const plain = unmasked(header, shown);
      payload = {
        offset: frame.offset + header.length,
        length: frame.payload.length,
        masked: key === null ? null : hex(shown),
        unmasked: hex(plain),
        ascii: ascii(plain),
        shown: shown.length,
      };
      notes.push(...this.#payloadNotes(frame));
    }
    const [first, second] = header;
    const opcode = first === undefined ? null : first & 0x0f;
    const flag = (bit: number) => first === undefined ? null : (first & bit) !== 0;
    return {
      kind: "frame",
      index: ++this.#frameIndex,
      from: this.#role ?? "client",
      offset: frame.offset,
      length: header.length + (frame.payload?.length ?? 0),
      complete: frame.headerDone && frame.payload?.length === payloadLengthOf(header),
      header: hex(header),
      fin: flag(0x80),
      rsv1: flag(0x40),
      rsv2: flag(0x20),
      rsv3: flag(0x10),
      opcode,
      opcodeName: opcode === null ? null : opcodeName(opcode),
      masked: second === undefined ? null : (second & 0x80) !== 0,
      lengthForm: second === undefined ? null : lengthFormOf(second),
      payloadLength: payloadLengthOf(header),
      maskingKey: key === null ? null : hex(key),
      fields: headerFields(header, frame.offset),
      payload,
      events: mergeEvents(frame.events).map((event) => this.#eventRecord(event)),
      error: frame.error,
      notes,
    };
  }

  #payloadNotes(frame: PendingFrame): string[] {
    const notes: string[] = [];
    const header = frame.header;
    const opcode = opcodeOf(header);
    if (opcode === Opcode.CLOSE && frame.payload !== null && frame.payload.length >= 2) {
      const plain = unmasked(header, frame.payload.subarray(0, 2));
      const code = (plain[0]! << 8) | plain[1]!;
      const name = closeCodeName(code);
      notes.push(
        `Close code: the first two payload bytes ${hex(plain)} = ${code}${
          name === "" ? "" : ` (${name})`
        }; the rest is the UTF-8 reason.`,
      );
    }
    if (((header[0] ?? 0) & 0x40) !== 0 && this.#deflateElement !== null) {
      notes.push(
        "RSV1: the message is compressed (permessage-deflate); the event shows it inflated.",
      );
    }
    return notes;
  }

  #eventRecord(event: ConnectionEvent): EventRecord {
    if (event instanceof TextMessage) {
      return {
        type: "TextMessage",
        data: event.data.slice(0, this.#previewText),
        length: event.data.length,
        frameFinished: event.frameFinished,
        messageFinished: event.messageFinished,
      };
    }
    if (event instanceof BytesMessage) {
      return {
        type: "BytesMessage",
        data: hex(event.data.subarray(0, this.#previewBytes)),
        length: event.data.length,
        frameFinished: event.frameFinished,
        messageFinished: event.messageFinished,
      };
    }
    if (event instanceof Ping || event instanceof Pong) {
      return {
        type: event instanceof Ping ? "Ping" : "Pong",
        data: hex(event.payload.subarray(0, this.#previewBytes)),
        length: event.payload.length,
      };
    }
    return {
      type: "CloseConnection",
      code: event.code,
      codeName: closeCodeName(event.code),
      reason: event.reason,
    };
  }
}

/**
 * Explain a whole recorded stream of one direction.
 *
 * @param bytes The stream; it is not changed.
 * @param options As for {@linkcode Explainer}.
 * @returns Every record, the end of stream included.
 *
 * @example An unmasked ping from a server
 * ```ts
 * import { explain } from "./explain.ts";
 * const records = explain(new Uint8Array([0x89, 0x00]));
 * console.assert(records[0]?.kind === "frame" && records[0].from === "server");
 * ```
 */
export function explain(bytes: Uint8Array, options: ExplainOptions = {}): InspectRecord[] {
  const explainer = new Explainer(options);
  return [...explainer.push(bytes), ...explainer.end()];
}

// ---- The handshake ----

function describeHead(
  head: Uint8Array,
  kind: "request" | "response",
): { startLine: string | null; headers: [string, string][]; status: number | null } {
  const text = latin1(head);
  const startLine = text.slice(0, text.indexOf("\r\n"));
  try {
    if (kind === "request") {
      return { startLine, headers: parseRequestHead(head).headers, status: null };
    }
    const parsed = parseResponseHead(head);
    return { startLine, headers: parsed.headers, status: parsed.statusCode };
  } catch {
    // The verdict reports the parse error; show the raw lines meanwhile.
    const headers = text.split("\r\n").slice(1).filter((line) => line !== "").map((
      line,
    ): [string, string] => {
      const colon = line.indexOf(":");
      return colon < 0 ? [line, ""] : [line.slice(0, colon), line.slice(colon + 1).trim()];
    });
    const status = /^\S+ ([0-9]{3})/.exec(startLine)?.[1];
    return { startLine, headers, status: status === undefined ? null : Number(status) };
  }
}

function checkRequest(head: Uint8Array): HandshakeVerdict {
  const handshake = new Handshake(ConnectionType.SERVER);
  try {
    handshake.receiveData(head.slice());
    for (const event of handshake.events()) {
      if (event instanceof WsRequest) {
        return {
          checked: true,
          ok: true,
          event: "Request",
          status: null,
          message: `A valid upgrade request: the module's server yields a Request for ${
            JSON.stringify(event.target)
          } on host ${JSON.stringify(event.host)}.`,
        };
      }
    }
    return { checked: true, ok: false, event: "error", status: null, message: "No event." };
  } catch (error) {
    if (error instanceof RemoteProtocolError && error.eventHint instanceof RejectConnection) {
      return {
        checked: true,
        ok: false,
        event: "RejectConnection",
        status: error.eventHint.statusCode,
        message: error.message,
      };
    }
    return { checked: true, ok: false, event: "error", status: null, message: String(error) };
  }
}

// Runs the module's own client-side checks of a 101 (RFC 6455 §4.1) on a
// recorded response, by replaying the recorded key.
function checkResponse(
  head: Uint8Array,
  key: string,
  session: Session,
  headers: readonly (readonly [string, string])[],
): HandshakeVerdict {
  const keyBytes = decodeKey(key);
  if (keyBytes === null) {
    return {
      checked: false,
      ok: false,
      event: "error",
      status: null,
      message: "Not checked by the module: the request's key is not 16 bytes in base64.",
    };
  }
  // A request seen in this session tells what was offered; without one,
  // assume the client offered whatever the server picked.
  const subprotocols = session.subprotocols ?? headerList(headers, "sec-websocket-protocol");
  const offers = session.subprotocols === null
    ? headerValue(headers, "sec-websocket-extensions")
    : session.offeredExtensions;
  const extensions = deflateElements(offers).length > 0 ? [new PerMessageDeflate()] : [];
  // The module's own client, replaying the recorded key.
  const handshake = new Handshake(ConnectionType.CLIENT, { key: keyBytes });
  handshake.send(
    new WsRequest({ host: "inspector.invalid", target: "/", subprotocols, extensions }),
  );
  try {
    handshake.receiveData(head.slice());
    for (const event of handshake.events()) {
      if (event instanceof AcceptConnection) {
        return {
          checked: true,
          ok: true,
          event: "AcceptConnection",
          status: null,
          message: "The module's client accepts this response: the connection is OPEN.",
        };
      }
      if (event instanceof RejectConnection) {
        return {
          checked: true,
          ok: false,
          event: "RejectConnection",
          status: event.statusCode,
          message: `The server refused the upgrade with status ${event.statusCode}.`,
        };
      }
    }
    return { checked: true, ok: false, event: "error", status: null, message: "No event." };
  } catch (error) {
    return {
      checked: true,
      ok: false,
      event: "error",
      status: null,
      message: error instanceof Error ? error.message : String(error),
    };
  }
}

function decodeKey(key: string): Uint8Array | null {
  try {
    const binary = atob(key);
    if (binary.length !== 16 || btoa(binary) !== key) return null;
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/**
 * The accept-token derivation of RFC 6455 §4.2.2, step by step, with the
 * module's `sha1` and `acceptToken`.
 *
 * @param key The `Sec-WebSocket-Key`.
 * @param received The `Sec-WebSocket-Accept` to check, or `null`.
 * @returns Each step, and whether `received` is right.
 *
 * @example The example of RFC 6455 §1.3
 * ```ts
 * import { deriveAccept } from "./explain.ts";
 * const steps = deriveAccept("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * console.assert(steps.sha1Hex === "b37a4f2cc0624f1690f64606cf385945b2bec4ea" && steps.correct === true);
 * ```
 */
export function deriveAccept(key: string, received: string | null): AcceptDerivation {
  const keyWithGuid = key + ACCEPT_GUID;
  const digest = sha1(new TextEncoder().encode(keyWithGuid));
  const expected = acceptToken(key);
  if (btoa(String.fromCharCode(...digest)) !== expected) {
    throw new Error("The inspector's derivation no longer matches acceptToken()");
  }
  return {
    key,
    keyWithGuid,
    sha1Hex: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    expected,
    received,
    correct: received === null ? null : received === expected,
  };
}

function headerValue(headers: readonly (readonly [string, string])[], name: string): string | null {
  const values = headers.filter(([field]) => field.toLowerCase() === name).map(([, value]) =>
    value
  );
  return values.length === 0 ? null : values.join(", ");
}

function headerList(headers: readonly (readonly [string, string])[], name: string): string[] {
  const value = headerValue(headers, name);
  if (value === null) return [];
  try {
    return splitList(value);
  } catch {
    return [];
  }
}

function deflateElements(value: string | null): string[] {
  if (value === null) return [];
  let elements: string[];
  try {
    elements = splitList(value);
  } catch {
    return [];
  }
  return elements.filter((element) =>
    element.split(";")[0]!.trim().toLowerCase() === "permessage-deflate"
  );
}

// A PerMessageDeflate enabled as the reading end negotiated it: a server
// reads client frames, so it accepts the element; a client reads server
// frames, so it finalizes with it.
function enableDeflate(type: ConnectionType, element: string): Extension | null {
  const extension = new PerMessageDeflate();
  try {
    if (type === ConnectionType.SERVER) extension.accept(element);
    else extension.finalize(element);
  } catch {
    return null;
  }
  return extension.enabled() ? extension : null;
}

// ---- Frame headers, for display ----

function headerLengthOf(header: readonly number[]): number | null {
  const second = header[1];
  if (second === undefined) return null;
  const short = second & 0x7f;
  const extended = short === 126 ? 2 : short === 127 ? 8 : 0;
  return 2 + extended + ((second & 0x80) !== 0 ? 4 : 0);
}

function payloadLengthOf(header: readonly number[]): number | null {
  const second = header[1];
  if (second === undefined) return null;
  const short = second & 0x7f;
  if (short < 126) return short;
  const bytes = short === 126 ? 2 : 8;
  if (header.length < 2 + bytes) return null;
  let length = 0;
  for (let i = 0; i < bytes; i++) length = length * 256 + header[2 + i]!;
  return length;
}

function lengthFormOf(second: number): 7 | 16 | 64 {
  const short = second & 0x7f;
  return short === 126 ? 16 : short === 127 ? 64 : 7;
}

function opcodeOf(header: readonly number[]): number | null {
  return header[0] === undefined ? null : header[0] & 0x0f;
}

function maskingKeyOf(header: readonly number[]): Uint8Array | null {
  const length = headerLengthOf(header);
  if (length === null || ((header[1] ?? 0) & 0x80) === 0 || header.length < length) return null;
  return Uint8Array.from(header.slice(length - 4, length));
}

function unmasked(header: readonly number[], payload: Uint8Array): Uint8Array {
  const key = maskingKeyOf(header);
  const copy = payload.slice();
  if (key !== null) mask(copy, key);
  return copy;
}

function opcodeName(opcode: number): string {
  const name = Opcode[opcode];
  if (name !== undefined) return name;
  return opcode >= 0x8 ? "reserved control opcode" : "reserved data opcode";
}

const OPCODE_MEANING: Readonly<Record<number, string>> = {
  [Opcode.CONTINUATION]: "continues a fragmented message",
  [Opcode.TEXT]: "starts a text message (UTF-8)",
  [Opcode.BINARY]: "starts a binary message",
  [Opcode.CLOSE]: "close (control)",
  [Opcode.PING]: "ping (control)",
  [Opcode.PONG]: "pong (control)",
};

function headerFields(header: readonly number[], offset: number): HeaderField[] {
  const fields: HeaderField[] = [];
  const first = header[0];
  if (first === undefined) return fields;
  const bit = (value: number, at: number) => (value >> (7 - at)) & 1;
  const flag = (name: string, at: number, set: string, clear: string) => {
    const value = bit(first, at);
    fields.push({
      name,
      offset,
      bit: at,
      width: 1,
      bits: String(value),
      value,
      meaning: value === 1 ? set : clear,
    });
  };
  flag("FIN", 0, "final frame of the message", "more frames of this message follow");
  flag("RSV1", 1, "set: needs an extension (permessage-deflate: compressed)", "clear");
  flag("RSV2", 2, "set: needs an extension", "clear");
  flag("RSV3", 3, "set: needs an extension", "clear");
  const opcode = first & 0x0f;
  fields.push({
    name: "opcode",
    offset,
    bit: 4,
    width: 4,
    bits: binary(opcode, 4),
    value: opcode,
    meaning: `${opcodeName(opcode)}${
      OPCODE_MEANING[opcode] === undefined ? "" : `: ${OPCODE_MEANING[opcode]}`
    }`,
  });

  const second = header[1];
  if (second === undefined) return fields;
  const masked = (second & 0x80) !== 0;
  fields.push({
    name: "MASK",
    offset: offset + 1,
    bit: 0,
    width: 1,
    bits: masked ? "1" : "0",
    value: masked ? 1 : 0,
    meaning: masked
      ? "masked: a masking key follows (clients mask every frame)"
      : "not masked (servers never mask)",
  });
  const short = second & 0x7f;
  fields.push({
    name: "payload length",
    offset: offset + 1,
    bit: 1,
    width: 7,
    bits: binary(short, 7),
    value: short,
    meaning: short < 126
      ? `${short} bytes (7-bit form, 0-125)`
      : short === 126
      ? "126: the length is in the next 16 bits"
      : "127: the length is in the next 64 bits",
  });
  let at = 2;
  if (short >= 126) {
    const size = short === 126 ? 2 : 8;
    const bytes = header.slice(2, 2 + size);
    if (bytes.length < size) return fields;
    // BigInt: a 64-bit length past 2^53 would show rounded as a number.
    let length = 0n;
    for (const byte of bytes) length = length * 256n + BigInt(byte);
    fields.push({
      name: "extended payload length",
      offset: offset + 2,
      bit: 0,
      width: size * 8,
      bits: bytes.map((byte) => binary(byte, 8)).join(" "),
      value: length <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(length) : String(length),
      meaning: `${length} bytes (${
        size === 2 ? "16-bit form, 126-65535" : "64-bit form, 65536 up"
      })`,
    });
    at += size;
  }
  if (masked) {
    const key = header.slice(at, at + 4);
    if (key.length < 4) return fields;
    fields.push({
      name: "masking key",
      offset: offset + at,
      bit: 0,
      width: 32,
      bits: key.map((byte) => binary(byte, 8)).join(" "),
      value: hex(key),
      meaning: "payload byte i is XORed with key byte i mod 4",
    });
  }
  return fields;
}

// ---- Helpers ----

// A fresh copy of the frame's bytes as received, for a connection to own.
function frameBytes(frame: PendingFrame): Uint8Array {
  const payload = frame.payload ?? new Uint8Array(0);
  const bytes = new Uint8Array(frame.header.length + payload.length);
  bytes.set(frame.header);
  bytes.set(payload, frame.header.length);
  return bytes;
}

// Merges consecutive pieces of one message into one event, so a frame fed
// in pieces reads as the frame it is.
function mergeEvents(events: readonly ConnectionEvent[]): ConnectionEvent[] {
  const merged: ConnectionEvent[] = [];
  for (const event of events) {
    const last = merged.at(-1);
    if (
      last instanceof TextMessage && event instanceof TextMessage && !last.frameFinished
    ) {
      merged[merged.length - 1] = new TextMessage({
        data: last.data + event.data,
        frameFinished: event.frameFinished,
        messageFinished: event.messageFinished,
      });
    } else if (
      last instanceof BytesMessage && event instanceof BytesMessage && !last.frameFinished
    ) {
      const data = new Uint8Array(last.data.length + event.data.length);
      data.set(last.data);
      data.set(event.data, last.data.length);
      merged[merged.length - 1] = new BytesMessage({
        data,
        frameFinished: event.frameFinished,
        messageFinished: event.messageFinished,
      });
    } else {
      merged.push(event);
    }
  }
  return merged;
}

function readClose(payload: Uint8Array): { code: number; reason: string } | null {
  if (payload.length === 0) return { code: CloseReason.NO_STATUS_RCVD, reason: "" };
  if (payload.length === 1) return null;
  try {
    const reason = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      payload.subarray(2),
    );
    return { code: (payload[0]! << 8) | payload[1]!, reason };
  } catch {
    return null;
  }
}

function closeCodeName(code: number): string {
  return CloseReason[code] ?? "";
}

function binary(value: number, width: number): string {
  return value.toString(2).padStart(width, "0");
}

/**
 * Bytes as lowercase hex pairs separated by spaces.
 *
 * @param bytes The bytes.
 * @returns For example `81 05 48`.
 */
export function hex(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function ascii(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".").join("");
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}
