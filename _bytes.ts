// Byte helpers shared by the layers; private to the module (the leading
// underscore keeps it out of the public API).

const EMPTY = new Uint8Array(0);

// Small arrays are cut from a shared slab: one allocation serves many
// frames, and frames made one after another sit side by side, so a driver
// writing them together joins them without copying (see concatBytes).
const SLAB_SIZE = 16 * 1024;
const SLAB_MAX = 2 * 1024;
let slab = EMPTY;
let slabUsed = 0;

/**
 * A zero-filled array of `size` bytes that no one else holds. Up to 2 KiB
 * it is a view into a shared slab, so its `buffer` holds other bytes too:
 * use the view, not its buffer.
 *
 * @param size The length in bytes.
 * @returns The array.
 */
export function allocate(size: number): Uint8Array {
  if (size > SLAB_MAX) return new Uint8Array(size);
  if (slabUsed + size > slab.length) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const view = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += size;
  return view;
}

/**
 * Join byte arrays into one. When at most one of them holds bytes, or they
 * are adjacent views of one buffer, the result shares their memory (no
 * copy), so callers must not rely on getting a copy.
 *
 * @param chunks The arrays, in order.
 * @returns The joined bytes.
 */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  let filled = 0;
  let first: Uint8Array = EMPTY;
  let last: Uint8Array = EMPTY;
  let adjacent = true;
  for (const chunk of chunks) {
    if (chunk.length === 0) continue;
    if (filled === 0) first = chunk;
    else if (chunk.buffer !== last.buffer || chunk.byteOffset !== last.byteOffset + last.length) {
      adjacent = false;
    }
    length += chunk.length;
    last = chunk;
    filled++;
  }
  if (filled <= 1) return last;
  if (adjacent) return new Uint8Array(first.buffer, first.byteOffset, length);
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
