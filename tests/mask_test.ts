import assert from "node:assert/strict";
import { forgetMaskView, mask } from "../mask.ts";
import { prng, randomBytes } from "./_util.ts";

/** The definition of RFC 6455 §5.3, one byte at a time. */
function referenceMask(data: Uint8Array, key: Uint8Array, offset: number): Uint8Array {
  const out = data.slice();
  for (let i = 0; i < out.length; i++) out[i]! ^= key[(offset + i) % 4]!;
  return out;
}

const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

Deno.test("mask unmasks the masked Hello frame of RFC 6455 §5.7", () => {
  const payload = new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]);
  mask(payload, KEY);
  assert.deepEqual(payload, new TextEncoder().encode("Hello"));
  mask(payload, KEY);
  assert.deepEqual(payload, new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]));
});

Deno.test("mask matches a byte-by-byte reference at every length, key offset and alignment", () => {
  const random = prng(1);
  // Up to 300 bytes: past two 16-word blocks, so every mix of the 16-, 4- and
  // 1-word loops, the head and the tail is covered.
  for (let length = 0; length <= 300; length++) {
    for (let offset = 0; offset < 4; offset++) {
      for (let alignment = 0; alignment < 8; alignment++) {
        const whole = randomBytes(random, alignment + length + 16);
        const before = whole.slice();
        const data = whole.subarray(alignment, alignment + length);
        const expected = referenceMask(data, KEY, offset);
        mask(data, KEY, offset);
        assert.deepEqual(
          data,
          expected,
          `length ${length} offset ${offset} alignment ${alignment}`,
        );
        // Bytes either side of the view belong to someone else.
        assert.deepEqual(whole.subarray(0, alignment), before.subarray(0, alignment));
        assert.deepEqual(
          whole.subarray(alignment + length),
          before.subarray(alignment + length),
        );
      }
    }
  }
});

Deno.test("mask matches the reference for random large lengths and positions", () => {
  const random = prng(2);
  for (let round = 0; round < 40; round++) {
    const length = Math.floor(random() * 200_000);
    const alignment = Math.floor(random() * 64);
    const offset = Math.floor(random() * 1000);
    const key = randomBytes(random, 4);
    const whole = randomBytes(random, alignment + length + 9);
    const before = whole.slice();
    const data = whole.subarray(alignment, alignment + length);
    const expected = referenceMask(data, key, offset);
    mask(data, key, offset);
    assert.deepEqual(data, expected, `length ${length} alignment ${alignment} offset ${offset}`);
    assert.deepEqual(whole.subarray(0, alignment), before.subarray(0, alignment));
    assert.deepEqual(whole.subarray(alignment + length), before.subarray(alignment + length));
  }
});

Deno.test("mask gives the same bytes when its view cache was forgotten before each call", () => {
  // The bench that weighs the cache runs mask() this way.
  const random = prng(21);
  const buffer = randomBytes(random, 70_000);
  const key = randomBytes(random, 4);
  for (const [start, length] of [[3, 100], [8, 4096], [14, 65_536], [1, 33]] as const) {
    const view = buffer.subarray(start, start + length);
    const expected = referenceMask(view, key, 0);
    forgetMaskView();
    mask(view, key);
    assert.deepEqual(view, expected, `${length} bytes at ${start}`);
  }
});

Deno.test("mask continues the key across chunks when given the running offset", () => {
  const random = prng(3);
  const payload = randomBytes(random, 5000);
  const expected = referenceMask(payload, KEY, 0);
  const pieces = payload.slice();
  let done = 0;
  while (done < pieces.length) {
    const size = Math.min(pieces.length - done, 1 + Math.floor(random() * 300));
    mask(pieces.subarray(done, done + size), KEY, done);
    done += size;
  }
  assert.deepEqual(pieces, expected);
});

Deno.test("mask is its own inverse", () => {
  const random = prng(4);
  const original = randomBytes(random, 4096);
  const data = original.slice();
  mask(data.subarray(3), KEY, 1);
  assert.notDeepEqual(data, original);
  mask(data.subarray(3), KEY, 1);
  assert.deepEqual(data, original);
});

Deno.test("mask stays correct when it alternates between buffers and views of one buffer", async (t) => {
  // The word view is cached per buffer: switching buffers, and views of one
  // buffer at different places, must never reuse a stale view.
  const random = prng(5);
  const buffers = [randomBytes(random, 4096), randomBytes(random, 300), randomBytes(random, 70)];
  await t.step("across three buffers", () => {
    for (let round = 0; round < 300; round++) {
      const whole = buffers[round % 3]!;
      const start = Math.floor(random() * (whole.length - 40));
      const end = start + 40 + Math.floor(random() * (whole.length - start - 40));
      const data = whole.subarray(start, end);
      const expected = referenceMask(data, KEY, round);
      mask(data, KEY, round);
      assert.deepEqual(data, expected);
    }
  });
  await t.step("on a buffer larger than the view cache", () => {
    const whole = randomBytes(random, (1 << 20) + 4096);
    for (const start of [0, 5, 1 << 20]) {
      const data = whole.subarray(start, start + 3000);
      const expected = referenceMask(data, KEY, start);
      mask(data, KEY, start);
      assert.deepEqual(data, expected);
    }
  });
  await t.step("on a resizable buffer that shrinks and grows", () => {
    const buffer = new ArrayBuffer(1024, { maxByteLength: 4096 });
    const whole = new Uint8Array(buffer);
    whole.set(randomBytes(random, whole.length));
    let data = whole.subarray(8, 900);
    let expected = referenceMask(data, KEY, 0);
    mask(data, KEY);
    assert.deepEqual(data, expected);
    buffer.resize(512);
    data = new Uint8Array(buffer, 16, 400);
    expected = referenceMask(data, KEY, 0);
    mask(data, KEY);
    assert.deepEqual(data, expected);
    buffer.resize(4096);
    data = new Uint8Array(buffer, 1000, 3000);
    expected = referenceMask(data, KEY, 0);
    mask(data, KEY);
    assert.deepEqual(data, expected);
  });
});

Deno.test("mask rejects a key that is not 4 bytes", () => {
  assert.throws(() => mask(new Uint8Array(8), new Uint8Array(3)), RangeError);
  assert.throws(() => mask(new Uint8Array(8), new Uint8Array(5)), RangeError);
});
