import assert from "node:assert/strict";
import { ByteBuffer } from "../byte_buffer.ts";
import {
  allocate,
  allocateKept,
  concatBytes,
  copyBytes,
  inSlab,
  joinFrames,
  recycle,
  takeSpare,
} from "../_bytes.ts";
import { emptied, takeFirst } from "../_array.ts";
import { bytes, prng } from "./_util.ts";

/** The obvious buffer: one array, concatenated on every push. */
class ReferenceBuffer {
  bytes: number[] = [];
  push(chunk: Uint8Array): void {
    this.bytes.push(...chunk);
  }
  take(n: number): Uint8Array {
    return new Uint8Array(this.bytes.splice(0, n));
  }
}

Deno.test("ByteBuffer agrees with a reference over random push and consume sequences", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const random = prng(seed);
    const buffer = new ByteBuffer();
    const reference = new ReferenceBuffer();
    let counter = 0;
    for (let step = 0; step < 2000; step++) {
      const action = random();
      if (action < 0.4) {
        // Mostly small, now and then past the size copied by a loop.
        const roll = random();
        const size = roll < 0.2 ? 0 : Math.floor(random() * (roll < 0.3 ? 200 : 40));
        const chunk = new Uint8Array(size);
        for (let i = 0; i < size; i++) chunk[i] = counter++ & 0xff;
        buffer.push(chunk);
        reference.push(chunk);
      } else if (action < 0.6) {
        const n = Math.floor(random() * (buffer.length + 1));
        assert.deepEqual(buffer.consume(n), reference.take(n), `seed ${seed} step ${step}`);
      } else if (action < 0.75) {
        const n = Math.floor(random() * 60);
        assert.deepEqual(buffer.consumeAtMost(n), reference.take(n), `seed ${seed} step ${step}`);
      } else if (action < 0.85) {
        const n = Math.floor(random() * (buffer.length + 1));
        buffer.skip(n);
        reference.take(n);
      } else if (action < 0.99) {
        if (buffer.length > 0) {
          const index = Math.floor(random() * buffer.length);
          assert.equal(buffer.byteAt(index), reference.bytes[index], `seed ${seed} step ${step}`);
        }
      } else {
        buffer.clear();
        reference.bytes = [];
      }
      assert.equal(buffer.length, reference.bytes.length);
    }
  }
});

Deno.test("ByteBuffer starts empty", () => {
  const buffer = new ByteBuffer();
  assert.equal(buffer.length, 0);
  assert.deepEqual(buffer.consume(0), bytes());
  assert.deepEqual(buffer.consumeAtMost(10), bytes());
  buffer.skip(0);
  assert.throws(() => buffer.byteAt(0), RangeError);
  assert.throws(() => buffer.consume(1), RangeError);
  assert.throws(() => buffer.skip(1), RangeError);
});

Deno.test("ByteBuffer ignores empty chunks", () => {
  const buffer = new ByteBuffer();
  buffer.push(bytes());
  buffer.push(bytes(1));
  buffer.push(bytes());
  buffer.push(bytes(2));
  assert.equal(buffer.length, 2);
  assert.deepEqual(buffer.consume(2), bytes(1, 2));
});

Deno.test("ByteBuffer rejects reads outside the buffered bytes", () => {
  const buffer = new ByteBuffer();
  buffer.push(bytes(1, 2, 3));
  assert.throws(() => buffer.byteAt(3), RangeError);
  assert.throws(() => buffer.byteAt(-1), RangeError);
  assert.throws(() => buffer.byteAt(Number.NaN), RangeError);
  assert.throws(() => buffer.consume(4), RangeError);
  assert.throws(() => buffer.consume(-1), RangeError);
  assert.throws(() => buffer.skip(4), RangeError);
  assert.equal(buffer.length, 3, "a failed read consumes nothing");
});

Deno.test("ByteBuffer returns a view, not a copy, when the bytes lie in one chunk", () => {
  const chunk = bytes(1, 2, 3, 4, 5, 6);
  const buffer = new ByteBuffer();
  buffer.push(chunk);
  buffer.push(bytes(7, 8));
  buffer.skip(1);
  const view = buffer.consume(3);
  assert.equal(view.buffer, chunk.buffer);
  assert.equal(view.byteOffset, 1);
  // Callers own consumed bytes and may unmask them in place.
  view[0] = 0xff;
  assert.equal(chunk[1], 0xff);
  const tail = buffer.consumeAtMost(2);
  assert.equal(tail.buffer, chunk.buffer, "the rest of the head chunk, still a view");
  assert.deepEqual(tail, bytes(5, 6));
});

