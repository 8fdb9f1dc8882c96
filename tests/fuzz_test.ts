// Seeded, reproducible fuzzing with a short budget (the long runs are
// `deno task fuzz`, tools/fuzz.ts). Each target runs a fixed range of seeds
// in a child process that a hang cannot take down with it; every case
// checks the invariants listed in tests/_fuzz.ts. A failure names its
// target and seed: reproduce it with
//   deno run -A tools/fuzz.ts --target T --seed S --count 1 --verbose
// and turn it into a named test in tests/regressions_test.ts.
import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import { PerMessageDeflate } from "../permessage_deflate.ts";
import {
  canon,
  DECODER_SLACK,
  encodeFrame,
  type Failure,
  referenceDecode,
  runFuzz,
  validStream,
} from "./_fuzz.ts";
import { concat, prng, utf8 } from "./_util.ts";

/** Cases per target: about a second each on a shared core. */
const BUDGET: Record<string, number> = {
  "frames-server": 120,
  "frames-client": 120,
  "deflate-server": 80,
  "deflate-client": 80,
  "handshake-server": 200,
  "handshake-client": 200,
};
const FIRST_SEED = 1;

function report(failures: Failure[]): string {
  return failures.slice(0, 5).map((failure) =>
    `${failure.target} seed ${failure.seed}: ${
      failure.message.split("\n").slice(0, 4).join("\n    ")
    }\n` +
    `  reproduce: deno run -A tools/fuzz.ts --target ${failure.target} --seed ${failure.seed} --count 1 --verbose`
  ).join("\n") + (failures.length > 5 ? `\n(and ${failures.length - 5} more)` : "");
}

for (const [target, count] of Object.entries(BUDGET)) {
  Deno.test(`fuzz: ${target} keeps every invariant over ${count} seeded cases`, async () => {
    const result = await runFuzz({ targets: [target], firstSeed: FIRST_SEED, count, hangMs: 5000 });
    assert.equal(result.iterations[target], count);
    assert.equal(result.failures.length, 0, `\n${report(result.failures)}`);
  });
}

Deno.test("fuzz: the reference decoder agrees with the generator on valid streams", () => {
  for (let seed = 1; seed <= 300; seed++) {
    for (const role of ["server", "client"] as const) {
      const valid = validStream(prng(seed), role);
      const stream = concat(...valid.frames.map(encodeFrame));
      const oracle = referenceDecode(stream, role, {
        maxFrameSize: ws.DEFAULT_LIMITS.maxFrameSize,
        maxMessageSize: ws.DEFAULT_LIMITS.maxMessageSize,
        maxFragments: ws.DEFAULT_LIMITS.maxFragments,
      });
      assert.equal(oracle.errorCodes, null, `seed ${seed} ${role}`);
      assert.deepEqual(oracle.events, valid.expected, `seed ${seed} ${role}`);
    }
  }
});

const KEY = new Uint8Array(4);

Deno.test("memory: a frame declaring 1 GiB fails at its header, before any payload is buffered", () => {
  const conn = new ws.Connection(ws.ConnectionType.SERVER);
  // 64-bit length 2^30, masked; the error comes before the mask key.
  const header = new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0]);
  const events: ws.Event[] = [];
  for (const byte of header) {
    conn.receiveData(new Uint8Array([byte]));
    events.push(...conn.events());
  }
  assert.deepEqual(canon(events).map((e) => [e.type, e["code"]]), [["Close", 1009]]);
  // Whatever follows is dropped, not kept: no events, no error.
  for (let i = 0; i < 64; i++) {
    conn.receiveData(new Uint8Array(1 << 20));
    assert.deepEqual([...conn.events()], []);
  }
});

Deno.test("memory: a large frame within the limit streams through without being buffered", () => {
  const limits = { maxFrameSize: 2 ** 30, maxMessageSize: 2 ** 30 };
  const conn = new ws.Connection(ws.ConnectionType.SERVER, { limits });
  const decoder = new ws.FrameDecoder(ws.ConnectionType.SERVER, { maxFrameSize: 2 ** 30 });
  const header = new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]);
  conn.receiveData(header.slice());
  assert.deepEqual([...conn.events()], []);
  decoder.receiveBytes(header.slice());
  assert.equal(decoder.processBuffer(), null);
  // 32 MiB of the 1 GiB payload: every byte fed comes straight back out.
  for (let i = 0; i < 128; i++) {
    const chunk = new Uint8Array(256 * 1024);
    conn.receiveData(chunk);
    let out = 0;
    for (const event of conn.events()) {
      assert.ok(event instanceof ws.BytesMessage && !event.messageFinished);
      out += event.data.length;
    }
    assert.equal(out, chunk.length);
    decoder.receiveBytes(new Uint8Array(256 * 1024));
    while (decoder.processBuffer() !== null) { /* drain */ }
    assert.equal(decoder.bufferedAmount, 0);
  }
});

Deno.test("memory: a frame decoder holds at most a header and a control payload", () => {
  // A ping of 125 bytes fed one byte at a time, then a header cut short.
  const decoder = new ws.FrameDecoder(ws.ConnectionType.SERVER);
  const ping = encodeFrame({
    fin: true,
    rsv: 0,
    opcode: 9,
    masked: true,
    maskKey: KEY,
    payload: new Uint8Array(125),
  });
  const stream = concat(ping, new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0, 1, 0]));
  let most = 0;
  for (const byte of stream) {
    decoder.receiveBytes(new Uint8Array([byte]));
    while (decoder.processBuffer() !== null) { /* drain */ }
    most = Math.max(most, decoder.bufferedAmount);
  }
  assert.ok(most <= DECODER_SLACK, `held ${most} bytes`);
});

