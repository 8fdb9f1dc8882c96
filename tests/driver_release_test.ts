// Socket.release(): a received message's buffer given back for a later
// read. What must hold: the memory is reused (else the option is dead
// weight), what was sent before the release goes out intact, a message not
// released is never written over, and a second release, a string or a
// foreign array change nothing. And the read sized for a message like the
// last (one read per large message) gets whatever comes instead intact.
// tests/_drivers.ts fills every buffer given back with 0xEE, so a buffer
// still in use when it went back fails at once.
import assert from "node:assert/strict";
import { serve } from "../server.ts";
import { RawSocket } from "../raw_socket.ts";
import type { MessageData, ServerSocket } from "../socket.ts";
import { ConnectionType } from "../state.ts";
import { assertSameBytes, concat, prng, randomBytes, rawFrame } from "./_util.ts";
import { interpose, rawOpen, readUntil, writeAll } from "./_drivers.ts";

// Large enough for the read of a frame's rest to get a buffer of its own.
const SIZE = 60_000;

// The peer is a raw TCP client whose frames are made here: this module's
// own client, in the same process, would take given-back buffers for its
// frames before the server's next read could.
function maskedFrame(payload: Uint8Array, opcode = 2): Uint8Array {
  assert.ok(payload.length > 125 && payload.length < 65536);
  // FIN + the opcode, a 16-bit length, a key of zeros (the payload as is).
  const frame = new Uint8Array(8 + payload.length);
  frame.set([0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 0xff, 0, 0, 0, 0]);
  frame.set(payload, 8);
  return frame;
}

/** A frame's type and payload. */
type Answer = { opcode: number; payload: Uint8Array };

/** The whole frames a server sent at the start of `bytes` (unmasked, lengths under 2^32). */
function serverFrames(bytes: Uint8Array): Answer[] {
  const frames = [];
  for (let at = 0; bytes.length - at >= 2;) {
    const code = bytes[at + 1]! & 0x7f;
    const header = code === 126 ? 4 : code === 127 ? 10 : 2;
    if (bytes.length - at < header) break;
    const view = new DataView(bytes.buffer, bytes.byteOffset + at);
    const length = code === 126 ? view.getUint16(2) : code === 127 ? view.getUint32(6) : code;
    if (bytes.length - at < header + length) break;
    frames.push({
      opcode: bytes[at]! & 0x0f,
      payload: bytes.subarray(at + header, at + header + length),
    });
    at += header + length;
  }
  return frames;
}

/** Read until the server's frames number `answers`, and check each against its answer. */
async function expectAnswers(
  conn: Deno.Conn,
  answers: readonly Answer[],
  what: string,
  ms = 2000,
): Promise<void> {
  const { bytes } = await readUntil(conn, (got) => serverFrames(got).length >= answers.length, ms);
  const got = serverFrames(bytes);
  assert.equal(got.length, answers.length, `${what}: no more than the answers`);
  for (const [i, answer] of answers.entries()) {
    assert.equal(got[i]!.opcode, answer.opcode, `${what}, answer ${i}: the type`);
    assertSameBytes(got[i]!.payload, answer.payload, `${what}, answer ${i}`);
  }
}

/** Send one message on `conn` (binary, or text for opcode 1); resolves with the server's answer (its frame's payload). */
async function exchange(conn: Deno.Conn, payload: Uint8Array, opcode = 2): Promise<Uint8Array> {
  await writeAll(conn, maskedFrame(payload, opcode));
  const { bytes } = await readUntil(conn, (got) => serverFrames(got).length > 0, 2000);
  return serverFrames(bytes)[0]!.payload;
}

/**
 * A handler that echoes each message, gives it back, and at once sends
 * `fillerOf(message)`: made in the buffer just given back, a filler a
 * little longer than the message writes over all of it, so that a buffer
 * still in use when given back shows in what comes after.
 */
const echoWithFiller =
  (fillerOf: (message: MessageData) => Uint8Array) => async (socket: ServerSocket) => {
    for await (const message of socket) {
      const sent = socket.send(message);
      socket.release(message);
      await socket.send(fillerOf(message));
      await sent;
    }
  };