Deno.test("ByteBuffer copies once when the bytes span chunks", () => {
  const first = bytes(1, 2, 3);
  const second = bytes(4, 5, 6);
  const buffer = new ByteBuffer();
  buffer.push(first);
  buffer.push(second);
  const joined = buffer.consume(5);
  assert.deepEqual(joined, bytes(1, 2, 3, 4, 5));
  assert.notEqual(joined.buffer, first.buffer);
  assert.notEqual(joined.buffer, second.buffer);
  assert.deepEqual(buffer.consumeAtMost(100), bytes(6));
});

Deno.test("ByteBuffer handles reads that end exactly on chunk boundaries", async (t) => {
  await t.step("consume", () => {
    const buffer = new ByteBuffer();
    buffer.push(bytes(1, 2));
    buffer.push(bytes(3, 4));
    buffer.push(bytes(5));
    assert.deepEqual(buffer.consume(2), bytes(1, 2));
    assert.equal(buffer.byteAt(0), 3);
    assert.deepEqual(buffer.consume(2), bytes(3, 4));
    assert.deepEqual(buffer.consume(1), bytes(5));
    assert.equal(buffer.length, 0);
    buffer.push(bytes(6));
    assert.equal(buffer.byteAt(0), 6, "a drained buffer takes new chunks");
  });
  await t.step("skip", () => {
    const buffer = new ByteBuffer();
    buffer.push(bytes(1, 2));
    buffer.push(bytes(3, 4));
    buffer.skip(2);
    assert.equal(buffer.byteAt(0), 3);
    assert.equal(buffer.byteAt(1), 4);
    buffer.skip(2);
    assert.equal(buffer.length, 0);
  });
  await t.step("byteAt at the last byte of each chunk", () => {
    const buffer = new ByteBuffer();
    for (let i = 0; i < 10; i++) buffer.push(bytes(i * 2, i * 2 + 1));
    buffer.skip(1);
    for (let i = 0; i < 19; i++) assert.equal(buffer.byteAt(i), i + 1);
  });
});

Deno.test("ByteBuffer consumes across many chunks", () => {
  const buffer = new ByteBuffer();
  for (let i = 0; i < 1000; i++) buffer.push(bytes(i & 0xff));
  buffer.skip(3);
  const joined = buffer.consume(990);
  for (let i = 0; i < 990; i++) assert.equal(joined[i], (i + 3) & 0xff);
  assert.equal(buffer.length, 7);
  assert.equal(buffer.byteAt(6), 999 & 0xff);
});

Deno.test("ByteBuffer consumes and skips across more chunks than it keeps before compacting", () => {
  const buffer = new ByteBuffer();
  for (let i = 0; i < 10_000; i++) buffer.push(bytes(i & 0xff, 0));
  buffer.skip(1);
  const joined = buffer.consume(5001);
  for (let i = 0; i < 5001; i++) assert.equal(joined[i], i % 2 === 0 ? 0 : ((i + 1) / 2) & 0xff);
  buffer.skip(4001);
  assert.equal(buffer.length, 20_000 - 1 - 5001 - 4001);
  // Byte 9003 of the stream is the second byte of chunk 4501.
  assert.equal(buffer.byteAt(0), 0);
  assert.deepEqual(buffer.consumeAtMost(4), bytes(0, 4502 & 0xff, 0, 4503 & 0xff));
});

Deno.test("ByteBuffer clear drops everything", () => {
  const buffer = new ByteBuffer();
  buffer.push(bytes(1, 2, 3));
  buffer.push(bytes(4));
  buffer.skip(1);
  buffer.clear();
  assert.equal(buffer.length, 0);
  assert.throws(() => buffer.byteAt(0), RangeError);
  buffer.push(bytes(9));
  assert.deepEqual(buffer.consume(1), bytes(9));
});

