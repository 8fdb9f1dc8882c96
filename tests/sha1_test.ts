import assert from "node:assert/strict";
import { sha1 } from "../sha1.ts";
import { prng, randomBytes } from "./_util.ts";

async function reference(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-1", data));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("sha1 matches crypto.subtle for every length from 0 to 200", async () => {
  const next = prng(6455);
  for (let length = 0; length <= 200; length++) {
    const data = randomBytes(next, length);
    assert.deepEqual(sha1(data), await reference(data), `length ${length}`);
  }
});

Deno.test("sha1 matches crypto.subtle on large inputs", async () => {
  const next = prng(42);
  for (const length of [4095, 4096, 65_537, 1_000_003]) {
    const data = randomBytes(next, length);
    assert.deepEqual(sha1(data), await reference(data), `length ${length}`);
  }
});

Deno.test("sha1 hashes a subarray by its own bytes, not its buffer", async () => {
  const next = prng(7);
  const big = randomBytes(next, 300);
  const view = big.subarray(17, 217);
  assert.deepEqual(sha1(view), await reference(big.slice(17, 217)));
});

Deno.test("sha1 gives the FIPS 180-4 test vectors", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  assert.equal(hex(sha1(encode(""))), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  assert.equal(hex(sha1(encode("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
  assert.equal(
    hex(sha1(encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
    "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
  );
});

Deno.test("sha1 reproduces the accept token of RFC 6455 §1.3", () => {
  const input = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  const digest = sha1(new TextEncoder().encode(input));
  assert.equal(btoa(String.fromCharCode(...digest)), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});
