// Byte helpers shared by the layers; private to the module (the leading
// underscore keeps it out of the public API).

const EMPTY = new Uint8Array(0);

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
