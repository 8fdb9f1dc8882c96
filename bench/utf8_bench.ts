/**
 * The streaming, fail-fast decoder and `decodeUtf8` against a plain fatal
 * `TextDecoder` decode (the baseline of each group), for ASCII and for
 * mixed multi-byte text, whole and split in two (inside a character where
 * the text has multi-byte ones).
 */
import { decodeUtf8, Utf8StreamDecoder } from "../utf8.ts";

// 32 B and 64 B straddle the bound of the JavaScript ASCII path (utf8.ts).
const SIZES: [string, number][] = [
  ["32 B", 32],
  ["64 B", 64],
  ["125 B", 125],
  ["16 KiB", 16 << 10],
  ["1 MiB", 1 << 20],
];
const SAMPLES: [string, string][] = [
  ["ASCII", "The quick brown fox jumps over the lazy dog. "],
  ["mixed", "Grüße, κόσμε, 漢字 and 😀; "],
];

function textOfSize(seed: string, size: number): Uint8Array {
  const bytes = new TextEncoder().encode(seed.repeat(Math.ceil(size / seed.length)));
  // Cut at a code point boundary at or below `size`.
  let end = Math.min(size, bytes.length);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

const plain = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const stream = new Utf8StreamDecoder();

for (const [kind, seed] of SAMPLES) {
  for (const [label, size] of SIZES) {
    const bytes = textOfSize(seed, size);
    const group = `${kind} ${label}`;
    // Fewer runs of the 1 MiB cases keep the whole bench short.
    const runs = size >= 1 << 20 ? { n: 100 } : {};
    Deno.bench({
      name: `TextDecoder, ${group}`,
      group,
      baseline: true,
      ...runs,
      fn() {
        plain.decode(bytes);
      },
    });
    Deno.bench({
      name: `Utf8StreamDecoder whole, ${group}`,
      group,
      ...runs,
      fn() {
        stream.decode(bytes, true);
      },
    });
    // Split inside a code point where there is one, as frames may be.
    const cut = bytes.length >> 1;
    Deno.bench({
      name: `Utf8StreamDecoder in 2 chunks, ${group}`,
      group,
      ...runs,
      fn() {
        stream.decode(bytes.subarray(0, cut), false);
        stream.decode(bytes.subarray(cut), true);
      },
    });
    Deno.bench({
      name: `decodeUtf8, ${group}`,
      group,
      ...runs,
      fn() {
        decodeUtf8(bytes);
      },
    });
  }
}