Deno.test("ByteBuffer streams 100k small chunks through without losing a byte", async (t) => {
  await t.step("consumed as they arrive", () => {
    const buffer = new ByteBuffer();
    let next = 0;
    for (let i = 0; i < 100_000; i++) {
      buffer.push(bytes(i & 0xff, (i >> 8) & 0xff, 7));
      if (i % 3 === 0) {
        const piece = buffer.consume(buffer.length - 1);
        for (const byte of piece) {
          const j = Math.floor(next / 3);
          const expected = [j & 0xff, (j >> 8) & 0xff, 7][next % 3];
          assert.equal(byte, expected);
          next++;
        }
      }
    }
    assert.equal(buffer.length + next, 300_000);
  });
  await t.step("all pushed first, then consumed a few bytes at a time", () => {
    const buffer = new ByteBuffer();
    for (let i = 0; i < 100_000; i++) buffer.push(bytes(i & 0xff));
    assert.equal(buffer.length, 100_000);
    for (let i = 0; i < 100_000; i += 5) {
      assert.equal(buffer.byteAt(0), i & 0xff);
      const piece = buffer.consume(5);
      assert.equal(piece[4], (i + 4) & 0xff);
    }
    assert.equal(buffer.length, 0);
  });
});

Deno.test("concatBytes joins adjacent views of one buffer without copying, others by copying", () => {
  const whole = bytes(1, 2, 3, 4, 5, 6);
  const joined = concatBytes([whole.subarray(0, 2), new Uint8Array(0), whole.subarray(2, 5)]);
  assert.deepEqual(joined, bytes(1, 2, 3, 4, 5));
  assert.equal(joined.buffer, whole.buffer, "adjacent views share the buffer");
  const gap = concatBytes([whole.subarray(0, 2), whole.subarray(3, 5)]);
  assert.deepEqual(gap, bytes(1, 2, 4, 5));
  assert.notEqual(gap.buffer, whole.buffer);
  const other = concatBytes([whole.subarray(0, 2), bytes(3)]);
  assert.deepEqual(other, bytes(1, 2, 3));
  assert.notEqual(other.buffer, whole.buffer);
  assert.deepEqual(concatBytes([]), bytes());
});

Deno.test("a pooled join copies into a buffer that can be given back and reused", () => {
  const parts = [new Uint8Array(3000).fill(1), new Uint8Array(2000).fill(2)];
  const joined = concatBytes(parts, allocate);
  assert.equal(joined.length, 5000);
  assert.ok(joined.subarray(0, 3000).every((byte) => byte === 1));
  assert.ok(joined.subarray(3000).every((byte) => byte === 2));
  recycle(joined);
  assert.equal(allocate(4000).buffer, joined.buffer, "the written join serves a later frame");
  // Joined fresh or for keeping, it never enters the pool, and a kept join
  // never takes a spare (which may be twice its size).
  for (const allocator of [undefined, allocateKept]) {
    const kept = concatBytes(parts, allocator);
    recycle(kept);
    assert.notEqual(allocate(5000).buffer, kept.buffer);
  }
  const spare = allocate(9000);
  recycle(spare);
  assert.notEqual(concatBytes(parts, allocateKept).buffer, spare.buffer);
  assert.equal(allocate(9000).buffer, spare.buffer, "the spare is still there");
  const keptJoin = concatBytes([new Uint8Array(10), new Uint8Array(20)], allocateKept);
  assert.equal(keptJoin.buffer.byteLength, 16 * 1024, "a small kept join is cut from a slab");
  assert.ok(!inSlab(keptJoin), "but not from one that frames share");
});

Deno.test("allocate hands out disjoint arrays; small ones side by side", () => {
  const arrays = Array.from({ length: 100 }, (_, i) => allocate(1 + (i % 50)));
  for (const array of arrays) array.fill(0xff); // writing one never shows in another
  for (const [i, array] of arrays.entries()) {
    assert.equal(array.length, 1 + (i % 50));
    assert.ok(array.every((byte) => byte === 0xff));
  }
  // Consecutive small arrays are adjacent (until a slab runs out), so
  // joining them costs no copy.
  const first = allocate(10);
  const second = allocate(20);
  if (first.buffer === second.buffer) {
    assert.equal(concatBytes([first, second]).buffer, first.buffer);
  }
  const large = allocate(100_000);
  assert.equal(large.byteOffset, 0);
  assert.equal(
    large.buffer.byteLength,
    98 * 1024,
    "a large array has its own buffer, in whole KiB",
  );
});

