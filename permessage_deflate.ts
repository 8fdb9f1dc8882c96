/**
 * The permessage-deflate extension (RFC 7692): negotiation of its four
 * parameters and the per-message DEFLATE transformation, run synchronously
 * on pako's zlib port so it fits inside `events()` and `send()`.
 *
 * @module
 */

import * as pako from "pako";
import { allocateKept, concatBytes } from "./_bytes.ts";
import type { Extension, OutboundFrame } from "./extensions.ts";
import { failConnection, RemoteProtocolError } from "./errors.ts";
import { isControlOpcode, NO_RSV, Opcode, type RsvBits } from "./frame.ts";
import { DEFAULT_LIMITS } from "./limits.ts";

/** Options of {@linkcode PerMessageDeflate}; every one may be left out. */
export interface PerMessageDeflateOptions {
  /**
   * Client: promise (in the offer) never to use context takeover. Server:
   * require the client to reset its compressor after every message
   * (RFC 7692 §7.1.1.2). Default `false`.
   */
  clientNoContextTakeover?: boolean;
  /**
   * Client: ask the server to reset its compressor after every message.
   * Server: reset ours after every message, whatever the client asked
   * (RFC 7692 §7.1.1.1). Either way the side that resets drops its
   * compression state between messages, trading ratio for memory.
   * Default `false`.
   */
  serverNoContextTakeover?: boolean;
  /**
   * The client's LZ77 window, 8 to 15 bits (RFC 7692 §7.1.2.2). Client:
   * `null` (the default) offers a bare `client_max_window_bits` ("the server
   * may pick"), a number offers and keeps to that limit. Server: a number
   * limits the client's window, and offers that do not let us (no
   * `client_max_window_bits` in them) are declined when it is below 15.
   */
  clientMaxWindowBits?: number | null;
  /**
   * The server's LZ77 window, 8 to 15 bits (RFC 7692 §7.1.2.1). Client: a
   * number asks the server to compress with at most that window. Server: a
   * number limits our own window; a smaller value in the offer wins.
   * Default `null`: 15 bits, not mentioned in the offer.
   */
  serverMaxWindowBits?: number | null;
  /**
   * Messages sent in one frame and shorter than this many bytes go out
   * uncompressed: DEFLATE rarely shrinks a few bytes, and their cost in
   * CPU stays. Default 32; 0 compresses every message.
   */
  threshold?: number;
  /**
   * The largest decompressed message accepted, in bytes; over it the
   * connection fails with 1009. Default `DEFAULT_LIMITS.maxMessageSize`;
   * on a connection, its own `maxMessageSize` holds too when smaller.
   */
  maxMessageSize?: number;
  /** zlib's compression level, 0 (stored) to 9 (smallest). Default 6. */
  compressionLevel?: number;
  /**
   * zlib's `memLevel`, 1 to 9: how much memory our compressor holds while
   * it keeps context between messages, traded against speed and ratio.
   * With a window of `w` bits its buffers take
   * `4 * 2^w + 2^(memoryLevel + 9)` bytes: 256 KiB at the defaults (15
   * bits, 8), 32 KiB at 12 bits and 5, as Python's websockets compresses.
   * Default 8.
   */
  memoryLevel?: number;
}

/** The extension token (RFC 7692 §7). */
const NAME = "permessage-deflate";

/**
 * What the receiver appends to a compressed message before inflating it,
 * and what the sender strips after its sync flush (RFC 7692 §7.2.1,
 * §7.2.2): the LEN and NLEN of an empty stored block.
 */
const TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);

/** The payload of an empty compressed message (RFC 7692 §7.2.3.6). */
const EMPTY_MESSAGE = new Uint8Array([0x00]);

const EMPTY = new Uint8Array(0);

const RSV1: RsvBits = Object.freeze({ rsv1: true, rsv2: false, rsv3: false });

/**
 * Output space for one zlib call. Every call is synchronous and its output
 * is copied out before the next, so one module-wide buffer serves every
 * connection. It also bounds how far inflation can overshoot the limit.
 */
const OUTPUT_CHUNK = 64 * 1024;
const scratch = new Uint8Array(OUTPUT_CHUNK);

/** zlib's usual memory level: a 64 KiB hash table and a 64 KiB symbol buffer. */
const MEM_LEVEL = 8;

/**
 * zlib streams a connection gave up after a message whose compressor
 * resets (no context takeover), kept for the next such message on any
 * connection: making one allocates its tables and window, a dozen typed
 * arrays, each a buffer allocation in Deno. Idle connections still hold
 * none, and a stream is reset before it is kept, so no history crosses.
 */
class SpareStreams {
  readonly #max: number;
  readonly #spares: { key: number; strm: pako.ZStream }[] = [];

  constructor(max: number) {
    this.#max = max;
  }

  /** A kept stream made with the same settings (`key`), or `null`. */
  take(key: number): pako.ZStream | null {
    const at = this.#spares.findIndex((spare) => spare.key === key);
    if (at < 0) return null;
    const { strm } = this.#spares[at]!;
    this.#spares[at] = this.#spares[this.#spares.length - 1]!;
    this.#spares.pop();
    return strm;
  }