/** A server whose handler is `run`, and a raw client that sends `payload` and reads the answer. */
async function pair(run: (socket: ServerSocket) => Promise<void>) {
  const server = serve({ hostname: "127.0.0.1", port: 0 }, run);
  const conn = await rawOpen(server.addr.port, "/");
  return {
    /** Send one message; resolves with the server's answer (its frame's payload). */
    exchange: (payload: Uint8Array): Promise<Uint8Array> => exchange(conn, payload),
    async [Symbol.asyncDispose]() {
      conn.close();
      await server.shutdown();
    },
  };
}

/**
 * The UTF-8 of random text of about `size` bytes: ASCII with two-, three-
 * and four-byte characters among it, so that reads and frames end inside
 * characters and a wrong byte shows.
 */
function textBytes(random: () => number, size: number): Uint8Array {
  const pieces = ["a", "b", "c", "d", " ", "é", "ж", "€", "水", "\u{1F600}"];
  const lengths = [1, 1, 1, 1, 1, 2, 2, 3, 3, 4];
  let text = "";
  let length = 0;
  while (length < size - 4) {
    const at = Math.floor(random() * pieces.length);
    text += pieces[at]!;
    length += lengths[at]!;
  }
  return new TextEncoder().encode(text + "x".repeat(size - length));
}

/** `count` random payloads of SIZE bytes. */
const payloadsOf = (seed: number, count: number): Uint8Array[] => {
  const random = prng(seed);
  return Array.from({ length: count }, () => randomBytes(random, SIZE));
};

const asBytes = (message: MessageData): Uint8Array => {
  assert.ok(message instanceof Uint8Array, "a binary message");
  return message;
};

Deno.test("release(): the next message is read into the given-back buffer, and echoes stay intact", async () => {
  const payloads = payloadsOf(41, 8);
  const buffers: ArrayBufferLike[] = [];
  await using peers = await pair(async (socket) => {
    for await (const message of socket) {
      buffers.push(asBytes(message).buffer);
      const sent = socket.send(message);
      socket.release(message);
      await sent;
    }
  });
  // One at a time, so that each message comes alone and large.
  for (const [i, payload] of payloads.entries()) {
    assertSameBytes(await peers.exchange(payload), payload, `echo ${i}`);
  }
  assert.equal(buffers.length, payloads.length);
  const distinct = new Set(buffers).size;
  assert.ok(distinct < payloads.length / 2, `${distinct} buffers for ${payloads.length} messages`);
});

Deno.test("release(): a message past 64 KiB is read into a given-back buffer once the pool has one", async (t) => {
  // The first is read in pieces and joined; the frames and messages given
  // back then serve the next ones, read into a buffer of their own.
  for (const size of [200_000, 1_000_000]) {
    await t.step(`${size} bytes`, async () => {
      const random = prng(size);
      const payloads = Array.from({ length: 6 }, () => randomBytes(random, size));
      const buffers: ArrayBufferLike[] = [];
      await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
        for await (const message of socket) {
          buffers.push(asBytes(message).buffer);
          const sent = socket.send(message);
          socket.release(message);
          await sent;
        }
      });
      const conn = await rawOpen(server.addr.port, "/");
      try {
        for (const [i, payload] of payloads.entries()) {
          await writeAll(conn, rawFrame({ opcode: 2, payload }));
          const { bytes } = await readUntil(conn, (got) => serverFrames(got).length > 0, 5000);
          assertSameBytes(serverFrames(bytes)[0]!.payload, payload, `echo ${i}`);
        }
      } finally {
        conn.close();
      }
      const distinct = new Set(buffers).size;
      assert.ok(distinct <= 4, `${distinct} buffers for ${payloads.length} messages`);
    });
  }
});

Deno.test("release(): a message not released is never written over", async () => {
  const payloads = payloadsOf(42, 10);
  const kept: Uint8Array[] = [];
  await using peers = await pair(async (socket) => {
    let index = 0;
    for await (const message of socket) {
      // Every other message is kept, the rest given back.
      if (index++ % 2 === 0) kept.push(asBytes(message));
      else socket.release(message);
      await socket.send(String(index));
    }
  });
  for (const payload of payloads) await peers.exchange(payload);
  assert.equal(kept.length, payloads.length / 2);
  kept.forEach((bytes, i) => assertSameBytes(bytes, payloads[2 * i]!, `message ${2 * i}`));
});

