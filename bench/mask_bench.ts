/**
 * Unmasking speed per payload size, with the payload at the offset it has
 * inside a received chunk: 6 (after a 2-byte header and the key), 8 (after
 * a 16-bit length and the key: 8-aligned) and 14 (after a 64-bit length and
 * the key). In each group, against the byte loop (`ws` without its native
 * addon): `mask()`; `mask()`'s algorithm with a new view per call (what the
 * view cache is worth); and a WebAssembly SIMD kernel on bytes already in
 * wasm memory, and the same kernel copying the bytes in and out.
 *
 * The native `bufferutil` addon runs under Node, so it is not here: see
 * bench/mask_table.ts for the table with it.
 *
 * Run: deno bench bench/mask_bench.ts
 *
 * @module
 */
import { mask } from "../mask.ts";
import { byteLoop, maskNoCache, WasmMasker } from "./_mask_kernels.ts";

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
// Every offset up to 64 KiB; the large ones only at 14, the header they
// really have (alignment costs at most 14 scalar bytes there anyway).
const OFFSETS = [6, 8, 14];
const wasm = new WasmMasker((16 << 20) + 64);

for (const [label, size] of SIZES) {
  const offsets = size <= 64 << 10 ? OFFSETS : [14];
  for (const offset of offsets) {
    const chunk = new Uint8Array(offset + size);
    const payload = chunk.subarray(offset);
    const inWasm = wasm.view(offset, size);
    const group = `${label} at offset ${offset}`;
    // Fewer runs of the big ones keep `deno bench` short.
    const runs = size >= 1 << 20 ? { n: size >= 16 << 20 ? 20 : 200, warmup: 5 } : {};
    const kernels: [string, () => void][] = [
      ["byte loop", () => byteLoop(payload, KEY)],
      ["mask()", () => mask(payload, KEY)],
      ["mask() without the view cache", () => maskNoCache(payload, KEY)],
      ["wasm SIMD, bytes in wasm memory", () => wasm.mask(inWasm, KEY)],
      ["wasm SIMD, copied in and out", () => wasm.maskCopying(payload, KEY)],
    ];
    for (const [name, fn] of kernels) {
      Deno.bench({ name: `${name}, ${group}`, group, baseline: name === "byte loop", ...runs, fn });
    }
  }
}
