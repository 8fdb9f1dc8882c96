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