Deno.test("release(): twice, a string, or someone else's array changes nothing", async () => {
  const payloads = payloadsOf(43, 6);
  const received: Uint8Array[] = [];
  await using peers = await pair(async (socket) => {
    for await (const message of socket) {
      const bytes = asBytes(message);
      received.push(bytes);
      if (received.length === 1) {
        // Given back twice: were it pooled twice, two later messages would
        // be read into one buffer, and the first of them written over.
        socket.release(bytes);
        socket.release(bytes);
        socket.release("text");
        socket.release(new Uint8Array(SIZE));
        socket.release(bytes.subarray(1));
      }
      await socket.send(String(received.length));
    }
  });
  for (const payload of payloads) await peers.exchange(payload);
  assert.equal(received.length, payloads.length);
  // The first was released: its bytes are anyone's now. The rest are whole.
  for (let i = 1; i < payloads.length; i++) {
    assertSameBytes(received[i]!, payloads[i]!, `message ${i}`);
  }
  const later = new Set(received.slice(1).map((bytes) => bytes.buffer));
  assert.equal(later.size, payloads.length - 1, "each kept message has a buffer of its own");
});

Deno.test("release(): the next frame's first bytes, read with a message, never share its buffer", async () => {
  // The rest of the first message and one byte of the next frame come in
  // one read. Given back, the first message's buffer goes to the frame the
  // handler sends next; were that byte still in it, the frame would write
  // over it before the next frame's header is whole.
  const [first, second, filler] = payloadsOf(44, 3) as [Uint8Array, Uint8Array, Uint8Array];
  const received: Uint8Array[] = [];
  const server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) {
      const bytes = asBytes(message);
      received.push(bytes);
      if (received.length === 1) socket.release(bytes);
      await socket.send(received.length === 1 ? filler : "ok");
    }
  });
  const conn = await rawOpen(server.addr.port, "/");
  try {
    const secondFrame = maskedFrame(second);
    await writeAll(conn, concat(maskedFrame(first), secondFrame.subarray(0, 1)));
    const { bytes: answer } = await readUntil(conn, (got) => got.length >= 4 + SIZE, 2000);
    assertSameBytes(answer.subarray(4), filler, "the handler's frame");
    await writeAll(conn, secondFrame.subarray(1));
    await readUntil(conn, (got) => got.length >= 4, 2000);
    assert.equal(received.length, 2);
    assertSameBytes(received[1]!, second, "the second message");
  } finally {
    conn.close();
    await server.shutdown();
  }
});

Deno.test("a large message after one like it takes one read, behind its header in a given-back buffer", async (t) => {
  for (const [kind, opcode] of [["binary", 2], ["text", 1]] as const) {
    await t.step(kind, async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      let reads = 0;
      const server = listener.accept().then((conn) =>
        new RawSocket(
          interpose(conn, {
            read(into) {
              reads++;
              return conn.read(into);
            },
          }),
          { type: ConnectionType.SERVER },
        )
      );
      const conn = await rawOpen(port, "/");
      const socket = await server;
      const buffers = new Set<ArrayBufferLike>();
      const echoing = (async () => {
        for await (const message of socket) {
          if (typeof message !== "string") buffers.add(message.buffer);
          const sent = socket.send(message);
          socket.release(message);
          await sent;
        }
      })();
      try {
        const random = prng(45);
        const payloads = Array.from(
          { length: 10 },
          () => opcode === 1 ? textBytes(random, SIZE) : randomBytes(random, SIZE),
        );
        const echoed = async (payload: Uint8Array) => {
          assertSameBytes(await exchange(conn, payload, opcode), payload, "the echo");
        };
        // The first two arm it (the first message's own buffer is made on
        // the way, and given back).
        await echoed(payloads[0]!);
        await echoed(payloads[1]!);
        const before = reads;
        for (const payload of payloads.slice(2)) await echoed(payload);
        // One read per message, and one the last leaves pending. A frame
        // under loopback's MTU arrives whole; slack for a few reads that
        // still wake early (a busy machine). Read into the small reused
        // buffer first, it was 2 per message: 16.
        const made = reads - before;
        assert.ok(made <= 8 + 1 + 3, `${made} reads for 8 messages`);
        if (opcode === 2) assert.ok(buffers.size <= 4, `${buffers.size} buffers for 10 messages`);
      } finally {
        conn.close();
        await socket.closed;
        await echoing;
        listener.close();
      }
    });
  }
});

