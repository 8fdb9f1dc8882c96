/**
 * The masking kernels that bench/mask_bench.ts and bench/mask_table.ts
 * compare with `mask()` from mask.ts: the byte loop (what `ws` runs without
 * its native addon), `mask()` without its view cache (to show what the
 * cache is worth), and a WebAssembly SIMD kernel that works on bytes
 * already in its own memory.
 *
 * @module
 */

import { forgetMaskView, mask } from "../mask.ts";

/**
 * The obvious loop, one byte at a time: `ws`'s JavaScript fallback.
 *
 * @param data The bytes, masked in place.
 * @param key The 4-byte key.
 */
export function byteLoop(data: Uint8Array, key: Uint8Array): void {
  for (let i = 0; i < data.length; i++) data[i]! ^= key[i & 3]!;
}

/**
 * `mask()` itself, made to build its `BigUint64Array` view on every call
 * instead of taking it from its one-entry cache: what the cache is worth.
 *
 * @param data The bytes, masked in place.
 * @param key The 4-byte key.
 */
export function maskNoCache(data: Uint8Array, key: Uint8Array): void {
  forgetMaskView();
  mask(data, key);
}

// The kernel, hand-assembled (there is no assembler among the project's
// tools). In the text format:
//
//   (func (export "mask") (param $p i32) (param $n i32) (param $k i32)
//     (local $end i32) (local $kv v128)
//     (local.set $kv (i32x4.splat (local.get $k)))
//     (local.set $end (i32.add (local.get $p) (i32.and (local.get $n) (i32.const -16))))
//     (block (loop                          ;; 16 bytes at a time, unaligned loads
//       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
//       (v128.store (local.get $p) (v128.xor (v128.load (local.get $p)) (local.get $kv)))
//       (local.set $p (i32.add (local.get $p) (i32.const 16)))
//       (br 0)))
//     (local.set $end (i32.add (local.get $end) (i32.and (local.get $n) (i32.const 15))))
//     (block (loop                          ;; the tail, rotating the key a byte each
//       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
//       (i32.store8 (local.get $p) (i32.xor (i32.load8_u (local.get $p)) (local.get $k)))
//       (local.set $k (i32.rotr (local.get $k) (i32.const 8)))
//       (local.set $p (i32.add (local.get $p) (i32.const 1)))
//       (br 0))))
const CODE = [
  ...[0x20, 2, 0xfd, 0x11, 0x21, 4],
  ...[0x20, 0, 0x20, 1, 0x41, 0x70, 0x71, 0x6a, 0x21, 3],
  ...[0x02, 0x40, 0x03, 0x40],
  ...[0x20, 0, 0x20, 3, 0x4f, 0x0d, 1],
  ...[0x20, 0, 0x20, 0, 0xfd, 0x00, 0, 0, 0x20, 4, 0xfd, 0x51, 0xfd, 0x0b, 0, 0],
  ...[0x20, 0, 0x41, 16, 0x6a, 0x21, 0],
  ...[0x0c, 0, 0x0b, 0x0b],
  ...[0x20, 3, 0x20, 1, 0x41, 15, 0x71, 0x6a, 0x21, 3],
  ...[0x02, 0x40, 0x03, 0x40],
  ...[0x20, 0, 0x20, 3, 0x4f, 0x0d, 1],
  ...[0x20, 0, 0x20, 0, 0x2d, 0, 0, 0x20, 2, 0x73, 0x3a, 0, 0],
  ...[0x20, 2, 0x41, 8, 0x78, 0x21, 2],
  ...[0x20, 0, 0x41, 1, 0x6a, 0x21, 0],
  ...[0x0c, 0, 0x0b, 0x0b],
  0x0b,
];

function section(id: number, body: number[]): number[] {
  // Every section here is under 128 bytes, so its size is one LEB128 byte.
  if (body.length >= 128) throw new RangeError("Section too large for this encoder");
  return [id, body.length, ...body];
}

function name(text: string): number[] {
  return [text.length, ...new TextEncoder().encode(text)];
}

const BODY = [0x02, 0x01, 0x7f, 0x01, 0x7b, ...CODE]; // locals: 1 i32, 1 v128
const MODULE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]),
  ...section(3, [0x01, 0x00]),
  ...section(5, [0x01, 0x00, 0x01]),
  ...section(7, [0x02, ...name("memory"), 0x02, 0x00, ...name("mask"), 0x00, 0x00]),
  ...section(10, [0x01, BODY.length, ...BODY]),
]);

/**
 * A receive buffer that lives in WebAssembly memory, and the SIMD kernel
 * that masks bytes in it without copying them anywhere.
 */
export class WasmMasker {
  readonly #memory: WebAssembly.Memory;
  readonly #mask: (pointer: number, length: number, key: number) => void;

  /**
   * Instantiate the kernel with room for `bytes` bytes.
   *
   * @param bytes The size of the receive buffer.
   */
  constructor(bytes: number) {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(MODULE));
    this.#memory = instance.exports["memory"] as WebAssembly.Memory;
    this.#mask = instance.exports["mask"] as (p: number, n: number, k: number) => void;
    const pages = Math.ceil(bytes / 65536) - this.#memory.buffer.byteLength / 65536;
    if (pages > 0) this.#memory.grow(pages);
  }

  /**
   * A view of the buffer, as a read would fill it.
   *
   * @param offset Where the view starts.
   * @param length Its length.
   * @returns The view.
   */
  view(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.#memory.buffer, offset, length);
  }

  /**
   * Mask bytes of the buffer in place.
   *
   * @param data A view returned by {@linkcode view}.
   * @param key The 4-byte key.
   */
  mask(data: Uint8Array, key: Uint8Array): void {
    const k = key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24);
    this.#mask(data.byteOffset, data.length, k);
  }

  /**
   * Mask bytes that live outside wasm memory: copy them in, mask, copy
   * them back, as a driver without a wasm receive buffer would have to.
   *
   * @param data The bytes, masked in place.
   * @param key The 4-byte key.
   */
  maskCopying(data: Uint8Array, key: Uint8Array): void {
    const inside = this.view(0, data.length);
    inside.set(data);
    this.mask(inside, key);
    data.set(inside);
  }
}