Deno.test("a pooled buffer serves sizes a little over the one it was made for", () => {
  // An echo's frame (a 10-byte header) and the read of the peer's next
  // frame like it (14 bytes, with its mask key, and a byte more) ask for
  // sizes a few bytes apart: each must find the other's buffer.
  const frame = allocate(65_546);
  recycle(frame);
  const read = takeSpare(65_536 + 14 + 1);
  assert.equal(read, frame.buffer);
  assert.equal(read.byteLength, 66_560);
  recycle(new Uint8Array(read));
  assert.equal(takeSpare(70_000), null, "none fits: takeSpare never allocates");
  assert.equal(allocate(65_546).buffer, frame.buffer);
});

Deno.test("recycle gives allocate a large buffer back, and nothing else", () => {
  const frame = allocate(70_000);
  frame.fill(7);
  recycle(frame);
  const again = allocate(65_000);
  assert.equal(again.buffer, frame.buffer, "a recycled buffer serves the next large array");
  assert.equal(again.length, 65_000);
  const other = allocate(65_000);
  assert.notEqual(other.buffer, again.buffer, "a buffer is lent to one holder at a time");
  recycle(again);
  recycle(again); // a second give-back of the same buffer is ignored
  assert.equal(allocate(65_000).buffer, again.buffer);
  assert.notEqual(allocate(65_000).buffer, again.buffer);
  // Not more than twice the size asked for: a small frame never pins a large buffer.
  const big = allocate(200_000);
  recycle(big);
  assert.notEqual(allocate(50_000).buffer, big.buffer);
  // Only what allocate lent whole enters the pool: not slabs, not foreign arrays.
  const small = allocate(100);
  recycle(small);
  const foreign = new Uint8Array(70_000);
  recycle(foreign);
  for (let i = 0; i < 4; i++) {
    const taken = allocate(70_000).buffer;
    assert.notEqual(taken, small.buffer);
    assert.notEqual(taken, foreign.buffer);
  }
});

Deno.test("the pool keeps at most 256 buffers and 16 MiB, and only slab views count as sharing a slab", () => {
  const reusedOf = (count: number, size: number): number => {
    const given = Array.from({ length: count }, () => allocate(size));
    for (const bytes of given) recycle(bytes);
    const buffers = new Set(given.map((bytes) => bytes.buffer));
    return Array.from({ length: count }, () => allocate(size))
      .filter((bytes) => buffers.has(bytes.buffer)).length;
  };
  // Room for every connection of a busy server to have a buffer in flight.
  const few = reusedOf(300, 5_000);
  assert.ok(few >= 250 && few <= 256, `${few} of 300 small buffers given back were reused`);
  const large = reusedOf(300, 200_000);
  const bound = Math.floor(16 * 1024 * 1024 / 200_000);
  assert.ok(large >= bound - 6 && large <= bound, `${large} of 300 large buffers were reused`);
  assert.ok(inSlab(allocate(100)));
  assert.ok(!inSlab(allocate(5_000)));
  assert.ok(!inSlab(new Uint8Array(100)));
});

Deno.test("a full pool drops its oldest buffers for new ones, so sizes no one asks for go", () => {
  // A burst of large frames fills the pool; what follows uses smaller ones.
  const large = Array.from({ length: 100 }, () => allocate(200_000));
  for (const bytes of large) recycle(bytes);
  const small = Array.from({ length: 50 }, () => allocate(5_000));
  for (const bytes of small) recycle(bytes);
  const given = new Set(small.map((bytes) => bytes.buffer));
  const reused = Array.from({ length: 50 }, () => allocate(5_000))
    .filter((bytes) => given.has(bytes.buffer)).length;
  assert.equal(reused, 50, "every small buffer given back serves again");
  // Room was made at the old end: the newest large ones stayed.
  const newest = new Set(large.slice(-40).map((bytes) => bytes.buffer));
  const taken = Array.from({ length: 40 }, () => allocate(200_000));
  assert.ok(taken.every((bytes) => newest.has(bytes.buffer)), "the newest large ones stayed");
});

/** Frames cut from the start of a slab of their own (whatever earlier tests left cut). */
function freshSlabStart(size: number): Uint8Array {
  for (let i = 0; i < 100; i++) {
    const bytes = allocate(size);
    if (bytes.byteOffset === 0) return bytes;
  }
  throw new Error("no slab started in 100 allocations");
}