Deno.test("large text comes back intact from reads into buffers given back once decoded", async () => {
  // The rest of a large text frame, and a frame read whole where one like
  // the last was expected, are read into pooled buffers that go back to
  // the pool as soon as the text is decoded: the echo and the filler that
  // echoWithFiller sends next are made in them. Each step is written at
  // once, except where noted.
  const random = prng(48);
  const large = (size = SIZE) => textBytes(random, size);
  const filler = randomBytes(random, 4 * SIZE);
  const steps: (Uint8Array | null)[] = []; // null: a pause between writes
  const answers: Answer[] = [];
  const echo = (payload: Uint8Array, frames = rawFrame({ opcode: 1, payload })) => {
    steps.push(frames, null);
    answers.push({ opcode: 1, payload }, { opcode: 2, payload: filler });
  };
  echo(large());
  echo(large()); // one like the last: read whole
  echo(large(20_000)); // a smaller one where one like the last was expected
  echo(large(100_000)); // a larger one
  const [part1, part2] = [large(40_000), large(30_000)];
  echo(
    concat(part1, part2),
    concat(
      rawFrame({ opcode: 1, fin: false, payload: part1 }),
      rawFrame({ opcode: 0, payload: part2 }),
    ),
  );
  // A frame's rest read with the next frame's first byte, behind a pause
  // that ends the first read inside the frame.
  const [whole, next] = [large(), large()];
  const [wholeFrame, nextFrame] = [whole, next].map((payload) => rawFrame({ opcode: 1, payload }));
  steps.push(
    wholeFrame!.subarray(0, 3000),
    null,
    concat(wholeFrame!.subarray(3000), nextFrame!.subarray(0, 1)),
    null,
  );
  answers.push({ opcode: 1, payload: whole }, { opcode: 2, payload: filler });
  echo(next, nextFrame!.subarray(1));
  // The first read ends inside a character: its rest is read alone.
  const split = new TextEncoder().encode("€".repeat(SIZE / 3));
  const splitFrame = rawFrame({ opcode: 1, payload: split });
  steps.push(splitFrame.subarray(0, 3000), null, splitFrame.subarray(3000), null);
  answers.push({ opcode: 1, payload: split }, { opcode: 2, payload: filler });
  echo(large(200_000)); // past 64 KiB: read in pieces
  echo(large(200_000)); // and into a given-back buffer
  echo(large()); // and after all that, one like the first
  await using server = serve(
    { hostname: "127.0.0.1", port: 0 },
    echoWithFiller(() => filler),
  );
  const conn = await rawOpen(server.addr.port, "/");
  try {
    for (const step of steps) {
      if (step === null) await new Promise((resolve) => setTimeout(resolve, 20));
      else await writeAll(conn, step);
    }
    await expectAnswers(conn, answers, "the echoes", 5000);
  } finally {
    conn.close();
  }
});

Deno.test("a read sized for a message like the last gets anything else intact", async () => {
  // Between the large binary messages that make the next read one sized
  // for them: text, a ping, a larger message, a small one (which must not
  // pin the large buffer), a fragmented one, and a message read with the
  // next frame's first byte, each answered by echoWithFiller.
  const random = prng(46);
  const large = (size = SIZE) => randomBytes(random, size);
  const text = new TextEncoder().encode("short text");
  // Longer than the messages, so that its frame covers all of their buffer.
  const filler = large(SIZE + 100);
  // What is written at once, and the frames the server answers it with.
  const steps: [Uint8Array, Answer[]][] = [];
  const answer = (payload: Uint8Array, opcode = 2): Answer[] => [
    { opcode, payload },
    { opcode: 2, payload: filler },
  ];
  const echo = (payload: Uint8Array, opcode = 2) => {
    steps.push([rawFrame({ opcode, payload }), answer(payload, opcode)]);
  };
  const others = [
    () => echo(text, 1),
    () => steps.push([rawFrame({ opcode: 9, payload: text }), [{ opcode: 10, payload: text }]]),
    () => echo(large(100_000)),
    () => echo(large(100)),
    () => {
      const [part1, part2] = [large(40_000), large(30_000)];
      const frames = concat(
        rawFrame({ opcode: 2, fin: false, payload: part1 }),
        rawFrame({ opcode: 0, payload: part2 }),
      );
      steps.push([frames, answer(concat(part1, part2))]);
    },
    () => {
      const [whole, split] = [large(), large()];
      const splitFrame = maskedFrame(split);
      steps.push([concat(maskedFrame(whole), splitFrame.subarray(0, 1)), answer(whole)]);
      steps.push([splitFrame.subarray(1), answer(split)]);
    },
  ];
  for (const other of others) {
    echo(large());
    echo(large());
    other();
  }

  const smallBuffers: number[] = [];
  const handler = echoWithFiller((message) => {
    if (typeof message !== "string" && message.length < 1000) {
      smallBuffers.push(message.buffer.byteLength);
    }
    return filler;
  });
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, handler);
  const conn = await rawOpen(server.addr.port, "/");
  try {
    for (const [i, [written, answers]] of steps.entries()) {
      await writeAll(conn, written);
      await expectAnswers(conn, answers, `step ${i}`);
    }
    assert.deepEqual(smallBuffers, [16 * 1024], "the small message in a slab, not a read buffer");
  } finally {
    conn.close();
  }
});

