// The queue between a transport and the application (inbox.ts), alone:
// its bounds, what it copies, and the iterator over it.
import assert from "node:assert/strict";
import { Inbox, iterateInbox, MessageParts } from "../inbox.ts";

Deno.test("an inbox drops what is pushed after its end", () => {
  const inbox = new Inbox();
  inbox.push("kept");
  inbox.end({ code: 1000, reason: "" });
  inbox.push("late");
  assert.equal(inbox.size, "kept".length + 64); // 64: the per-message overhead counted
  assert.equal(inbox.take(), "kept");
  assert.equal(inbox.take(), undefined);
});

Deno.test("a long queue taken from while it grows keeps its order and its size", () => {
  // Past 1024 taken with as many still queued, the queue drops its taken
  // slots (a copy): what is left must come out unchanged, and counted.
  const inbox = new Inbox();
  let pushed = 0;
  let taken = 0;
  const takeChecked = (count: number) => {
    for (let i = 0; i < count; i++) assert.equal(inbox.take(), `m${taken++}`);
  };
  for (; pushed < 3000; pushed++) inbox.push(`m${pushed}`);
  takeChecked(1500);
  for (; pushed < 5000; pushed++) inbox.push(`m${pushed}`);
  takeChecked(2500);
  assert.equal(inbox.taken, 4000);
  let bytes = 0;
  for (let i = taken; i < pushed; i++) bytes += `m${i}`.length + 64;
  assert.equal(inbox.size, bytes);
  takeChecked(pushed - taken);
  assert.equal(inbox.take(), undefined);
  assert.equal(inbox.size, 0);
});

// Views of one large read buffer each, as a read of `count` small frames gives them.
function viewsOfLargeBuffers(count: number, size = 1): Uint8Array[] {
  return Array.from(
    { length: count },
    (_, i) => new Uint8Array(256 * 1024).fill(i, 0, size).subarray(0, size),
  );
}

Deno.test("queued messages that are small views of large buffers hold at most 1 MiB of them", () => {
  // A reader that does not read, and messages that each sit alone in a
  // 256 KiB read buffer (a peer sending each between large pongs): they
  // held 783 MB for 3,000 one-byte messages.
  const inbox = new Inbox();
  const items = viewsOfLargeBuffers(100);
  for (const item of items) inbox.push(item);
  const queued: Uint8Array[] = [];
  for (let item = inbox.take(); item !== undefined; item = inbox.take()) {
    queued.push(item as Uint8Array);
  }
  assert.equal(queued.length, 100);
  assert.ok(queued.every((item, i) => item.length === 1 && item[0] === i));
  const holding = queued.filter((item) => item.buffer.byteLength > 16 * 1024).length;
  assert.equal(holding, 4); // 4 x 256 KiB within the budget; the rest were copied
  // Pipelined messages that share a read stay views of it.
  const read = new Uint8Array(32 * 1024);
  for (let i = 0; i < 16; i++) inbox.push(read.subarray(i * 1024, (i + 1) * 1024));
  for (let i = 0; i < 16; i++) assert.equal((inbox.take() as Uint8Array).buffer, read.buffer);
});

Deno.test("the pieces of a message cost about their own size, however they come", () => {
  // Fragments that are small views of large buffers are copied...
  const parts = new MessageParts();
  for (const piece of viewsOfLargeBuffers(10, 3)) parts.push(piece);
  const message = parts.end(new Uint8Array([9])) as Uint8Array;
  assert.equal(message.length, 31);
  assert.ok(message.buffer.byteLength < 256 * 1024);
  assert.deepEqual([...message.subarray(0, 4)], [0, 0, 0, 1]);
  // ...and runs of 64 small pieces are joined: 10,000 one-byte pieces are
  // 156 runs and 16 pieces, not 10,000 arrays (nor 10,000 strings for text).
  for (const piece of ["bytes", "text"] as const) {
    const many = new MessageParts();
    for (let i = 0; i < 10_000; i++) many.push(piece === "text" ? "x" : new Uint8Array([i & 0xff]));
    assert.equal(many.length, 156 + 16, piece);
    const whole = many.end(piece === "text" ? "!" : new Uint8Array([33]));
    assert.equal(whole.length, 10_001);
    if (typeof whole === "string") assert.equal(whole, "x".repeat(10_000) + "!");
    else assert.ok(whole.every((byte, i) => byte === (i === 10_000 ? 33 : i & 0xff)));
  }
  // A large piece that fills its buffer is kept as it is, not copied.
  const large = new MessageParts();
  const frame = new Uint8Array(64 * 1024);
  large.push(frame);
  assert.equal((large.end(new Uint8Array(0)) as Uint8Array).buffer, frame.buffer);
});

Deno.test("iterateInbox empties the result it handed out when asked for the next", async () => {
  const inbox = new Inbox();
  let before = 0;
  const messages = iterateInbox(inbox, () => before++);
  inbox.push("one");
  inbox.push("two");
  const first = await messages.next();
  assert.deepEqual(first, { done: false, value: "one" });
  const second = await messages.next();
  assert.deepEqual(first, { done: false, value: undefined });
  assert.deepEqual(second, { done: false, value: "two" });
  // A call that waits gets its message from push(), and is emptied alike.
  const waiting = messages.next();
  inbox.push(new Uint8Array([3]));
  const third = await waiting;
  assert.deepEqual(third, { done: false, value: new Uint8Array([3]) });
  assert.deepEqual(second, { done: false, value: undefined });
  inbox.end({ code: 1000, reason: "" });
  assert.deepEqual(await messages.next(), { done: true, value: undefined });
  assert.deepEqual(third, { done: false, value: undefined });
  assert.equal(before, 4, "before() runs once per call");
});

Deno.test("Inbox.receive times out at once for a timeout of 0 or less, with no negative timer", async () => {
  // Deno's timers warn of a negative delay on stderr.
  const delays: (number | undefined)[] = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = ((handler: () => void, delay?: number) => {
    delays.push(delay);
    return realSetTimeout(handler, delay);
  }) as typeof setTimeout;
  try {
    const inbox = new Inbox();
    for (const timeout of [0, -1, -Infinity]) {
      await assert.rejects(
        inbox.receive({ timeout }),
        (error: Error) => error.name === "TimeoutError",
      );
    }
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  assert.deepEqual(delays, [0, 0, 0]);
});
