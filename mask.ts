/**
 * The masking kernel of RFC 6455 §5.3: every payload byte a client sends is
 * XORed with a 4-byte key, and the server XORs it again to recover the data.
 *
 * @module
 */

/** Below this length a plain byte loop beats setting up the word loop (measured: the break-even is near 32 bytes). */
const SMALL = 32;

/**
 * The largest buffer whose 64-bit view is kept between calls. Views of
 * larger buffers are made per call, so the cache never pins a big buffer
 * after its payload is gone; for such payloads the view costs nothing
 * measurable anyway.
 */
const CACHE_MAX_BYTES = 1 << 20;

// Scratch for turning a 32-bit key into the 64-bit BigInt the word loop
// XORs with: two 32-bit stores and one 64-bit load are far cheaper than
// BigInt shifts and ORs (which made 125-byte payloads slower than a byte loop).
const scratch32 = new Uint32Array(2);
const scratch64 = new BigUint64Array(scratch32.buffer);

// A one-entry cache of the 64-bit view over the last buffer masked: the
// frame decoder unmasks many payloads that sit in the same received chunk,
// and reading `data.buffer` plus building a view costs ~15 ns a call, a
// fifth of the time for a 1 KiB payload. A WeakMap keyed by buffer was no
// faster and adds an ephemeron entry for every chunk ever received.
let cachedBuffer: ArrayBufferLike | null = null;
let cachedView: BigUint64Array<ArrayBufferLike> = new BigUint64Array(0);

/**
 * XOR `data` in place with a 4-byte masking key (RFC 6455 §5.3). Byte `i`
 * of `data` is XORed with `key[(offset + i) & 3]`, so a payload that
 * arrives in pieces is unmasked piece by piece by passing, as `offset`, the
 * number of payload bytes already unmasked. Masking twice with the same key
 * and offset restores the data.
 *
 * Large payloads are processed 8 bytes at a time through a `BigUint64Array`
 * over the aligned middle of `data.buffer`; bytes outside `data` are never
 * touched.
 *
 * @param data The bytes to mask or unmask, changed in place.
 * @param key The 4-byte masking key from the frame header.
 * @param offset How many bytes of the same payload came before `data`.
 * @returns Nothing; `data` holds the result.
 * @throws {RangeError} If `key` is not exactly 4 bytes long.
 *
 * @example Unmasking the "Hello" frame of RFC 6455 §5.7
 * ```ts
 * import { mask } from "./mask.ts";
 * const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
 * const payload = new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]);
 * mask(payload, key);
 * if (new TextDecoder().decode(payload) !== "Hello") throw new Error("Example failed");
 * ```
 *
 * @example Unmasking a payload that arrives in two pieces
 * ```ts
 * import { mask } from "./mask.ts";
 * const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
 * const first = new Uint8Array([0x7f, 0x9f, 0x4d]);
 * const second = new Uint8Array([0x51, 0x58]);
 * mask(first, key);
 * mask(second, key, first.length);
 * if (new TextDecoder().decode(second) !== "lo") throw new Error("Example failed");
 * ```
 */
export function mask(data: Uint8Array, key: Uint8Array, offset = 0): void {
  if (key.length !== 4) {
    throw new RangeError(`Masking key must be 4 bytes, got ${key.length}`);
  }
  const n = data.length;
  // The key as a little-endian word, rotated so that its low byte masks
  // data[0]; byte i then uses bits 8 * (i & 3) up.
  const word = (key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24)) >>> 0;
  const k = rotate(word, offset);
  if (n < SMALL) {
    for (let i = 0; i < n; i++) data[i]! ^= k >>> ((i & 3) << 3);
    return;
  }

  // Scalar head up to the first 8-aligned address: typed-array views need
  // aligned offsets, and a frame payload starts 2 to 14 bytes into a chunk.
  const start = data.byteOffset;
  const head = (8 - (start & 7)) & 7;
  for (let i = 0; i < head; i++) data[i]! ^= k >>> ((i & 3) << 3);

  const aligned = rotate(k, head);
  scratch32[0] = aligned;
  scratch32[1] = aligned;
  const k64 = scratch64[0]!;

  const words = Math.floor((n - head) / 8);
  const buffer = data.buffer;
  let view: BigUint64Array<ArrayBufferLike>;
  let first: number;
  if (buffer.byteLength <= CACHE_MAX_BYTES) {
    first = (start + head) >>> 3;
    // The length check also catches a resizable buffer that shrank or grew
    // since the view was made: a fixed-length view past the end has length 0.
    if (cachedBuffer !== buffer || cachedView.length < first + words) {
      cachedView = new BigUint64Array(buffer, 0, buffer.byteLength >>> 3);
      cachedBuffer = buffer;
    }
    view = cachedView;
  } else {
    first = 0;
    view = new BigUint64Array(buffer, start + head, words);
  }
  const end = first + words;
  // Sixteen words an iteration, then four, then one: from 1 KiB up this
  // is ~25-40% faster than four at a time (bench/mask_table.ts), because
  // V8 does not unroll the loop itself and the loop overhead is most of
  // what remains besides the load-XOR-store.
  const end16 = first + (words & ~15);
  const end4 = first + (words & ~3);
  let w = first;
  for (; w < end16; w += 16) {
    view[w]! ^= k64;
    view[w + 1]! ^= k64;
    view[w + 2]! ^= k64;
    view[w + 3]! ^= k64;
    view[w + 4]! ^= k64;
    view[w + 5]! ^= k64;
    view[w + 6]! ^= k64;
    view[w + 7]! ^= k64;
    view[w + 8]! ^= k64;
    view[w + 9]! ^= k64;
    view[w + 10]! ^= k64;
    view[w + 11]! ^= k64;
    view[w + 12]! ^= k64;
    view[w + 13]! ^= k64;
    view[w + 14]! ^= k64;
    view[w + 15]! ^= k64;
  }
  for (; w < end4; w += 4) {
    view[w]! ^= k64;
    view[w + 1]! ^= k64;
    view[w + 2]! ^= k64;
    view[w + 3]! ^= k64;
  }
  for (; w < end; w++) view[w]! ^= k64;

  for (let i = head + words * 8; i < n; i++) data[i]! ^= k >>> ((i & 3) << 3);
}

/**
 * Forget the cached 64-bit view, so that the next {@linkcode mask} call
 * makes its own: for the benchmark that shows what the cache is worth.
 * Not part of the module's API (`mod.ts` does not export it).
 *
 * @returns Nothing.
 */
export function forgetMaskView(): void {
  cachedBuffer = null;
}

/** Rotate a little-endian key word so that byte `shift & 3` comes first. */
function rotate(word: number, shift: number): number {
  const bits = (shift & 3) << 3;
  return bits === 0 ? word : ((word >>> bits) | (word << (32 - bits))) >>> 0;
}
