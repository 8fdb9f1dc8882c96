/**
 * A small synchronous SHA-1 (FIPS 180-4 §6.1), for the opening handshake's
 * `Sec-WebSocket-Accept` token (RFC 6455 §4.2.2). `crypto.subtle.digest` is
 * asynchronous, and a sans-IO state machine answers within the call that fed
 * it the request, so it cannot await.
 *
 * SHA-1 is broken for collision resistance; the handshake uses it only to
 * prove the server read the request, which needs no security from the hash.
 *
 * @module
 */

// The message schedule, the chaining state and the padded tail, reused by
// every call: the function never yields, so no two calls can interleave, and
// allocating typed arrays costs more than hashing a handshake key.
const W = new Uint32Array(80);
const H = new Uint32Array(5);
const TAIL = new Uint8Array(128);

// Hashes the 64 bytes of `bytes` from `offset` into H (FIPS 180-4 §6.1.2).
function block(bytes: Uint8Array, offset: number): void {
  for (let t = 0; t < 16; t++) {
    const i = offset + 4 * t;
    W[t] = (bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!;
  }
  for (let t = 16; t < 80; t++) {
    const x = W[t - 3]! ^ W[t - 8]! ^ W[t - 14]! ^ W[t - 16]!;
    W[t] = (x << 1) | (x >>> 31);
  }
  let a = H[0]!, b = H[1]!, c = H[2]!, d = H[3]!, e = H[4]!;
  // Four loops, one per round function, keep the hot loop free of branches.
  for (let t = 0; t < 20; t++) {
    const temp = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + 0x5a827999 + W[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (let t = 20; t < 40; t++) {
    const temp = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + 0x6ed9eba1 + W[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (let t = 40; t < 60; t++) {
    const temp =
      (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + 0x8f1bbcdc + W[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (let t = 60; t < 80; t++) {
    const temp = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + 0xca62c1d6 + W[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  H[0] = H[0]! + a;
  H[1] = H[1]! + b;
  H[2] = H[2]! + c;
  H[3] = H[3]! + d;
  H[4] = H[4]! + e;
}

/**
 * The SHA-1 digest of `data`, computed synchronously.
 *
 * @param data The bytes to hash.
 * @returns The 20-byte digest.
 *
 * @example The digest of "abc" (FIPS 180-4 test vector)
 * ```ts
 * import { sha1 } from "./sha1.ts";
 * const digest = sha1(new TextEncoder().encode("abc"));
 * const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
 * if (hex !== "a9993e364706816aba3e25717850c26c9cd0d89d") throw new Error("Example failed");
 * ```
 */
export function sha1(data: Uint8Array): Uint8Array {
  H[0] = 0x67452301;
  H[1] = 0xefcdab89;
  H[2] = 0x98badcfe;
  H[3] = 0x10325476;
  H[4] = 0xc3d2e1f0;
  const length = data.length;
  const whole = length - (length % 64);
  for (let offset = 0; offset < whole; offset += 64) block(data, offset);

  // The padding (FIPS 180-4 §5.1.1): 0x80, zeros, then the length in bits as
  // a 64-bit big-endian number, in one block or two.
  const rest = length - whole;
  const end = rest < 56 ? 64 : 128;
  TAIL.fill(0);
  // A loop, not set(subarray()): a subarray is one more typed-array object.
  for (let i = 0; i < rest; i++) TAIL[i] = data[whole + i]!;
  TAIL[rest] = 0x80;
  // Bit length split in two words: length * 8 may pass 2^32.
  const high = Math.floor(length / 0x20000000);
  const low = (length << 3) >>> 0;
  TAIL[end - 8] = high >>> 24;
  TAIL[end - 7] = high >>> 16;
  TAIL[end - 6] = high >>> 8;
  TAIL[end - 5] = high;
  TAIL[end - 4] = low >>> 24;
  TAIL[end - 3] = low >>> 16;
  TAIL[end - 2] = low >>> 8;
  TAIL[end - 1] = low;
  for (let offset = 0; offset < end; offset += 64) block(TAIL, offset);

  const digest = new Uint8Array(20);
  for (let i = 0; i < 5; i++) {
    const word = H[i]!;
    digest[4 * i] = word >>> 24;
    digest[4 * i + 1] = word >>> 16;
    digest[4 * i + 2] = word >>> 8;
    digest[4 * i + 3] = word;
  }
  return digest;
}
