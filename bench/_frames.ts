/**
 * Client frames for the codec benches, built once before timing.
 *
 * @module
 */

import { NO_RSV, type Opcode } from "../frame.ts";
import { encodeFrame } from "../frame_encoder.ts";

/**
 * `count` masked client frames of `size` bytes each, back to back, and the
 * view of each frame within them.
 *
 * @param opcode TEXT or BINARY.
 * @param size Payload bytes per frame.
 * @param count How many frames.
 * @returns The whole stream and its frames.
 */
export function clientFrames(
  opcode: Opcode.TEXT | Opcode.BINARY,
  size: number,
  count: number,
): { stream: Uint8Array; frames: Uint8Array[] } {
  const payload = new Uint8Array(size);
  // ASCII text, so that the frames are valid for TEXT as well.
  for (let i = 0; i < size; i++) payload[i] = 0x61 + (i % 26);
  const one = encodeFrame(opcode, payload, true, NO_RSV, true);
  const stream = new Uint8Array(one.length * count);
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    stream.set(one, i * one.length);
    frames.push(stream.subarray(i * one.length, (i + 1) * one.length));
  }
  return { stream, frames };
}

/** A typical browser upgrade request (Chrome's headers), for the handshake figures. */
export const BROWSER_REQUEST: Uint8Array = new TextEncoder().encode(
  [
    "GET /chat?room=1 HTTP/1.1",
    "Host: example.com:8080",
    "Connection: Upgrade",
    "Pragma: no-cache",
    "Cache-Control: no-cache",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) " +
    "Chrome/120.0.0.0 Safari/537.36",
    "Upgrade: websocket",
    "Origin: http://example.com:8080",
    "Sec-WebSocket-Version: 13",
    "Accept-Encoding: gzip, deflate, br",
    "Accept-Language: en-US,en;q=0.9",
    "Cookie: session=0123456789abcdef; theme=dark",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Protocol: chat, superchat",
  ].join("\r\n") + "\r\n\r\n",
);
