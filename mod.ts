/**
 * A sans-IO WebSocket protocol engine (RFC 6455, with RFC 7692
 * permessage-deflate) in pure TypeScript. The engine never touches a
 * socket or a timer: bytes go in with `receiveData()`, events come out of
 * `events()`, and `send(event)` gives back the bytes to write. The drivers
 * `serve()` and `connect()` put it on `Deno.listen` / `Deno.connect`, and
 * `upgrade()` runs the same handlers under `Deno.serve`.
 *
 * Import it as a namespace: `ws.Request` then stays apart from the global
 * Fetch `Request`.
 *
 * @example An echo server's event loop, over any byte stream
 * ```ts
 * import * as ws from "./mod.ts";
 *
 * function handle(conn: ws.WSConnection, bytes: Uint8Array | null): Uint8Array[] {
 *   const out: Uint8Array[] = [];
 *   conn.receiveData(bytes);
 *   if (conn.state === ws.ConnectionState.CLOSED) return out; // the stream ended
 *   for (const event of conn.events()) {
 *     if (event instanceof ws.Request) out.push(conn.send(new ws.AcceptConnection()));
 *     else if (event instanceof ws.TextMessage) out.push(conn.send(new ws.TextMessage({ data: event.data })));
 *     else if (event instanceof ws.Ping) out.push(conn.send(event.response()));
 *     else if (event instanceof ws.CloseConnection && conn.state === ws.ConnectionState.REMOTE_CLOSING) {
 *       out.push(conn.send(event.response()));
 *     }
 *   }
 *   return out;
 * }
 *
 * const server = new ws.WSConnection(ws.ConnectionType.SERVER);
 * const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
 * for (const bytes of handle(server, client.send(new ws.Request({ host: "h", target: "/" })))) {
 *   client.receiveData(bytes);
 * }
 * if (!([...client.events()][0] instanceof ws.AcceptConnection)) throw new Error("Example failed");
 * ```
 *
 * @module
 */

export {
  AcceptConnection,
  type AcceptConnectionOptions,
  BytesMessage,
  CloseConnection,
  type CloseConnectionOptions,
  type ControlOptions,
  type Event,
  type Headers,
  Message,
  type MessageOptions,
  Ping,
  Pong,
  RejectConnection,
  type RejectConnectionOptions,
  RejectData,
  type RejectDataOptions,
  Request,
  type RequestOptions,
  TextMessage,
} from "./events.ts";
export {
  LocalProtocolError,
  RemoteProtocolError,
  type RemoteProtocolErrorOptions,
} from "./errors.ts";
export { CloseReason, type Frame, Opcode, type RsvBits } from "./frame.ts";
export { ConnectionState, ConnectionType } from "./state.ts";
export { DEFAULT_LIMITS, type Limits } from "./limits.ts";
export type { Extension, OutboundFrame } from "./extensions.ts";
export { mask } from "./mask.ts";
export { FrameDecoder, type FrameDecoderOptions } from "./frame_decoder.ts";
export { FrameEncoder, type FrameEncoderOptions } from "./frame_encoder.ts";
export {
  Connection,
  type ConnectionEvent,
  type ConnectionOptions,
  WSConnection,
  type WSConnectionOptions,
} from "./connection.ts";
export { PerMessageDeflate, type PerMessageDeflateOptions } from "./permessage_deflate.ts";
export {
  type AcceptOptions,
  type CloseInfo,
  ConnectionClosedError,
  type Handler,
  type MessageData,
  type ReceiveOptions,
  type RejectOptions,
  type ServerSocket,
  type Socket,
  type SocketState,
} from "./socket.ts";
export { serve, type ServeOptions, type Server } from "./server.ts";
export {
  connect,
  type ConnectOptions,
  HandshakeError,
  type HandshakeErrorOptions,
} from "./client.ts";
export { upgrade, type UpgradeOptions } from "./deno_serve.ts";
