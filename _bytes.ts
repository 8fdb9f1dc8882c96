// Byte helpers shared by the layers; private to the module (the leading
// underscore keeps it out of the public API).

const EMPTY = new Uint8Array(0);

/**
 * Join byte arrays into one. When at most one of them holds bytes, it comes
 * back as it is (no copy), so callers must not rely on getting a copy.
 *
 * @param chunks The arrays, in order.
 * @returns The joined bytes.
 */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  let filled = 0;
  let last: Uint8Array = EMPTY;
  for (const chunk of chunks) {
    if (chunk.length === 0) continue;
    length += chunk.length;
    last = chunk;
    filled++;
  }
  if (filled <= 1) return last;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