  /** Keep a stream that was reset, unless enough are kept already. */
  give(key: number, strm: pako.ZStream): void {
    if (this.#spares.length < this.#max) this.#spares.push({ key, strm });
  }
}

// At the defaults a deflater holds 256 KiB, an inflater 40 KiB.
const spareDeflaters = new SpareStreams(2);
const spareInflaters = new SpareStreams(4);

/** RFC 6455 §9.1 `token` (RFC 2616 tchar). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A window size: a decimal integer without leading zeroes from 8 to 15
 * (RFC 7692 §7.1.2.1, §7.1.2.2).
 */
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

/** The parameters of one offer or response element, validated. */
interface DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number | null;
  /** `true`: present without a value, allowed in an offer only. */
  clientMaxWindowBits: number | true | null;
}

/**
 * The permessage-deflate extension (RFC 7692 §7): messages are DEFLATE
 * compressed, flagged by RSV1 on their first frame. One instance serves one
 * connection, because it holds that connection's compression state: make a
 * fresh one per connection. A client puts it in its `Request`'s extensions;
 * a server lists it among the extensions it is willing to accept.
 *
 * Inbound, decompression is incremental and bounded: a message inflating
 * past `maxMessageSize` (or the connection's, when smaller) fails the
 * connection with 1009 before more than that many bytes (plus one) were
 * produced, and corrupt compressed data fails it with 1007.
 *
 * @example A client and a server agreeing, then a round trip
 * ```ts
 * import { PerMessageDeflate } from "./permessage_deflate.ts";
 * import { Opcode, NO_RSV } from "./frame.ts";
 *
 * const client = new PerMessageDeflate({ threshold: 0 });
 * const server = new PerMessageDeflate({ serverNoContextTakeover: true });
 * const answer = server.accept(client.offer());
 * if (answer !== "permessage-deflate; server_no_context_takeover") throw new Error("Example failed");
 * client.finalize(answer!);
 *
 * const hello = new TextEncoder().encode("Hello");
 * const frame = client.frameOutbound(Opcode.TEXT, NO_RSV, hello, true);
 * if (!frame.rsv.rsv1) throw new Error("Example failed");
 *
 * server.frameInboundHeader(Opcode.TEXT, frame.rsv, frame.data.length);
 * const head = server.frameInboundPayloadData(frame.data);
 * const tail = server.frameInboundComplete(true) ?? new Uint8Array(0);
 * const text = new TextDecoder().decode(new Uint8Array([...head, ...tail]));
 * if (text !== "Hello") throw new Error("Example failed");
 * ```
 */
export class PerMessageDeflate implements Extension {
  /** The extension token, `permessage-deflate`. */
  readonly name: "permessage-deflate" = NAME;

  readonly #clientNoContextTakeover: boolean;
  readonly #serverNoContextTakeover: boolean;
  readonly #clientMaxWindowBits: number | null;
  readonly #serverMaxWindowBits: number | null;
  readonly #threshold: number;
  readonly #maxMessageSize: number;
  readonly #level: number;
  readonly #memoryLevel: number;

  #enabled = false;
  // What negotiation agreed, seen from this end: inbound is the peer's
  // compressor, outbound ours.
  #inboundWindowBits = 15;
  #outboundWindowBits = 15;
  #inboundNoContextTakeover = false;
  #outboundNoContextTakeover = false;

  // Created (or taken from the spares) on first use, and given up after a
  // message when the side that compresses agreed not to take over context:
  // idle connections then hold no zlib state.
  #deflater: pako.ZStream | null = null;
  #inflater: pako.ZStream | null = null;

  #inboundControlFrame = false;
  #inboundCompressed = false;
  #inboundSize = 0;
  // Whether the message in progress brought any compressed bytes.
  #inboundFed = false;
  // An error found while inflating, raised once the bytes before it went up.
  #pendingError: RemoteProtocolError | null = null;
  #inflateEnded = false;
  #outboundCompressed = false;

