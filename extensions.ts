/**
 * The extension hooks (RFC 6455 §9): how an extension such as
 * permessage-deflate takes part in the handshake and sees every frame.
 *
 * @module
 */

import type { Opcode, RsvBits } from "./frame.ts";

/** What an extension's outbound hook gives back for one frame. */
export interface OutboundFrame {
  /** The RSV bits to set on the frame. */
  readonly rsv: RsvBits;
  /** The payload to send in place of the application's bytes. */
  readonly data: Uint8Array;
}

/**
 * An extension negotiated in the opening handshake (RFC 6455 §9.1) that may
 * claim RSV bits and rewrite payloads. One instance serves one connection:
 * create a fresh one per connection.
 *
 * Inbound hooks fail the connection by throwing a `RemoteProtocolError` whose
 * `eventHint` is a `CloseConnection` with the close code to send.
 *
 * The hooks are called in this order for every inbound frame:
 * `frameInboundHeader` once, when the header has arrived (perhaps before
 * its masking key);
 * `frameInboundPayloadData` for every piece of payload as it arrives, once
 * the frame is known to be in sequence (RFC 6455 §5.4), and again with an
 * empty piece after each piece that does not end the frame (and for an
 * empty frame); then
 * `frameInboundComplete` once the frame's payload has all arrived. The
 * bytes a payload hook returns are checked (UTF-8, message size) before the
 * next hook runs, so an extension that finds an error after producing
 * output should return that output and throw on its next call: the close
 * code then does not depend on how the bytes were chopped.
 *
 * @example An extension that counts the frames received
 * ```ts
 * import * as ws from "./mod.ts";
 * const NONE: ws.RsvBits = { rsv1: false, rsv2: false, rsv3: false };
 * // Claims no RSV bit and leaves payloads as they are.
 * class FrameCounter implements ws.Extension {
 *   readonly name = "x-frame-counter";
 *   framesIn = 0;
 *   #enabled = false;
 *   enabled(): boolean {
 *     return this.#enabled;
 *   }
 *   offer(): string {
 *     return this.name;
 *   }
 *   accept(offer: string): string | null {
 *     if (offer !== this.name) return null;
 *     this.#enabled = true;
 *     return this.name;
 *   }
 *   finalize(_answer: string): void {
 *     this.#enabled = true;
 *   }
 *   frameInboundHeader(_opcode: ws.Opcode, _rsv: ws.RsvBits, _length: number): ws.RsvBits {
 *     this.framesIn++;
 *     return NONE;
 *   }
 *   frameInboundPayloadData(data: Uint8Array): Uint8Array {
 *     return data;
 *   }
 *   frameInboundComplete(_fin: boolean): Uint8Array | null {
 *     return null;
 *   }
 *   frameOutbound(_opcode: ws.Opcode, rsv: ws.RsvBits, data: Uint8Array): ws.OutboundFrame {
 *     return { rsv, data };
 *   }
 * }
 *
 * const counter = new FrameCounter(); // the server's, for this connection
 * const server = new ws.WSConnection(ws.ConnectionType.SERVER);
 * const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
 * server.receiveData(
 *   client.send(new ws.Request({ host: "h", target: "/", extensions: [new FrameCounter()] })),
 * );
 * [...server.events()];
 * client.receiveData(server.send(new ws.AcceptConnection({ extensions: [counter] })));
 * [...client.events()];
 * server.receiveData(client.send(new ws.TextMessage({ data: "hi" })));
 * [...server.events()];
 * if (!(counter.enabled() && counter.framesIn === 1)) throw new Error("Example failed");
 * ```
 */
export interface Extension {
  /** The extension token, as in `Sec-WebSocket-Extensions` (for example `permessage-deflate`). */
  readonly name: string;
  /** Whether negotiation enabled the extension on this connection. */
  enabled(): boolean;
  /**
   * Client side: the element to offer in `Sec-WebSocket-Extensions`, name
   * and parameters (`permessage-deflate; client_max_window_bits`), or `null`
   * to offer nothing.
   */
  offer(): string | null;
  /**
   * Server side: answer one offer (one comma-separated element of the
   * client's header, name and parameters). Return the element to send back
   * (which enables the extension), or `null` to decline this offer.
   */
  accept(offer: string): string | null;
  /**
   * Client side: the server accepted with this element. Enables the
   * extension, or throws a `RemoteProtocolError` when the answer does not
   * fit what was offered. Where the client offered several extensions of
   * one name (fallbacks, RFC 7692 §5), the answer is given to each in the
   * order offered until one takes it, so a throw must leave the extension
   * as it was.
   */
  finalize(answer: string): void;
  /**
   * A frame header arrived. Return the RSV bits this extension accounts for
   * on this frame; any other bit set is a protocol error.
   */
  frameInboundHeader(opcode: Opcode, rsv: RsvBits, payloadLength: number): RsvBits;
  /**
   * A piece of a frame's payload, unmasked; return what to pass up. `room`
   * is how many more bytes the message may grow by before it is over the
   * connection's `maxMessageSize` (for a control frame, 125: the most its
   * payload may hold): an extension that expands data should produce at
   * most one byte more than that, which is enough for the message layer to
   * fail it with 1009.
   */
  frameInboundPayloadData(data: Uint8Array, room: number): Uint8Array;
  /**
   * The frame's payload has all arrived; `fin` is its FIN bit. Return bytes
   * to append to the frame's payload, or `null`; they pass through the
   * payload hooks of the extensions nearer the application, as the rest of
   * the payload did. `room` is as for `frameInboundPayloadData`.
   *
   * Several extensions apply in the order the server listed them (RFC 6455
   * §9.1): with "foo, bar", what is sent is bar(foo(data)), so inbound
   * frames reach bar's hooks first.
   */
  frameInboundComplete(fin: boolean, room: number): Uint8Array | null;
  /**
   * Rewrite one outbound frame (`fin` is its FIN bit). `data` is lent for
   * the call only: it may be the application's own bytes, or a buffer the
   * next message is encoded into, so copy what you keep. What you return
   * is copied into the frame.
   */
  frameOutbound(opcode: Opcode, rsv: RsvBits, data: Uint8Array, fin: boolean): OutboundFrame;
}
