/**
 * Which end of the connection this is, and where it stands.
 *
 * @module
 */

/**
 * Which end of the connection this is. It decides who masks (RFC 6455
 * §5.3: the client masks every frame, the server never does) and which side
 * of the handshake runs.
 *
 * @example
 * ```ts
 * import { ConnectionType, WSConnection } from "./mod.ts";
 * const server = new WSConnection(ConnectionType.SERVER);
 * if (server.type !== ConnectionType.SERVER) throw new Error("Example failed");
 * ```
 */
export enum ConnectionType {
  /** The end that sends the opening handshake request and masks its frames. */
  CLIENT = "CLIENT",
  /** The end that answers the handshake. */
  SERVER = "SERVER",
}

/**
 * The states of a connection, as in wsproto.
 *
 * ```
 * CONNECTING ─accept─▶ OPEN ─close received─▶ REMOTE_CLOSING ─close sent─────▶ CLOSED
 *     │                  └───close sent────▶ LOCAL_CLOSING  ─close received─▶ CLOSED
 *     └─reject─▶ REJECTING ─body finished─▶ CLOSED      (end of stream: CLOSED from anywhere)
 * ```
 *
 * A rejection whose body goes out with it (or that has none) moves from
 * CONNECTING to CLOSED at once; REJECTING is for a body still to be sent
 * as `RejectData`.
 *
 * @example
 * ```ts
 * import { ConnectionState, ConnectionType, WSConnection } from "./mod.ts";
 * if (new WSConnection(ConnectionType.SERVER).state !== ConnectionState.CONNECTING) throw new Error("Example failed");
 * ```
 */
export enum ConnectionState {
  /** The opening handshake is under way. */
  CONNECTING = "CONNECTING",
  /** Messages flow both ways. */
  OPEN = "OPEN",
  /** The peer sent a close; ours is still to send. */
  REMOTE_CLOSING = "REMOTE_CLOSING",
  /** We sent a close and wait for the peer's. */
  LOCAL_CLOSING = "LOCAL_CLOSING",
  /** Both closes exchanged, or the stream ended: nothing more to send or receive. */
  CLOSED = "CLOSED",
  /** The handshake is being refused with an HTTP response. */
  REJECTING = "REJECTING",
}