  /**
   * Make the extension for one connection.
   *
   * @param options What to offer or accept, and the limits.
   * @throws {RangeError} When an option is not an integer in its range
   *   (window bits 8-15, `compressionLevel` 0-9, `memoryLevel` 1-9,
   *   sizes from 0).
   *
   * @example Asking the server for a small window
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * const ext = new PerMessageDeflate({ serverMaxWindowBits: 10 });
   * if (ext.offer() !== "permessage-deflate; client_max_window_bits; server_max_window_bits=10") throw new Error("Example failed");
   * ```
   */
  constructor(options: PerMessageDeflateOptions = {}) {
    this.#clientNoContextTakeover = options.clientNoContextTakeover ?? false;
    this.#serverNoContextTakeover = options.serverNoContextTakeover ?? false;
    this.#clientMaxWindowBits = checkWindowBits(
      "clientMaxWindowBits",
      options.clientMaxWindowBits ?? null,
    );
    this.#serverMaxWindowBits = checkWindowBits(
      "serverMaxWindowBits",
      options.serverMaxWindowBits ?? null,
    );
    this.#threshold = checkInteger("threshold", options.threshold ?? 32, 0);
    this.#maxMessageSize = checkInteger(
      "maxMessageSize",
      options.maxMessageSize ?? DEFAULT_LIMITS.maxMessageSize,
      0,
    );
    this.#level = checkInteger("compressionLevel", options.compressionLevel ?? 6, 0, 9);
    this.#memoryLevel = checkInteger("memoryLevel", options.memoryLevel ?? MEM_LEVEL, 1, 9);
  }

  /**
   * Whether negotiation enabled the extension.
   *
   * @returns `true` after a successful `accept()` or `finalize()`.
   *
   * @example
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * const ext = new PerMessageDeflate();
   * if (ext.enabled()) throw new Error("Example failed");
   * ext.accept("permessage-deflate");
   * if (!ext.enabled()) throw new Error("Example failed");
   * ```
   */
  enabled(): boolean {
    return this.#enabled;
  }

  /**
   * Client side: the offer to send in `Sec-WebSocket-Extensions`. It always
   * carries `client_max_window_bits`, since we can compress with any window
   * the server picks (RFC 7692 §7.1.2.2).
   *
   * @returns The offer element.
   *
   * @example
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * const ext = new PerMessageDeflate({ clientNoContextTakeover: true });
   * if (ext.offer() !== "permessage-deflate; client_max_window_bits; client_no_context_takeover") throw new Error("Example failed");
   * ```
   */
  offer(): string {
    const parts = [NAME];
    parts.push(
      this.#clientMaxWindowBits === null
        ? "client_max_window_bits"
        : `client_max_window_bits=${this.#clientMaxWindowBits}`,
    );
    if (this.#serverMaxWindowBits !== null) {
      parts.push(`server_max_window_bits=${this.#serverMaxWindowBits}`);
    }
    if (this.#clientNoContextTakeover) parts.push("client_no_context_takeover");
    if (this.#serverNoContextTakeover) parts.push("server_no_context_takeover");
    return parts.join("; ");
  }

  /**
   * Server side: answer one offer element. Offers with unknown, repeated or
   * invalid parameters are declined (RFC 7692 §7), as are offers we cannot
   * honour. Accepting makes this end the server and enables the extension;
   * the handshake tries the client's offers in order and stops at the first
   * one accepted.
   *
   * @param offer One comma-separated element of the client's header.
   * @returns The response element, or `null` to decline this offer.
   *
   * @example Agreeing on a smaller server window
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * const ext = new PerMessageDeflate();
   * const answer = ext.accept("permessage-deflate; server_max_window_bits=10");
   * if (answer !== "permessage-deflate; server_max_window_bits=10") throw new Error("Example failed");
   * if (ext.accept("permessage-deflate; x_foo") !== null) throw new Error("Example failed");
   * ```
   */
  accept(offer: string): string | null {
    const params = parseElement(offer, "offer");
    if (typeof params === "string") return null;

    // §7.1.2.1: we must compress with at most the offered window; our own
    // option may ask for less, which we may always announce.
    let serverBits = this.#serverMaxWindowBits;
    if (params.serverMaxWindowBits !== null) {
      serverBits = Math.min(serverBits ?? 15, params.serverMaxWindowBits);
    }

    // §7.1.2.2: we may limit the client's window only when its offer says
    // it supports that; a value in the offer is its own promise.
    let clientBits: number | null = null;
    if (params.clientMaxWindowBits === null) {
      if (this.#clientMaxWindowBits !== null && this.#clientMaxWindowBits < 15) return null;
    } else if (params.clientMaxWindowBits !== true || this.#clientMaxWindowBits !== null) {
      const offered = params.clientMaxWindowBits === true ? 15 : params.clientMaxWindowBits;
      clientBits = Math.min(offered, this.#clientMaxWindowBits ?? 15);
    }

    // §7.1.1: a request for either reset is always within our means, and
    // our options may impose them whatever the offer said.
    const serverReset = params.serverNoContextTakeover || this.#serverNoContextTakeover;
    const clientReset = params.clientNoContextTakeover || this.#clientNoContextTakeover;

    const parts = [NAME];
    if (serverReset) parts.push("server_no_context_takeover");
    if (clientReset) parts.push("client_no_context_takeover");
    if (serverBits !== null) parts.push(`server_max_window_bits=${serverBits}`);
    if (clientBits !== null) parts.push(`client_max_window_bits=${clientBits}`);

    this.#agree({
      inboundWindowBits: clientBits ?? 15,
      outboundWindowBits: serverBits ?? 15,
      inboundNoContextTakeover: clientReset,
      outboundNoContextTakeover: serverReset,
    });
    return parts.join("; ");
  }

  /**
   * Client side: the server accepted with this element. Enables the
   * extension with the agreed parameters, this end being the client.
   *
   * @param answer The server's `Sec-WebSocket-Extensions` element.
   * @throws {RemoteProtocolError} When the answer has unknown, repeated or
   * invalid parameters, grants the server a larger window than we asked
   * for, or leaves out `server_max_window_bits` or
   * `server_no_context_takeover` we offered (RFC 7692 §7: the client must
   * fail the connection).
   *
   * @example
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * import { RemoteProtocolError } from "./errors.ts";
   * const ext = new PerMessageDeflate({ serverMaxWindowBits: 10 });
   * try {
   *   ext.finalize("permessage-deflate; server_max_window_bits=12");
   * } catch (error) {
   *   if (!(error instanceof RemoteProtocolError)) throw new Error("Example failed");
   * }
   * if (ext.enabled()) throw new Error("Example failed");
   * ```
   */
  finalize(answer: string): void {
    const params = parseElement(answer, "response");
    if (typeof params === "string") {
      throw new RemoteProtocolError(`Invalid permessage-deflate response: ${params}`);
    }
    // RFC 7692 §7.1.1.1, §7.1.2.1: a server takes these by answering with
    // them, and one that cannot must decline the offer. Without them our
    // inflater would keep a window, or a context, the user asked to spare.
    if (this.#serverMaxWindowBits !== null && params.serverMaxWindowBits === null) {
      throw new RemoteProtocolError(
        `Invalid permessage-deflate response: server_max_window_bits=${this.#serverMaxWindowBits}` +
          " was offered and not answered",
      );
    }
    if (this.#serverNoContextTakeover && !params.serverNoContextTakeover) {
      throw new RemoteProtocolError(
        "Invalid permessage-deflate response: server_no_context_takeover was offered and not answered",
      );
    }
    const askedServerBits = this.#serverMaxWindowBits ?? 15;
    if (params.serverMaxWindowBits !== null && params.serverMaxWindowBits > askedServerBits) {
      throw new RemoteProtocolError(
        `Invalid permessage-deflate response: server_max_window_bits=${params.serverMaxWindowBits}` +
          ` exceeds the ${askedServerBits} offered`,
      );
    }
    // Our offer always carries client_max_window_bits, so the server may
    // always answer with it (§7.1.2.2), but never above a value we gave.
    let clientBits = this.#clientMaxWindowBits ?? 15;
    const granted = params.clientMaxWindowBits;
    if (typeof granted === "number") {
      if (granted > clientBits) {
        throw new RemoteProtocolError(
          `Invalid permessage-deflate response: client_max_window_bits=${granted}` +
            ` exceeds the ${clientBits} offered`,
        );
      }
      clientBits = granted;
    }
    this.#agree({
      inboundWindowBits: params.serverMaxWindowBits ?? 15,
      outboundWindowBits: clientBits,
      inboundNoContextTakeover: params.serverNoContextTakeover,
      outboundNoContextTakeover: params.clientNoContextTakeover || this.#clientNoContextTakeover,
    });
  }

  /**
   * A frame header arrived. RSV1 on a TEXT or BINARY frame marks a
   * compressed message; on a continuation or control frame it is a protocol
   * error (RFC 7692 §6.1).
   *
   * @param opcode The frame's opcode.
   * @param rsv The frame's RSV bits.
   * @param _payloadLength The frame's payload length (unused).
   * @returns The RSV bits this extension accounts for: RSV1 on the first
   * frame of a compressed message, none otherwise.
   * @throws {RemoteProtocolError} Close 1002 for a misplaced RSV1.
   *
   * @example A control frame with RSV1
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * import { Opcode } from "./frame.ts";
   * const ext = new PerMessageDeflate();
   * ext.accept("permessage-deflate");
   * try {
   *   ext.frameInboundHeader(Opcode.PING, { rsv1: true, rsv2: false, rsv3: false }, 0);
   * } catch (error) {
   *   if ((error as { eventHint: { code: number } }).eventHint.code !== 1002) throw new Error("Example failed");
   * }
   * ```
   */
  frameInboundHeader(opcode: Opcode, rsv: RsvBits, _payloadLength: number): RsvBits {
    if (!this.#enabled) return NO_RSV;
    if (isControlOpcode(opcode)) {
      if (rsv.rsv1) throw failConnection(1002, "RSV1 set on a control frame");
      // A control frame may sit between the fragments of a compressed
      // message (RFC 6455 §5.4): it must leave the message's state alone.
      this.#inboundControlFrame = true;
      return NO_RSV;
    }
    this.#inboundControlFrame = false;
    if (opcode === Opcode.CONTINUATION) {
      if (rsv.rsv1) throw failConnection(1002, "RSV1 set on a continuation frame");
      return NO_RSV;
    }
    this.#inboundCompressed = rsv.rsv1;
    this.#inboundSize = 0;
    this.#inboundFed = false;
    return rsv.rsv1 ? RSV1 : NO_RSV;
  }

  /**
   * A piece of a frame's payload. Compressed data is inflated as it comes;
   * anything else passes through unchanged.
   *
   * @param data The unmasked piece.
   * @param room How many more bytes the message may grow by under the
   *   connection's own limit; the tighter of it and `maxMessageSize` holds.
   * @returns The bytes inflated so far from it (possibly none), or `data`.
   * @throws {RemoteProtocolError} Close 1009 when the message inflates past
   * its limit, 1007 when the data is not valid DEFLATE.
   *
   * @example Corrupt compressed data
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * import { Opcode } from "./frame.ts";
   * const ext = new PerMessageDeflate();
   * ext.accept("permessage-deflate");
   * ext.frameInboundHeader(Opcode.BINARY, { rsv1: true, rsv2: false, rsv3: false }, 1);
   * try {
   *   ext.frameInboundPayloadData(new Uint8Array([0xff])); // reserved block type 11
   * } catch (error) {
   *   if ((error as { eventHint: { code: number } }).eventHint.code !== 1007) throw new Error("Example failed");
   * }
   * ```
   */
  frameInboundPayloadData(data: Uint8Array, room: number = Infinity): Uint8Array {
    if (!this.#enabled || this.#inboundControlFrame || !this.#inboundCompressed) return data;
    if (data.length > 0) this.#inboundFed = true;
    return this.#inflate(data, room);
  }

  /**
   * The frame's payload has all arrived. At the end of a compressed
   * message, inflate the tail the sender stripped (RFC 7692 §7.2.2) and,
   * when the peer resets its context, drop ours.
   *
   * @param fin The frame's FIN bit.
   * @param room As for {@linkcode PerMessageDeflate.frameInboundPayloadData}.
   * @returns The last inflated bytes of the message, or `null`.
   * @throws {RemoteProtocolError} Close 1009 or 1007, as for the payload.
   *
   * @example The shared-window example of RFC 7692 §7.2.3.2
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * import { Opcode } from "./frame.ts";
   * const ext = new PerMessageDeflate();
   * ext.accept("permessage-deflate");
   * const rsv1 = { rsv1: true, rsv2: false, rsv3: false };
   * const texts = [];
   * for (const payload of [[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], [0xf2, 0x00, 0x11, 0x00, 0x00]]) {
   *   ext.frameInboundHeader(Opcode.TEXT, rsv1, payload.length);
   *   const head = ext.frameInboundPayloadData(new Uint8Array(payload));
   *   const tail = ext.frameInboundComplete(true) ?? new Uint8Array(0);
   *   texts.push(new TextDecoder().decode(new Uint8Array([...head, ...tail])));
   * }
   * if (texts.join() !== "Hello,Hello") throw new Error("Example failed");
   * ```
   */
  frameInboundComplete(fin: boolean, room: number = Infinity): Uint8Array | null {
    if (this.#pendingError !== null) throw this.#pendingError;
    if (!this.#enabled || this.#inboundControlFrame || !fin) return null;
    if (!this.#inboundCompressed) return null;
    // A compressed message with no DEFLATE bytes at all has no meaning in
    // RFC 7692; peers (ws, websockets) take it as empty, and so do we. Its
    // tail alone is not fed: it would leave zlib inside a stored block.
    const output = this.#inboundFed ? this.#inflate(TAIL, room, true) : EMPTY;
    this.#inboundCompressed = false;
    if (this.#inboundNoContextTakeover) {
      // §7.1.1: the peer starts each message with an empty window, so ours
      // may go.
      if (this.#inflater !== null) {
        resetInflater(this.#inflater);
        spareInflaters.give(this.#inboundWindowBits, this.#inflater);
      }
      this.#inflater = null;
    } else if (this.#inflateEnded && this.#inflater !== null) {
      // The next message continues over the same window, which ResetKeep
      // preserves while it clears the ended stream.
      resetInflater(this.#inflater, { keepWindow: true });
      limitDistances(this.#inflater, this.#inboundWindowBits);
    }
    this.#inflateEnded = false;
    return output.length === 0 ? null : output;
  }

  /**
   * Rewrite one outbound frame. The frames of a compressed message carry
   * the DEFLATE stream sync-flushed at each frame's end; the first frame
   * gets RSV1 and the last loses the `00 00 ff ff` tail (RFC 7692 §7.2.1).
   * Control frames, and messages sent in one frame shorter than
   * `threshold`, pass through unchanged.
   *
   * @param opcode The frame's opcode.
   * @param rsv The RSV bits the frame would otherwise have.
   * @param data The application's payload for this frame.
   * @param fin The frame's FIN bit.
   * @returns The RSV bits and payload to send.
   *
   * @example The first example of RFC 7692 §7.2.3.1
   * ```ts
   * import { PerMessageDeflate } from "./permessage_deflate.ts";
   * import { NO_RSV, Opcode } from "./frame.ts";
   * const ext = new PerMessageDeflate({ threshold: 0 });
   * ext.accept("permessage-deflate");
   * const { rsv, data } = ext.frameOutbound(Opcode.TEXT, NO_RSV, new TextEncoder().encode("Hello"), true);
   * if (!(rsv.rsv1 && data.join() === [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00].join())) throw new Error("Example failed");
   * ```
   */
  frameOutbound(opcode: Opcode, rsv: RsvBits, data: Uint8Array, fin: boolean): OutboundFrame {
    if (!this.#enabled || isControlOpcode(opcode)) return { rsv, data };
    if (opcode !== Opcode.CONTINUATION) {
      this.#outboundCompressed = !(fin && data.length < this.#threshold);
      if (!this.#outboundCompressed) return { rsv, data };
      // §6: RSV1 on the first frame only marks the whole message.
      rsv = { rsv1: true, rsv2: rsv.rsv2, rsv3: rsv.rsv3 };
    } else if (!this.#outboundCompressed) {
      return { rsv, data };
    }
    const compressed = this.#deflate(data, fin);
    if (fin) {
      this.#outboundCompressed = false;
      if (this.#outboundNoContextTakeover) {
        if (this.#deflater !== null && pako.zlibDeflateReset(this.#deflater) === pako.Z_OK) {
          spareDeflaters.give(this.#deflaterKey(), this.#deflater);
        }
        this.#deflater = null;
      }
    }
    return { rsv, data: compressed };
  }

  #agree(agreed: {
    inboundWindowBits: number;
    outboundWindowBits: number;
    inboundNoContextTakeover: boolean;
    outboundNoContextTakeover: boolean;
  }): void {
    this.#inboundWindowBits = agreed.inboundWindowBits;
    this.#outboundWindowBits = agreed.outboundWindowBits;
    this.#inboundNoContextTakeover = agreed.inboundNoContextTakeover;
    this.#outboundNoContextTakeover = agreed.outboundNoContextTakeover;
    this.#deflater = null;
    this.#inflater = null;
    this.#inflateEnded = false;
    this.#enabled = true;
  }

  // zlib has no 256-byte window for raw deflate and refuses 8; with 9 it
  // keeps every distance within 2^9 - 262 = 250 bytes, so its output still
  // fits a peer's 8-bit window.
  #deflaterWindowBits(): number {
    return Math.max(this.#outboundWindowBits, 9);
  }

  // What a kept deflater must have been made with to serve this connection.
  #deflaterKey(): number {
    return (this.#level * 16 + this.#deflaterWindowBits()) * 16 + this.#memoryLevel;
  }

  #deflate(data: Uint8Array, fin: boolean): Uint8Array {
    let strm = this.#deflater;
    if (strm === null && this.#outboundNoContextTakeover) {
      strm = spareDeflaters.take(this.#deflaterKey());
    }
    if (strm === null) {
      strm = new pako.ZStream();
      const status = pako.zlibDeflateInit2(
        strm,
        this.#level,
        8, // Z_DEFLATED, the only method
        -this.#deflaterWindowBits(), // negative: raw DEFLATE, no zlib header (§7.2.1)
        this.#memoryLevel,
        pako.Z_DEFAULT_STRATEGY,
        // pako's own hash needs a table of 2^15 entries whatever memLevel
        // says; zlib's, which it keeps as the legacy one, is sized by it.
        this.#memoryLevel < MEM_LEVEL,
      );
      if (status !== pako.Z_OK) throw new Error(`zlib deflateInit2 failed with ${status}`);
    }
    this.#deflater = strm;
    strm.input = data;
    strm.next_in = 0;
    strm.avail_in = data.length;
    const chunks: Uint8Array[] = [];
    // A sync flush at the end of every frame leaves the stream on a byte
    // boundary, so each frame carries complete output (§7.2.1).
    do {
      strm.output = scratch;
      strm.next_out = 0;
      strm.avail_out = scratch.length;
      const status = pako.zlibDeflate(strm, pako.Z_SYNC_FLUSH);
      if (status !== pako.Z_OK && status !== pako.Z_BUF_ERROR) {
        throw new Error(`zlib deflate failed with ${status}`);
      }
      if (strm.next_out > 0) chunks.push(copyOut(strm.next_out));
    } while (strm.avail_out === 0);
    strm.input = EMPTY;
    let output = concatBytes(chunks);
    if (!fin) return output;
    if (endsWithTail(output)) output = output.subarray(0, output.length - TAIL.length);
    // Nothing new since the last flush: send an empty stored block's first
    // byte, which with the receiver's tail decodes to nothing (§7.2.3.6).
    return output.length === 0 ? EMPTY_MESSAGE : output;
  }

  // `last` marks the tail, which must leave zlib at a block boundary: an
  // empty payload, or one cut short, leaves it inside a block that the next
  // message would then continue (as its data, silently, when that message
  // starts with a stored block).
  #inflate(data: Uint8Array, room: number, last = false): Uint8Array {
    let strm = this.#inflater;
    if (strm === null) {
      strm = this.#inboundNoContextTakeover ? spareInflaters.take(this.#inboundWindowBits) : null;
      if (strm === null) {
        strm = new pako.ZStream();
        const status = pako.zlibInflateInit2(strm, -this.#inboundWindowBits);
        if (status !== pako.Z_OK) throw new Error(`zlib inflateInit2 failed with ${status}`);
      }
      limitDistances(strm, this.#inboundWindowBits);
      this.#inflater = strm;
    }
    if (this.#pendingError !== null) throw this.#pendingError;
    if (this.#inflateEnded) return EMPTY;
    // The data ended at a block's end already (zlib stopped before a block
    // header): its sender kept the tail RFC 7692 §7.2.1 has it remove, or
    // ended with an empty block of its own. The tail would begin a block
    // that no data finishes, and under context takeover the next message
    // would be read as its rest; the message is whole without it (as §7.2.2
    // decodes it, and ws takes it).
    if (last && (strm.data_type & 128) !== 0) return EMPTY;
    // Nothing to inflate (an empty fragment): a call would only move pako
    // past the block's end (TYPE to TYPEDO), and the check above would miss it.
    if (data.length === 0) return EMPTY;
    strm.input = data;
    strm.next_in = 0;
    strm.avail_in = data.length;
    const chunks: Uint8Array[] = [];
    // Ours or the connection's, whichever is tighter: a connection made with
    // a small `maxMessageSize` must not inflate a bomb to ours first.
    const limit = Math.min(this.#maxMessageSize, this.#inboundSize + room);
    for (;;) {
      // Never give zlib room for more than one byte past the limit: a small
      // bomb cannot make us produce, let alone keep, its expansion.
      strm.output = scratch;
      strm.next_out = 0;
      strm.avail_out = Math.min(OUTPUT_CHUNK, limit - this.#inboundSize + 1);
      // Z_BLOCK stops zlib at each block's end, where `data_type` says so.
      const status = pako.zlibInflate(strm, last ? pako.Z_BLOCK : pako.Z_SYNC_FLUSH);
      const produced = strm.next_out;
      if (produced > 0) {
        const allowed = Math.min(produced, limit - this.#inboundSize);
        this.#inboundSize += produced;
        if (allowed > 0) chunks.push(copyOut(allowed));
        if (allowed < produced) {
          this.#pendingError = failConnection(
            1009,
            `Decompressed message exceeds the limit of ${limit} bytes`,
          );
          break;
        }
      }
      if (status === pako.Z_STREAM_END) {
        // A block with BFINAL set ends zlib's stream and, by §7.2.3.4, the
        // message's data: the rest (padding, the tail) is ignored until the
        // message ends, so a peer cannot make us reset once per byte.
        this.#inflateEnded = true;
        break;
      }
      if (status !== pako.Z_OK && status !== pako.Z_BUF_ERROR) {
        // ws and Autobahn expect 1007 for data that does not inflate.
        this.#pendingError = failConnection(
          1007,
          `Invalid compressed data: ${
            strm.msg || (status === pako.Z_DATA_ERROR ? "data error" : status)
          }`,
        );
        break;
      }
      // zlib stops when input runs out, output space does, or (Z_BLOCK) a
      // block ends; only the latter two leave more to do.
      if (status === pako.Z_BUF_ERROR || (strm.avail_out !== 0 && strm.avail_in === 0)) break;
    }
    strm.input = EMPTY;
    // Z_BLOCK stops after a final (BFINAL) block before zlib reports the
    // stream's end: as Z_STREAM_END does, it ends the message's data.
    if (last && atBlockEnd(strm) && (strm.data_type & 64) !== 0) this.#inflateEnded = true;
    if (last && !this.#inflateEnded && this.#pendingError === null && !atBlockEnd(strm)) {
      this.#pendingError = failConnection(
        1007,
        "Invalid compressed data: the message does not end at a DEFLATE block boundary",
      );
    }
    // The bytes inflated before an error go up first and the error comes
    // with the next hook call, so the message layer judges them (invalid
    // UTF-8, its own size limit) exactly as it would had they arrived one
    // at a time: chopping never changes which close code wins. Not so at
    // the tail: no call of this message comes after it, and the message
    // must not end as if whole. The tail always comes whole, so what it
    // inflates to, and so the error, does not depend on chopping either.
    if (this.#pendingError !== null && (last || chunks.length === 0)) throw this.#pendingError;
    return concatBytes(chunks);
  }
}

/**
 * Parse and validate one extension element (RFC 6455 §9.1 grammar, RFC
 * 7692 §7 rules for offers and responses).
 *
 * @returns The parameters, or a sentence saying what is wrong.
 */
function parseElement(element: string, kind: "offer" | "response"): DeflateParams | string {
  const [head = "", ...rest] = element.split(";");
  const name = head.trim();
  if (name.toLowerCase() !== NAME) return `extension ${JSON.stringify(name)} is not ${NAME}`;
  const params: DeflateParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: null,
    clientMaxWindowBits: null,
  };
  const seen = new Set<string>();
  for (const part of rest) {
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (!TOKEN.test(key)) return `malformed parameter ${JSON.stringify(part.trim())}`;
    let value: string | null = null;
    if (eq >= 0) {
      value = parseValue(part.slice(eq + 1).trim());
      if (value === null) return `malformed value in ${JSON.stringify(part.trim())}`;
    }
    if (seen.has(key)) return `duplicate parameter ${key}`;
    seen.add(key);
    switch (key) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== null) return `${key} takes no value`;
        if (key === "server_no_context_takeover") params.serverNoContextTakeover = true;
        else params.clientNoContextTakeover = true;
        break;
      case "server_max_window_bits":
        if (value === null || !WINDOW_BITS.test(value)) {
          return `${key} needs a window size from 8 to 15`;
        }
        params.serverMaxWindowBits = Number(value);
        break;
      case "client_max_window_bits":
        // Bare in an offer: "I can limit my window" (§7.1.2.2).
        if (value === null && kind === "offer") {
          params.clientMaxWindowBits = true;
        } else if (value === null || !WINDOW_BITS.test(value)) {
          return `${key} needs a window size from 8 to 15`;
        } else {
          params.clientMaxWindowBits = Number(value);
        }
        break;
      default:
        return `unknown parameter ${key}`;
    }
  }
  return params;
}

/**
 * A parameter value: a token, or a quoted-string whose unescaped content is
 * a token (RFC 6455 §9.1).
 */
function parseValue(raw: string): string | null {
  let value = raw;
  if (raw.startsWith('"')) {
    if (raw.length < 2 || !raw.endsWith('"')) return null;
    value = raw.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  return TOKEN.test(value) ? value : null;
}

// zlib's `data_type` has 128 set when inflate() stopped right after a
// block's end (with Z_BLOCK).
function atBlockEnd(strm: pako.ZStream): boolean {
  return strm.avail_in === 0 && (strm.data_type & 128) !== 0;
}

function endsWithTail(data: Uint8Array): boolean {
  const n = data.length;
  return n >= 4 && data[n - 4] === 0x00 && data[n - 3] === 0x00 && data[n - 2] === 0xff &&
    data[n - 1] === 0xff;
}

function checkWindowBits(name: string, value: number | null): number | null {
  if (value === null) return null;
  return checkInteger(name, value, 8, 15);
}

function checkInteger(
  name: string,
  value: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`Option ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

// The first `length` bytes zlib wrote to the scratch, in memory of their own
// (inflated bytes become the application's message).
function copyOut(length: number): Uint8Array {
  const bytes = allocateKept(length);
  bytes.set(scratch.subarray(0, length));
  return bytes;
}

// zlib's own check lets a distance reach back over everything one call has
// output, so a distance past the negotiated window failed or passed
// depending on how the bytes were chopped. Its strict check (every distance
// against `dmax`) is what raw inflate leaves at 32 KiB; set to the window the
// peer agreed to, a distance it may not use always fails. zlib-based
// senders stay within 2^bits - 262, so none of their streams is refused.
function limitDistances(strm: pako.ZStream, windowBits: number): void {
  (strm.state as { dmax: number }).dmax = 1 << windowBits;
}

/** The fields of pako's inflate state that a reset sets. */
interface InflateState {
  total: number;
  wsize: number;
  whave: number;
  wnext: number;
  mode: number;
  last: number;
  havedict: number;
  flags: number;
  dmax: number;
  head: unknown;
  hold: number;
  bits: number;
  lencode: Int32Array;
  lendyn: Int32Array;
  distcode: Int32Array;
  distdyn: Int32Array;
  sane: number;
  back: number;
}

// What pako's reset sets `mode` to, read from a fresh stream rather than
// copied from its source.
const INFLATE_START_MODE = ((): number => {
  const strm = new pako.ZStream();
  pako.zlibInflateInit2(strm, -15);
  return (strm.state as InflateState).mode;
})();

/**
 * zlib's `inflateReset` for a raw inflater (a new stream, empty window), or
 * `inflateResetKeep` with `keepWindow` (a new stream over the same window),
 * as zlib does them: the two code tables stay. pako's own resets allocate
 * them afresh: under no context takeover, two buffer allocations per
 * message and a tenth of the server's time for short ones (bench/echo.ts
 * --deflate, --allocs). The fields are pako's for `wrap` 0;
 * tests/permessage_deflate_test.ts checks them against pako's resets.
 *
 * @param strm A raw inflater.
 * @param options Whether the window stays.
 */
export function resetInflater(strm: pako.ZStream, options: { keepWindow?: boolean } = {}): void {
  const state = strm.state as InflateState;
  strm.total_in = strm.total_out = state.total = 0;
  strm.msg = "";
  if (options.keepWindow !== true) state.wsize = state.whave = state.wnext = 0;
  state.mode = INFLATE_START_MODE;
  state.last = 0;
  state.havedict = 0;
  state.flags = -1;
  state.dmax = 32768;
  state.head = null;
  state.hold = 0;
  state.bits = 0;
  // Rebuilt from each dynamic block's header before use, as in zlib.
  state.lencode = state.lendyn;
  state.distcode = state.distdyn;
  state.sane = 1;
  state.back = -1;
}
