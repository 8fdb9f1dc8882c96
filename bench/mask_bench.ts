/**
 * Unmasking speed against the obvious byte loop, per payload size, with the
 * payload at the offsets it has inside a received chunk: 6 (after a 6-byte
 * client header), 8 (8-aligned) and 14 (after a 64-bit length and a key).
 */
import { mask } from "../mask.ts";

function byteLoop(data: Uint8Array, key: Uint8Array, offset = 0): void {
  for (let i = 0; i < data.length; i++) data[i]! ^= key[(offset + i) & 3]!;
}

const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
const SIZES: [string, number][] = [
  ["16 B", 16],
  ["125 B", 125],
  ["1 KiB", 1 << 10],
  ["16 KiB", 16 << 10],
  ["64 KiB", 64 << 10],
  ["1 MiB", 1 << 20],
  ["16 MiB", 16 << 20],
];
// Every offset at the small sizes; the large ones only at the usual 6 to
// keep the run short (alignment costs at most 14 scalar bytes there).
const OFFSETS = [6, 8, 14];

for (const [label, size] of SIZES) {
  const offsets = size <= 64 << 10 ? OFFSETS : [6];
  for (const offset of offsets) {
    const chunk = new Uint8Array(offset + size);
    const payload = chunk.subarray(offset);
    const group = `${label} at offset ${offset}`;
    Deno.bench({
      name: `byte loop, ${group}`,
      group,
      baseline: true,
      ...(size >= 1 << 20 ? { n: 50 } : {}),
      fn() {
        byteLoop(payload, KEY);
      },
    });
    Deno.bench({
      name: `mask, ${group}`,
      group,
      ...(size >= 1 << 20 ? { n: 200 } : {}),
      fn() {
        mask(payload, KEY);
      },
    });
  }
}