Deno.test("a frame slab starts over once every byte cut from it came back, and only then", () => {
  const first = freshSlabStart(1000);
  const second = allocate(200);
  assert.equal(second.buffer, first.buffer);
  recycle(first);
  const third = allocate(50);
  assert.equal(third.byteOffset, 1200, "not while a frame is out");
  recycle(second);
  recycle(third);
  const again = allocate(10);
  assert.equal(again.buffer, first.buffer);
  assert.equal(again.byteOffset, 0, "all back: the slab starts over");
  // Adjacent frames written as one view come back by their bytes too.
  const joined = concatBytes([again, allocate(30), allocate(40)]);
  assert.equal(joined.length, 80);
  recycle(joined);
  const single = allocate(1);
  assert.equal(single.byteOffset, 0);
  recycle(allocate(100));
  assert.equal(allocate(1).byteOffset, 101, "one byte still out keeps the slab as it is");
});

Deno.test("joinFrames gives back the frames it copies, not those it joins as a view", () => {
  const first = freshSlabStart(1000);
  const view = joinFrames([first, allocate(500)]);
  assert.equal(view.buffer, first.buffer);
  assert.equal(view.length, 1500);
  recycle(view);
  const apart = freshSlabStart(1000);
  const gap = allocate(10);
  const copy = joinFrames([apart, allocate(1000)]);
  assert.equal(copy.length, 2000);
  recycle(gap);
  const probe = allocate(1);
  assert.notEqual(probe.byteOffset, 0, "the copy is still out");
  recycle(probe);
  recycle(copy);
  const next = allocate(1);
  assert.equal(next.buffer, apart.buffer);
  assert.equal(next.byteOffset, 0, "the copied frames came back with the join");
});

Deno.test("a full frame slab is used again once all of it came back; kept bytes never are", () => {
  const slab = [freshSlabStart(2048)];
  while (slab.length < 8) slab.push(allocate(2048));
  assert.ok(slab.every((bytes) => bytes.buffer === slab[0]!.buffer));
  const next = allocate(2048);
  assert.notEqual(next.buffer, slab[0]!.buffer, "the slab is full: a new one");
  for (const bytes of slab.slice(1)) recycle(bytes);
  // One frame still out: the full slab is not reused.
  const during = Array.from({ length: 8 }, () => allocate(2048));
  assert.ok(during.every((bytes) => bytes.buffer !== slab[0]!.buffer));
  recycle(slab[0]!);
  let reused = false;
  for (let i = 0; i < 16 && !reused; i++) reused = allocate(2048).buffer === slab[0]!.buffer;
  assert.ok(reused, "all back: a later slab is the same memory");
  // What allocateKept cuts is the application's: its slabs are others, and
  // giving its bytes back changes nothing.
  const kept = allocateKept(100);
  assert.ok(!inSlab(kept));
  recycle(kept);
  const frame = allocate(100);
  assert.notEqual(frame.buffer, kept.buffer);
  assert.notEqual(allocateKept(100).byteOffset, kept.byteOffset);
});

Deno.test("copyBytes copies short and long runs between any offsets", () => {
  const source = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
  for (const length of [0, 1, 63, 64, 65, 200]) {
    for (const [at, start] of [[0, 0], [3, 5], [17, 100 - (length % 50)]] as const) {
      const target = new Uint8Array(300).fill(0xee);
      copyBytes(target, at, source, start, length);
      const expected = new Uint8Array(300).fill(0xee);
      expected.set(source.subarray(start, start + length), at);
      assert.deepEqual(target, expected, `length ${length} at ${at} from ${start}`);
    }
  }
});

Deno.test("emptied empties a short array in place and replaces a long one; takeFirst keeps order", () => {
  const short = [1, 2, 3];
  assert.equal(emptied(short), short);
  assert.deepEqual(short, []);
  const long = Array.from({ length: 33 }, (_, i) => i);
  const replaced = emptied(long);
  assert.notEqual(replaced, long);
  assert.deepEqual(replaced, []);
  assert.equal(long.length, 33, "a replaced array is left as it was");
  const queue = [1, 2, 3];
  assert.deepEqual([takeFirst(queue), takeFirst(queue), takeFirst(queue)], [1, 2, 3]);
  assert.equal(takeFirst(queue), undefined);
  queue.push(4);
  assert.equal(takeFirst(queue), 4);
});