Deno.test("a seeded mix of messages, written in random pieces, comes back intact through release()", async (t) => {
  // Every path of the read loop at once: reads sized for a message like
  // the last, frames split across reads, the next frame's start in a
  // message's buffer, pipelined bursts, and buffers given back and reused
  // (echoWithFiller).
  const random = prng(47);
  const sizes = [0, 1, 125, 126, 2047, 2048, 4096, 65_535, 65_536, 65_537, 150_000, 300_000];
  let lastSize = 60_000;
  type Message = { opcode: number; frames: Uint8Array[]; payload: Uint8Array };
  const messageOf = (): Message => {
    const roll = random();
    // Often the size of the last, as real traffic repeats itself.
    const size = roll < 0.4
      ? lastSize
      : roll < 0.6
      ? sizes[Math.floor(random() * sizes.length)]!
      : roll < 0.85
      ? 40_000 + Math.floor(random() * 30_000)
      : Math.floor(random() * 3000);
    lastSize = size;
    const opcode = random() < 0.3 ? 1 : 2;
    const payload = opcode === 1 ? textBytes(random, size) : randomBytes(random, size);
    if (random() < 0.85 || size < 2) {
      return { opcode, frames: [rawFrame({ opcode, payload })], payload };
    }
    const cut = 1 + Math.floor(random() * (size - 1));
    const frames = [
      rawFrame({ opcode, fin: false, payload: payload.subarray(0, cut) }),
      rawFrame({ opcode: 0, payload: payload.subarray(cut) }),
    ];
    return { opcode, frames, payload };
  };
  // Frame by frame or in pieces of 1 byte to 100 KB, sometimes with a
  // pause, so that reads end on frame boundaries and anywhere else.
  const writeInPieces = async (conn: Deno.Conn, messages: Message[]) => {
    const frames = messages.flatMap((message) => message.frames);
    const pieces = random() < 0.5 ? frames : [concat(...frames)];
    for (const stream of pieces) {
      for (let at = 0; at < stream.length;) {
        const piece = pieces.length > 1
          ? stream.length
          : Math.min(stream.length - at, 1 + Math.floor(random() ** 3 * 100_000));
        await writeAll(conn, stream.subarray(at, at + piece));
        at += piece;
        if (random() < (pieces.length > 1 ? 0.5 : 0.2)) {
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      }
    }
  };
  // A little longer than the message.
  const fillers = randomBytes(random, 310_000);
  const fillerOf = (length: number) => fillers.subarray(0, length + 100);
  await using server = serve(
    { hostname: "127.0.0.1", port: 0 },
    echoWithFiller((message) =>
      fillerOf(
        typeof message === "string" ? new TextEncoder().encode(message).length : message.length,
      )
    ),
  );
  // An echo and a filler for each message.
  const expectEchoes = (conn: Deno.Conn, messages: Message[], what: string) =>
    expectAnswers(
      conn,
      messages.flatMap(({ opcode, payload }) => [
        { opcode, payload },
        { opcode: 2, payload: fillerOf(payload.length) },
      ]),
      what,
      5000,
    );
  const conn = await rawOpen(server.addr.port, "/");
  try {
    await t.step("one at a time", async () => {
      for (let i = 0; i < 60; i++) {
        const message = messageOf();
        await writeInPieces(conn, [message]);
        await expectEchoes(conn, [message], `message ${i}`);
      }
    });
    await t.step("pipelined in bursts", async () => {
      for (let burst = 0; burst < 8; burst++) {
        const messages = Array.from({ length: 10 }, messageOf);
        await Promise.all([
          writeInPieces(conn, messages),
          expectEchoes(conn, messages, `burst ${burst}`),
        ]);
      }
    });
  } finally {
    conn.close();
  }
});
