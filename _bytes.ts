// Byte helpers shared by the layers; private to the module (the leading
// underscore keeps it out of the public API).

const EMPTY = new Uint8Array(0);

/**
 * Join byte arrays into one. A single array comes back as it is, so callers
 * must not rely on getting a copy.
 *
 * @param chunks The arrays, in order.
 * @param size Their total length, when the caller already knows it.
 * @returns The joined bytes.
 */
export function concatBytes(chunks: readonly Uint8Array[], size?: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  if (chunks.length === 0) return EMPTY;
  let length = size ?? 0;
  if (size === undefined) { for (const chunk of chunks) length += chunk.length; }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
