/**
 * Server handshakes per second: parse a typical browser upgrade request and
 * produce the 101. The baseline is a naive `split("\r\n")` parser that checks
 * nothing and keeps no limits, to show what the strict, bounded,
 * incremental parser costs.
 *
 * Run with `deno bench -A bench/handshake_bench.ts`.
 */

import { acceptToken, Handshake } from "../handshake.ts";
import { AcceptConnection, Request as WsRequest } from "../events.ts";
import { ConnectionType } from "../state.ts";
import { BROWSER_REQUEST as REQUEST } from "./_frames.ts";

const PIECES = [REQUEST.slice(0, 100), REQUEST.slice(100, 400), REQUEST.slice(400)];
const ACCEPT = new AcceptConnection({ subprotocol: "chat" });

function handshake(pieces: readonly Uint8Array[]): Uint8Array {
  const server = new Handshake(ConnectionType.SERVER);
  for (const piece of pieces) server.receiveData(piece);
  for (const event of server.events()) {
    if (event instanceof WsRequest) return server.send(ACCEPT);
  }
  throw new Error("No request");
}

// The baseline: what a quick hand-rolled server does.
function naive(bytes: Uint8Array): Uint8Array {
  const lines = new TextDecoder().decode(bytes).split("\r\n");
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  const token = acceptToken(headers.get("sec-websocket-key") ?? "");
  return new TextEncoder().encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${token}\r\nSec-WebSocket-Protocol: chat\r\n\r\n`,
  );
}

Deno.bench("naive split parse + 101", { group: "server handshake", baseline: true }, () => {
  naive(REQUEST);
});

Deno.bench("Handshake, request in one chunk", { group: "server handshake" }, () => {
  handshake([REQUEST]);
});

Deno.bench("Handshake, request in three chunks", { group: "server handshake" }, () => {
  handshake(PIECES);
});

Deno.bench("acceptToken alone (SHA-1 + base64)", () => {
  acceptToken("dGhlIHNhbXBsZSBub25jZQ==");
});