Deno.test("memory: a header block without its blank line fails with 431 at maxHeaderBytes and keeps nothing more", () => {
  const limit = ws.DEFAULT_LIMITS.maxHeaderBytes;
  const server = new ws.WSConnection(ws.ConnectionType.SERVER);
  server.receiveData(utf8("GET /"));
  let fed = 5;
  let error: unknown = null;
  while (error === null) {
    try {
      server.receiveData(new Uint8Array(1024).fill(0x61));
      fed += 1024;
    } catch (thrown) {
      error = thrown;
      fed += 1024;
    }
  }
  assert.ok(error instanceof ws.RemoteProtocolError);
  assert.ok(error.eventHint instanceof ws.RejectConnection);
  assert.equal(error.eventHint.statusCode, 431);
  assert.ok(fed >= limit && fed < limit + 1024, `failed after ${fed} bytes`);
  // Later bytes are refused with the same error, not buffered.
  for (let i = 0; i < 16; i++) {
    assert.throws(() => server.receiveData(new Uint8Array(1 << 20)), (e) => e === error);
  }
  // One huge chunk fails at once too.
  const big = new ws.WSConnection(ws.ConnectionType.SERVER);
  assert.throws(
    () => big.receiveData(new Uint8Array(8 << 20).fill(0x61)),
    (e) =>
      e instanceof ws.RemoteProtocolError && e.eventHint instanceof ws.RejectConnection &&
      e.eventHint.statusCode === 431,
  );
});

Deno.test("memory: a response head without its blank line fails the client at maxHeaderBytes", () => {
  const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
  client.send(new ws.Request({ host: "example.com", target: "/" }));
  client.receiveData(utf8("HTTP/1.1 101 Switching Protocols\r\nX: "));
  let fed = 37;
  let error: unknown = null;
  while (error === null && fed < 1 << 20) {
    try {
      client.receiveData(new Uint8Array(1024).fill(0x61));
    } catch (thrown) {
      error = thrown;
    }
    fed += 1024;
  }
  assert.ok(error instanceof ws.RemoteProtocolError && error.eventHint === null, String(error));
  assert.ok(fed <= ws.DEFAULT_LIMITS.maxHeaderBytes + 1024, `failed after ${fed} bytes`);
  assert.equal(client.state, ws.ConnectionState.CLOSED);
  client.receiveData(new Uint8Array(1 << 20));
  assert.deepEqual([...client.events()], []);
});

Deno.test("memory: a deflate bomb stops at the decompressed limit", () => {
  // 4 MiB of zeros compresses to a few KiB; 256 frames of it claim 1 GiB
  // (the same continuation frame repeated: more zeros over the same window).
  const peer = new PerMessageDeflate({ threshold: 0 });
  const local = new PerMessageDeflate({ maxMessageSize: 1 << 20 });
  peer.finalize(local.accept(peer.offer())!);
  const encoder = new ws.FrameEncoder(ws.ConnectionType.CLIENT, { extensions: [peer] });
  const first = encoder.encodeData(new Uint8Array(4 << 20), false);
  assert.ok(first.length < 16 * 1024, `compressed to ${first.length} bytes`);
  const conn = new ws.Connection(ws.ConnectionType.SERVER, { extensions: [local] });
  let out = 0;
  let close: ws.CloseConnection | null = null;
  const next = encoder.encodeData(new Uint8Array(4 << 20), false);
  for (let i = 0; i < 256 && close === null; i++) {
    conn.receiveData(i === 0 ? first.slice() : next.slice());
    for (const event of conn.events()) {
      if (event instanceof ws.BytesMessage) out += event.data.length;
      if (event instanceof ws.CloseConnection) close = event;
    }
  }
  assert.equal(close?.code, 1009);
  assert.ok(out <= 1 << 20, `${out} bytes came out`);
});

Deno.test("after a protocol error the connection yields no further events", () => {
  const frame = (opcode: number, payload: Uint8Array) =>
    encodeFrame({ fin: true, rsv: 0, opcode, masked: true, maskKey: KEY, payload });
  for (
    const bad of [
      frame(3, new Uint8Array(0)),
      frame(8, new Uint8Array([0x03])),
      frame(0, utf8("x")),
    ]
  ) {
    const conn = new ws.Connection(ws.ConnectionType.SERVER);
    conn.receiveData(concat(bad, frame(1, utf8("after"))));
    const events = [...conn.events()];
    assert.equal(events.length, 1);
    assert.ok(events[0] instanceof ws.CloseConnection && events[0].code === 1002);
    for (let i = 0; i < 10; i++) {
      conn.receiveData(frame(9, utf8("ping")));
      assert.deepEqual([...conn.events()], []);
    }
    conn.send(events[0].response());
    assert.equal(conn.state, ws.ConnectionState.CLOSED);
    assert.throws(() => conn.receiveData(frame(1, utf8("x"))), ws.LocalProtocolError);
  }
});
