// How the drivers behave at the edges: abrupt ends, slow and bad handshakes,
// protocol errors, limits, backpressure, heartbeats, write coalescing and
// shutdown.
import assert from "node:assert/strict";
import * as pako from "pako";
import * as ws from "../mod.ts";
import { connect, HandshakeError } from "../client.ts";
import { serve } from "../server.ts";
import { allocate } from "../_bytes.ts";
import {
  type CloseInfo,
  ConnectionClosedError,
  type Handler,
  type ServerSocket,
  type Socket,
} from "../socket.ts";
import { Inbox } from "../inbox.ts";
import { RawSocket, readsThatWaitedForText, socketsWithOutput } from "../raw_socket.ts";
import { upgrade } from "../deno_serve.ts";
import {
  clientFrame,
  delay,
  handshakeRequest,
  hasHead,
  interpose,
  rawOpen,
  readUntil,
  withTimeout,
  writeAll,
} from "./_drivers.ts";
import { assertSameBytes, concatAll, prng, randomBytes } from "./_util.ts";
import { testCertificate } from "./_tls.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Answer the opening handshake on a raw server-side `conn`; `false` if it ended first. */
async function acceptHandshake(conn: Deno.Conn): Promise<boolean> {
  const engine = new ws.WSConnection(ws.ConnectionType.SERVER);
  const buffer = new Uint8Array(4096);
  for (let i = 0; i < 20 && engine.state === ws.ConnectionState.CONNECTING; i++) {
    const n = await conn.read(buffer);
    if (n === null) return false;
    engine.receiveData(buffer.slice(0, n));
    for (const event of engine.events()) {
      if (event instanceof ws.Request) await writeAll(conn, engine.send(new ws.AcceptConnection()));
    }
  }
  return engine.state === ws.ConnectionState.OPEN;
}

/**
 * A raw server that answers the handshake, plays `script` on the
 * connection and closes it, and a client socket to it whose reads go
 * through `read` (which calls `conn.read` itself). `finish()` waits for
 * both ends and closes the listener.
 */
async function scriptedServer(
  script: (conn: Deno.Conn) => Promise<void>,
  read: (conn: Deno.Conn, buffer: Uint8Array) => Promise<number | null>,
): Promise<{ socket: RawSocket; finish: () => Promise<void> }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = (async () => {
    const conn = await listener.accept();
    try {
      if (await acceptHandshake(conn)) await script(conn);
      await delay(100);
    } finally {
      conn.close();
    }
  })();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const socket = clientSocket(interpose(conn, { read: (buffer) => read(conn, buffer) }));
  return {
    socket,
    finish: async () => {
      await socket.closed;
      await peer;
      listener.close();
    },
  };
}

/** A client socket over `conn`, opening with `GET /`. */
function clientSocket(conn: Deno.Conn, noDelay = false): RawSocket {
  const connection = new ws.WSConnection(ws.ConnectionType.CLIENT);
  const request = connection.send(new ws.Request({ host: "127.0.0.1", target: "/" }));
  return new RawSocket(conn, { type: ws.ConnectionType.CLIENT, connection, request, noDelay });
}

// Read until the peer closes (or `limit` bytes), within a time bound.
async function readToEnd(conn: Deno.Conn, limit = 1 << 20, ms = 3000): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const deadline = Date.now() + ms;
  const buffer = new Uint8Array(16384);
  while (size < limit && Date.now() < deadline) {
    const n = await withTimeout(conn.read(buffer), deadline - Date.now(), "read").catch(() => null);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
    size += n;
  }
  return concatAll(chunks);
}

/** The payloads of the pongs that come on `conn`, read until `enough` (or 5 s passed). */
async function readPongs(
  conn: Deno.Conn,
  enough: (payloads: Uint8Array[]) => boolean,
): Promise<Uint8Array[]> {
  const engine = new ws.Connection(ws.ConnectionType.CLIENT);
  const payloads: Uint8Array[] = [];
  const buffer = new Uint8Array(1 << 16);
  const deadline = Date.now() + 5000;
  while (!enough(payloads) && Date.now() < deadline) {
    const n = await withTimeout(conn.read(buffer), 2000, "read").catch(() => null);
    if (n === null) break;
    engine.receiveData(buffer.slice(0, n));
    for (const event of engine.events()) if (event instanceof ws.Pong) payloads.push(event.payload);
  }
  return payloads;
}

// A client on a bare TCP connection driven by the engine, so the test
// controls every byte (and may stop reading, or misbehave).
async function rawClient(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const engine = new ws.WSConnection(ws.ConnectionType.CLIENT);
  await conn.write(engine.send(new ws.Request({ host: "127.0.0.1", target: "/" })));
  const buffer = new Uint8Array(4096);
  const events: ws.Event[] = [];
  for (let i = 0; i < 100 && !events.some((e) => e instanceof ws.AcceptConnection); i++) {
    const n = await withTimeout(conn.read(buffer), 2000, "handshake response");
    if (n === null) throw new Error("closed during the handshake");
    engine.receiveData(buffer.slice(0, n));
    events.push(...engine.events());
  }
  return { conn, engine, events };
}

Deno.test("a peer that drops TCP without a close frame ends the server socket with 1006", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    const messages = [];
    for await (const message of socket) messages.push(message);
    assert.deepEqual(messages, ["before the drop"]);
    closed.resolve(await socket.closed);
  });
  const { conn, engine } = await rawClient(server.addr.port);
  await conn.write(engine.send(new ws.TextMessage({ data: "before the drop" })));
  conn.close();
  assert.equal((await withTimeout(closed.promise, 2000, "closed")).code, 1006);
});

Deno.test("a server that drops TCP ends the client socket with 1006", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    const engine = new ws.WSConnection(ws.ConnectionType.SERVER);
    const buffer = new Uint8Array(4096);
    while (engine.state === ws.ConnectionState.CONNECTING) {
      const n = await conn.read(buffer);
      if (n === null) break;
      engine.receiveData(buffer.slice(0, n));
      for (const event of engine.events()) {
        if (event instanceof ws.Request) await conn.write(engine.send(new ws.AcceptConnection()));
      }
    }
    conn.close();
  })();
  try {
    const socket = await connect(`ws://127.0.0.1:${listener.addr.port}/`);
    assert.deepEqual(await withTimeout(socket.closed, 2000, "closed"), { code: 1006, reason: "" });
    await assert.rejects(socket.receive(), ConnectionClosedError);
    await assert.rejects(socket.send("too late"), ConnectionClosedError);
  } finally {
    await serving;
    listener.close();
  }
});

Deno.test("a client that sends half a request is cut after handshakeTimeout", async () => {
  let called = false;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { handshakeTimeout: 150 } },
    () => void (called = true),
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"));
  const started = Date.now();
  const rest = await readToEnd(conn, 1 << 16, 2000);
  const elapsed = Date.now() - started;
  conn.close();
  assert.equal(rest.length, 0, "dropped without an answer");
  assert.ok(elapsed >= 100 && elapsed < 1500, `cut after ${elapsed} ms`);
  assert.equal(called, false);
});

Deno.test("invalid handshakes are answered with 405, 426 and 431 and closed", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { maxHeaderBytes: 1024 } },
    () => assert.fail("the handler must not run"),
  );
  const cases: [string, number][] = [
    ["POST / HTTP/1.1\r\nHost: x\r\n\r\n", 405],
    ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426],
    [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2000)}\r\n\r\n`, 431],
  ];
  for (const [request, status] of cases) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(encoder.encode(request)).catch(() => 0);
    const response = decoder.decode(await readToEnd(conn));
    conn.close();
    assert.match(response, new RegExp(`^HTTP/1.1 ${status} `), request.slice(0, 20));
  }
});

Deno.test("a handler's reject() reaches connect() as a HandshakeError with status and body", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, (socket) => {
    socket.reject({ status: 403, body: "members only", headers: [["X-Why", "test"]] });
  });
  try {
    await connect(`ws://127.0.0.1:${server.addr.port}/`);
    assert.fail("connect() should fail");
  } catch (error) {
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.status, 403);
    assert.equal(error.text(), "members only");
    assert.ok(
      error.headers.some(([name, value]) => name.toLowerCase() === "x-why" && value === "test"),
    );
  }
});

Deno.test("a handler that throws before deciding answers 500; after accepting, closes with 1011", async (t) => {
  // An error whose name is 240 bytes of UTF-8: the reason is cut to fit a
  // close frame, on a character's edge, and the close still goes out.
  class LongNamedError extends Error {
    override name = "Ошибка".repeat(20);
  }
  const errors: unknown[] = [];
  const handler: Handler = async (socket, request) => {
    if (request.target === "/early") throw new Error("boom");
    await socket.receive();
    if (request.target === "/long") throw new LongNamedError("late");
    if (request.target === "/unnamed") {
      // A name that is no string could not be sent: the socket stayed open.
      const error = new Error("late");
      Object.defineProperty(error, "name", { value: 42 });
      throw error;
    }
    throw new TypeError("late boom");
  };
  const onError = (error: unknown) => errors.push(error);
  await using raw = serve({ hostname: "127.0.0.1", port: 0, onError }, handler);
  const native = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => upgrade(request, handler, { onError }),
  );
  try {
    for (
      const [transport, port] of [["serve()", raw.addr.port], [
        "Deno.serve",
        native.addr.port,
      ]] as const
    ) {
      await t.step(transport, async () => {
        errors.length = 0;
        try {
          await connect(`ws://127.0.0.1:${port}/early`);
          assert.fail("connect() should fail");
        } catch (error) {
          assert.ok(error instanceof HandshakeError && error.status === 500);
        }
        for (
          const [target, reason] of [
            ["/late", "TypeError"],
            ["/long", "Ошибка".repeat(10) + "О"], // 122 bytes: the 123rd would split "ш"
            ["/unnamed", "Internal error"],
          ]
        ) {
          const socket = await connect(`ws://127.0.0.1:${port}${target}`);
          await socket.send("go");
          assert.deepEqual(await withTimeout(socket.closed, 2000, `closed (${target})`), {
            code: 1011,
            reason,
          });
        }
        assert.equal(errors.length, 4);
      });
    }
  } finally {
    await native.shutdown();
  }
});

Deno.test("a server socket asked for a message before the request arrived waits for it", async () => {
  // Without an onRequest callback the socket accepts the request itself;
  // reading first must not try to accept a request that is not there yet.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const socket = new RawSocket(await listener.accept(), { type: ws.ConnectionType.SERVER });
  try {
    const message = socket.receive({ timeout: 5000 });
    await delay(10);
    await writeAll(
      client,
      concatAll([handshakeRequest(port), clientFrame(1, encoder.encode("hi"))]),
    );
    assert.equal(await message, "hi");
  } finally {
    client.close();
    await socket.closed;
    listener.close();
  }
});

Deno.test("receive() with a NaN timeout is refused before it would accept the handshake", async (t) => {
  // receive() accepts a pending handshake; options it cannot honour must
  // leave the handler free to refuse instead.
  const handler: Handler = async (socket) => {
    await assert.rejects(socket.receive({ timeout: NaN }), RangeError);
    assert.equal(socket.state, "connecting");
    socket.reject({ status: 403, body: "not yet" });
  };
  const refused = async (port: number) => {
    const error = await connect(`ws://127.0.0.1:${port}/`).catch((error) => error);
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.status, 403);
  };
  await t.step("serve()", async () => {
    await using server = serve({ hostname: "127.0.0.1", port: 0 }, handler);
    await refused(server.addr.port);
  });
  await t.step("Deno.serve", async () => {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => upgrade(request, handler),
    );
    try {
      await refused(server.addr.port);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("a handler that is not async and throws answers 500 too", async () => {
  const errors: unknown[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, onError: (e) => errors.push(e) },
    (_socket, request) => {
      throw new RangeError(`no ${request.target}`);
    },
  );
  await assert.rejects(
    connect(`ws://127.0.0.1:${server.addr.port}/sync`),
    (error) => error instanceof HandshakeError && error.status === 500,
  );
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof RangeError && errors[0].message === "no /sync");
});

Deno.test("an unmasked frame from a client is a protocol error: close 1002 on both ends", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept();
    closed.resolve(await socket.closed);
  });
  const { conn } = await rawClient(server.addr.port);
  await conn.write(new Uint8Array([0x81, 0x02, 0x68, 0x69])); // "hi", no mask
  const answer = await readToEnd(conn);
  conn.close();
  assert.equal(answer[0], 0x88, "a close frame");
  assert.equal((answer[2]! << 8) | answer[3]!, 1002);
  assert.equal((await closed.promise).code, 1002);
});

Deno.test("a message over maxMessageSize closes with 1009", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { maxMessageSize: 1000 } },
    async (socket) => {
      for await (const message of socket) await socket.send(message);
      closed.resolve(await socket.closed);
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  await socket.send("x".repeat(1000));
  assert.equal(await socket.receive({ timeout: 2000 }), "x".repeat(1000));
  await socket.send("x".repeat(1001));
  assert.equal((await withTimeout(socket.closed, 2000, "closed")).code, 1009);
  assert.equal((await closed.promise).code, 1009);
});

Deno.test("with deflate, a reader that stops taking messages holds about 1 MiB, not a read's inflation", async () => {
  // One 256 KiB read of 1 KiB frames that each inflate to 1 MiB queued a
  // quarter of a GiB for a handler that had stopped taking messages.
  const MESSAGE = 1 << 20;
  const stalled = Promise.withResolvers<void>();
  const resume = Promise.withResolvers<void>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, deflate: true },
    async (socket) => {
      for await (const message of socket) {
        if (typeof message !== "string" && message.length === MESSAGE) {
          stalled.resolve();
          await resume.promise; // busy: it takes nothing for a while
          break;
        }
      }
    },
  );
  const port = server.addr.port;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = new TextDecoder().decode(handshakeRequest(port))
      .replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    await writeAll(conn, new TextEncoder().encode(request));
    const { bytes } = await readUntil(conn, hasHead);
    assert.match(new TextDecoder().decode(bytes), /permessage-deflate/);
    // Plain frames first, whose full reads grow the read buffer to 256 KiB;
    // the last is large, read into a buffer of its own.
    const large = new Uint8Array(14 + 200_000);
    large.set([0x82, 0xff, 0, 0, 0, 0, 0, 0x03, 0x0d, 0x40]); // 200,000 bytes, zero key
    const warmUp = concatAll([...Array(3000).fill(clientFrame(0x2, new Uint8Array(100))), large]);
    await writeAll(conn, warmUp);
    await delay(300);
    // Then 1 MiB of zeros each, about 1 KiB on the wire (RSV1: compressed).
    const deflated = pako.deflateRaw(new Uint8Array(MESSAGE), { level: 9 });
    const bomb = concatAll([
      new Uint8Array([0xc2, 0xfe, deflated.length >> 8, deflated.length & 0xff, 0, 0, 0, 0]),
      deflated,
    ]);
    const before = Deno.memoryUsage().external;
    const writing = writeAll(conn, concatAll(Array(300).fill(bomb))).catch(() => {});
    await withTimeout(stalled.promise, 5000, "the handler's stall");
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      await delay(50);
      peak = Math.max(peak, Deno.memoryUsage().external - before);
    }
    resume.resolve();
    conn.close();
    await writing;
    assert.ok(peak < 48 * MESSAGE, `${(peak / MESSAGE).toFixed(0)} MiB held for one connection`);
  } finally {
    resume.resolve();
    try {
      conn.close();
    } catch {
      // closed above
    }
  }
});

Deno.test("with deflate, a maxMessageSize above 64 MiB holds for inflated messages too", async () => {
  // The extension's own default (64 MiB) capped it when the drivers did not
  // pass the connection's limit on.
  const limits = { maxMessageSize: 80 << 20, maxFrameSize: 80 << 20 };
  const received = Promise.withResolvers<number>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, deflate: true, limits },
    async (socket) => received.resolve((await socket.receive()).length),
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, { deflate: true, limits });
  await socket.send(new Uint8Array(65 << 20)); // zeros: 64 KiB on the wire
  assert.equal(await withTimeout(received.promise, 10_000, "the message"), 65 << 20);
  await socket.close();
});

Deno.test("frames pipelined behind the handshake request are not lost", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const engine = new ws.WSConnection(ws.ConnectionType.CLIENT);
  const request = engine.send(new ws.Request({ host: "127.0.0.1", target: "/" }));
  // The client cannot frame before the 101, so encode the frame by hand.
  const frame = new ws.FrameEncoder(ws.ConnectionType.CLIENT).encodeData("early", true);
  const both = new Uint8Array(request.length + frame.length);
  both.set(request);
  both.set(frame, request.length);
  await conn.write(both);
  const events: ws.Event[] = [];
  const buffer = new Uint8Array(4096);
  for (let i = 0; i < 20 && !events.some((e) => e instanceof ws.TextMessage); i++) {
    const n = await withTimeout(conn.read(buffer), 2000, "echo");
    if (n === null) break;
    engine.receiveData(buffer.slice(0, n));
    events.push(...engine.events());
  }
  conn.close();
  const text = events.find((e) => e instanceof ws.TextMessage);
  assert.equal(text?.data, "early");
});

Deno.test("messages whose frames arrive over many reads come out whole", async () => {
  // Large frames are read into buffers sized by what the frame still lacks,
  // and a binary message's earlier bytes move into that buffer: every path
  // (one frame, fragments, text, larger than one such buffer) must still
  // deliver exactly what was sent.
  const random = prng(7);
  const sent: (string | Uint8Array)[] = [
    randomBytes(random, 50_000),
    randomBytes(random, 43_000),
    "ж€😀".repeat(3_000),
    randomBytes(random, 200_000),
  ];
  const received = Promise.withResolvers<(string | Uint8Array)[]>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    const messages: (string | Uint8Array)[] = [];
    for await (const message of socket) {
      messages.push(message);
      if (messages.length === sent.length) break;
    }
    received.resolve(messages);
  });
  const conn = await rawOpen(server.addr.port, "/");
  try {
    const encoder = new ws.FrameEncoder(ws.ConnectionType.CLIENT);
    const fragmented = sent[1] as Uint8Array;
    const wire = [
      encoder.encodeData(sent[0]!, true),
      encoder.encodeData(fragmented.subarray(0, 3_000), false),
      encoder.encodeData(fragmented.subarray(3_000), true),
      encoder.encodeData(sent[2]!, true),
      encoder.encodeData(sent[3]!, true),
    ];
    for (const frame of wire) {
      // Pauses between pieces make the server read each one separately.
      const cuts = [0, 1_000, 9_000, 30_000, 120_000].filter((cut) => cut < frame.length);
      for (const [i, cut] of cuts.entries()) {
        await writeAll(conn, frame.subarray(cut, cuts[i + 1] ?? frame.length));
        await delay(5);
      }
    }
    const messages = await withTimeout(received.promise, 5000, "messages");
    assert.equal(messages.length, sent.length);
    for (let i = 0; i < sent.length; i++) assert.deepEqual(messages[i], sent[i], `message ${i}`);
  } finally {
    conn.close();
  }
});

Deno.test("a peer trickling a large frame costs small reads, not a large buffer per read", async () => {
  // Sizing reads to the frame in progress must not let a peer that sends a
  // few bytes at a time make us allocate (and zero) 64 KiB per read.
  const payload = randomBytes(prng(11), 60_000);
  let offered = 0;
  let reads = 0;
  const { socket, finish } = await scriptedServer(async (conn) => {
    const frame = new ws.FrameEncoder(ws.ConnectionType.SERVER).encodeData(payload, true);
    // The header and a bulk first piece, then 100 bytes at a time.
    await writeAll(conn, frame.subarray(0, 3_000));
    await delay(5);
    for (let at = 3_000; at < frame.length; at += 100) {
      await writeAll(conn, frame.subarray(at, at + 100));
      if (at % 2_000 === 1_000) await delay(1);
    }
  }, (conn, buffer) => {
    offered += buffer.length;
    reads++;
    return conn.read(buffer);
  });
  try {
    assert.ok((await socket.opened).ok);
    assert.deepEqual(await socket.receive({ timeout: 5000 }), payload);
    // Small reads get the reused 4 KiB buffer; a 64 KiB one only follows
    // a read that brought more than 2 KiB.
    assert.ok(offered <= reads * 4096 + 4 * 65536, `${offered} bytes offered over ${reads} reads`);
  } finally {
    await finish();
  }
});

Deno.test("a frame sent in pieces of a few KiB fills one buffer after another, not one each", async () => {
  // Each bulk piece used to get a fresh buffer sized for the frame's rest
  // (up to 65 KiB), pinned by the piece's view until the message was
  // whole: 32 times the payload held, and a message re-copied per piece.
  for (const size of [60_000, 512 * 1024]) {
    const payload = randomBytes(prng(size), size);
    const buffers = new Set<ArrayBufferLike>();
    const { socket, finish } = await scriptedServer(async (conn) => {
      const frame = new ws.FrameEncoder(ws.ConnectionType.SERVER).encodeData(payload, true);
      for (let at = 0; at < frame.length; at += 2_100) {
        await writeAll(conn, frame.subarray(at, at + 2_100));
        await delay(1); // a read each, mostly
      }
    }, (conn, buffer) => {
      buffers.add(buffer.buffer);
      return conn.read(buffer);
    });
    try {
      assert.ok((await socket.opened).ok);
      const before = new Set(buffers);
      assert.deepEqual(await socket.receive({ timeout: 10_000 }), payload);
      let bytes = 0;
      for (const buffer of buffers) if (!before.has(buffer)) bytes += buffer.byteLength;
      assert.ok(bytes < 1.5 * size + 70_000, `${bytes} bytes of read buffers for ${size}`);
    } finally {
      await finish();
    }
  }
});

Deno.test("the read for a large frame's rest asks for more than that rest", async () => {
  // A read that fills its buffer leaves the socket marked readable, and the
  // next read is a recv that fails with EAGAIN; a buffer with room to spare
  // saves that syscall, and its spare room takes in the next frame.
  const random = prng(15);
  const large = randomBytes(random, 60_000);
  const small = randomBytes(random, 300);
  const encoder = new ws.FrameEncoder(ws.ConnectionType.SERVER);
  const first = encoder.encodeData(large, true);
  const rest = concatAll([first.subarray(3_000), encoder.encodeData(small, true)]);
  const reads: { offered: number; got: number }[] = [];
  const { socket, finish } = await scriptedServer(async (conn) => {
    await writeAll(conn, first.subarray(0, 3_000));
    await delay(20);
    await writeAll(conn, rest);
  }, async (conn, buffer) => {
    const got = await conn.read(buffer);
    reads.push({ offered: buffer.length, got: got ?? 0 });
    return got;
  });
  try {
    assert.ok((await socket.opened).ok);
    assert.deepEqual(await socket.receive({ timeout: 5000 }), large);
    assert.deepEqual(await socket.receive({ timeout: 5000 }), small);
    // What the frame still lacked before each read: the frame's bytes read
    // so far count from minus the length of the handshake's response,
    // which came first (everything read, less the frames sent).
    const framesSent = 3_000 + rest.length;
    let frameBytesRead = framesSent - reads.reduce((sum, read) => sum + read.got, 0);
    const report = reads.map((read) => `${read.got}/${read.offered}`).join(", ");
    let sized = 0;
    for (const read of reads) {
      const lacking = first.length - Math.max(0, frameBytesRead);
      if (read.offered > 4096 && lacking > 0) {
        assert.ok(read.offered > lacking, `${lacking} lacking; reads ${report}`);
        sized++;
      }
      frameBytesRead += read.got;
    }
    assert.ok(sized > 0, `no read sized to the frame: ${report}`);
  } finally {
    await finish();
  }
});

Deno.test("bulk reads fill the rest of one buffer, and the messages they brought stay intact", async () => {
  // A read that brings more than 2 KiB is handed on as views, not copied;
  // the next read goes into the rest of that buffer, never over those views.
  const random = prng(14);
  const payloads = Array.from({ length: 40 }, () => randomBytes(random, 2_500));
  const encoder = new ws.FrameEncoder(ws.ConnectionType.SERVER);
  const stream = concatAll(payloads.map((payload) => encoder.encodeData(payload, true)));
  const seen = new Set<ArrayBufferLike>();
  let tailReads = 0;
  const { socket, finish } = await scriptedServer(async (conn) => {
    // In pieces a few milliseconds apart, so that reads stop filling
    // their buffer once it has grown past a piece.
    for (let at = 0; at < stream.length; at += 10_000) {
      await writeAll(conn, stream.subarray(at, at + 10_000));
      await delay(3);
    }
  }, (conn, buffer) => {
    if (buffer.byteOffset > 0 && seen.has(buffer.buffer)) tailReads++;
    seen.add(buffer.buffer);
    return conn.read(buffer);
  });
  try {
    assert.ok((await socket.opened).ok);
    const received: Uint8Array[] = [];
    for (let i = 0; i < payloads.length; i++) {
      const message = await socket.receive({ timeout: 5000 });
      assert.ok(message instanceof Uint8Array);
      received.push(message);
    }
    // Compared only now, after every read: a read into bytes a message
    // still shows would have changed an earlier one.
    for (let i = 0; i < payloads.length; i++) {
      assert.deepEqual(received[i], payloads[i], `message ${i}`);
    }
    assert.ok(tailReads > 0, "some read went into the rest of an earlier read's buffer");
  } finally {
    await finish();
  }
});

/** A client socket's reads (bytes got, size of the buffer read into) over bursts of `count` 1 KiB messages. */
async function readBursts(
  count: number,
  bursts: number,
): Promise<{ reads: { got: number; buffer: number }[]; burstLength: number }> {
  const encoder = new ws.FrameEncoder(ws.ConnectionType.SERVER);
  const payload = randomBytes(prng(16), 1024);
  const burst = concatAll(Array.from({ length: count }, () => encoder.encodeData(payload, true)));
  const reads: { got: number; buffer: number }[] = [];
  // The next burst goes out once the last one was taken, so that a slow
  // reader never finds two waiting.
  let taken = Promise.withResolvers<void>();
  const { socket, finish } = await scriptedServer(async (conn) => {
    for (let i = 0; i < bursts; i++) {
      await writeAll(conn, burst);
      await withTimeout(taken.promise, 5000, `burst ${i} taken`);
    }
  }, async (conn, buffer) => {
    const n = await conn.read(buffer);
    if (n !== null) reads.push({ got: n, buffer: buffer.buffer.byteLength });
    return n;
  });
  try {
    assert.ok((await socket.opened).ok);
    for (let i = 0; i < bursts; i++) {
      for (let k = 0; k < count; k++) {
        assert.deepEqual(await socket.receive({ timeout: 5000 }), payload, `burst ${i}, ${k}`);
      }
      const burstTaken = taken;
      taken = Promise.withResolvers<void>();
      burstTaken.resolve();
    }
  } finally {
    await finish();
  }
  return { reads, burstLength: burst.length };
}

Deno.test("bursts of pipelined messages, once the buffer has grown, take one read each", async () => {
  // A burst that lands in the short rest of a buffer takes two reads (the
  // rest, then a fresh buffer): twice the syscalls of a pipelined echo.
  const { reads, burstLength } = await readBursts(16, 24);
  const got = reads.map((read) => read.got);
  const last = got.slice(-8);
  assert.deepEqual(last, last.map(() => burstLength), `reads: ${got.join(", ")}`);
  // What a connection that goes quiet after such bursts holds in its
  // pending read: room for two bursts, not more.
  const largest = Math.max(...reads.map((read) => read.buffer));
  assert.ok(largest <= 2 * burstLength + 1024, `a buffer of ${largest} bytes`);
});

Deno.test("bursts larger than 64 KiB keep the buffer they grew", async () => {
  // Sizing a buffer for two bursts must never shrink one that reads which
  // filled it made larger: it would then grow again, a read at a time. (A
  // write this large may arrive in pieces, so reads are not counted.)
  const { reads } = await readBursts(150, 12);
  const report = reads.map((read) => `${read.got}/${read.buffer}`).join(", ");
  const largest = Math.max(...reads.map((read) => read.buffer));
  assert.ok(largest >= 128 * 1024, `reads: ${report}`);
  for (const read of reads.slice(-6)) assert.equal(read.buffer, largest, `reads: ${report}`);
});

Deno.test("an idle socket's pending read holds a small buffer, and a burst's buffer is given back", async () => {
  const big = randomBytes(prng(12), 100_000);
  const medium = randomBytes(prng(13), 1_500);
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) {
      if (message === "burst") {
        socket.send(big);
        socket.send(medium);
      }
      socket.send(message);
    }
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const offered: number[] = [];
  const socket = clientSocket(interpose(conn, {
    read(buffer) {
      offered.push(buffer.length);
      return conn.read(buffer);
    },
  }));
  try {
    assert.ok((await socket.opened).ok);
    await delay(20);
    // Idle after the handshake: what the pending read holds is all a quiet
    // connection costs in buffers.
    assert.ok(offered.at(-1)! <= 512, `pending read of ${offered.at(-1)} bytes`);
    await socket.send("burst");
    assert.deepEqual(await socket.receive({ timeout: 5000 }), big);
    assert.deepEqual(await socket.receive({ timeout: 5000 }), medium);
    assert.equal(await socket.receive({ timeout: 5000 }), "burst");
    assert.ok(Math.max(...offered) >= 65536, "the burst was read in large pieces");
    await socket.send("quiet");
    assert.equal(await socket.receive({ timeout: 5000 }), "quiet");
    await delay(20);
    assert.ok(offered.at(-1)! <= 4096, `pending read of ${offered.at(-1)} bytes after the burst`);
  } finally {
    await socket.close();
  }
});

Deno.test("large frames whose buffers are recycled after writing arrive intact", async () => {
  // Written frames go back to a pool that later frames are encoded into.
  // A peer that does not read for a while keeps the server's writes
  // pending while it encodes more replies: a buffer reused too early
  // would show here as a corrupt echo.
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) socket.send(message);
  });
  const random = prng(14);
  await Promise.all([0, 1].map(async () => {
    const { conn, engine } = await rawClient(server.addr.port);
    try {
      const messages = Array.from(
        { length: 40 },
        () => randomBytes(random, 3_000 + Math.floor(random() * 250_000)),
      );
      for (const message of messages) {
        await writeAll(conn, engine.send(new ws.BytesMessage({ data: message })));
      }
      await delay(300);
      const received: Uint8Array[] = [];
      let parts: Uint8Array[] = [];
      const buffer = new Uint8Array(1 << 16);
      const deadline = Date.now() + 10_000;
      while (received.length < messages.length && Date.now() < deadline) {
        const n = await withTimeout(conn.read(buffer), deadline - Date.now(), "echo");
        if (n === null) break;
        engine.receiveData(buffer.slice(0, n));
        for (const event of engine.events()) {
          if (!(event instanceof ws.BytesMessage)) continue;
          parts.push(event.data);
          if (event.messageFinished) {
            received.push(concatAll(parts));
            parts = [];
          }
        }
      }
      assert.equal(received.length, messages.length);
      for (const [i, message] of messages.entries()) {
        assert.deepEqual(received[i], message, `echo ${i} differs`);
      }
    } finally {
      conn.close();
    }
  }));
});

Deno.test("receive() times out, and the socket stays usable", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  await assert.rejects(
    socket.receive({ timeout: 30 }),
    (e: unknown) => e instanceof DOMException && e.name === "TimeoutError",
  );
  await socket.send(new Uint8Array([1]));
  assert.deepEqual(await socket.receive({ timeout: 2000 }), new Uint8Array([1]));
  await socket.close();
  await assert.rejects(socket.receive(), ConnectionClosedError);
  await assert.rejects(socket.ping(), ConnectionClosedError);
});

Deno.test("receive() with a signal aborted already rejects with its reason, not a throw", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  const reason = new Error("stop");
  let received: Promise<unknown> | undefined;
  assert.doesNotThrow(() => (received = socket.receive({ signal: AbortSignal.abort(reason) })));
  await assert.rejects(received!, (e: unknown) => e === reason);
  // Aborting while it waits rejects the same way.
  const controller = new AbortController();
  const waiting = socket.receive({ signal: controller.signal });
  controller.abort(reason);
  await assert.rejects(waiting, (e: unknown) => e === reason);
  await socket.close();
});

Deno.test("close() drops TCP after closeTimeout when the peer never answers", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout: 100 } },
    async (socket) => void await socket.close(1000, "bye"),
  );
  const { conn, events } = await rawClient(server.addr.port);
  // Never answer the close: the server gives up after 100 ms.
  const started = Date.now();
  const bytes = await readToEnd(conn);
  conn.close();
  assert.ok(events.some((e) => e instanceof ws.CloseConnection) || bytes[0] === 0x88);
  assert.ok(Date.now() - started < 1500);
});

Deno.test("a sender facing a reader that does not read waits, with bounded memory", async () => {
  const report = Promise.withResolvers<{ pending: boolean; buffered: number; sent: number }>();
  const chunk = new Uint8Array(64 * 1024);
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    let sent = 0;
    const deadline = Date.now() + 3000;
    // Await each send: once the TCP buffers are full a send stays pending.
    while (Date.now() < deadline && sent < 4096) {
      const sending = socket.send(chunk);
      const done = await Promise.race([sending.then(() => true), delay(200).then(() => false)]);
      if (!done) {
        report.resolve({ pending: true, buffered: socket.bufferedAmount, sent });
        break;
      }
      sent++;
    }
    report.resolve({ pending: false, buffered: socket.bufferedAmount, sent });
    await socket.closed;
  });
  const { conn } = await rawClient(server.addr.port); // and never read again
  const { pending, buffered, sent } = await report.promise;
  conn.close();
  assert.ok(pending, `every send resolved (${sent} of 64 KiB)`);
  assert.ok(buffered <= chunk.length + 14, `${buffered} bytes queued in the socket`);
  assert.ok(sent < 4096);
});

Deno.test("a reader that stops taking messages pauses reading, so the peer's sends wait", async () => {
  const stop = Promise.withResolvers<void>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept();
    await stop.promise; // never receive
    await socket.close();
  });
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  let pending = false;
  const deadline = Date.now() + 4000;
  while (Date.now() < deadline && sent < 4096) {
    const done = await Promise.race([
      socket.send(chunk).then(() => true),
      delay(200).then(() => false),
    ]);
    if (!done) {
      pending = true;
      break;
    }
    sent++;
  }
  stop.resolve();
  assert.ok(pending, `all ${sent} sends of 64 KiB went through`);
  // The server's inbox (1 MiB) plus the TCP buffers bound what got through.
  assert.ok(sent * chunk.length < 32 << 20, `${sent} chunks accepted`);
  assert.equal((await withTimeout(socket.closed, 3000, "closed")).code, 1000);
});

Deno.test("a peer that stops answering heartbeat pings is dropped; one that answers stays", async () => {
  const results: CloseInfo[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 50, pongTimeout: 300 },
    async (socket) => {
      socket.accept();
      results.push(await socket.closed);
    },
  );
  const alive = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  const { conn } = await rawClient(server.addr.port); // silent: never answers
  const bytes = await readToEnd(conn, 1 << 16, 2000);
  conn.close();
  assert.equal(bytes[0], 0x89, "a ping came first");
  assert.equal(alive.state, "open");
  await delay(50);
  assert.deepEqual(results, [{ code: 1006, reason: "Ping timeout" }]);
  await alive.close();
});

Deno.test("a peer that reads slowly is not dropped while its messages wait to be taken", async () => {
  // Reading pauses while the application is behind, so the peer's pongs
  // wait unread: that silence is ours, not the peer's.
  let info: Promise<CloseInfo> | null = null;
  let taken = 0;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 30, pongTimeout: 100 },
    async (socket) => {
      socket.accept();
      info = socket.closed;
      for await (const _ of socket) {
        taken++;
        await delay(25);
      }
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  const message = new Uint8Array(64 * 1024);
  // 2.5 MiB: reading pauses at 1 MiB queued until half is taken, eight
  // messages or 200 ms, twice pongTimeout.
  for (let i = 0; i < 40; i++) socket.send(message).catch(() => {});
  const deadline = Date.now() + 5000;
  while (taken < 40 && socket.state === "open" && Date.now() < deadline) await delay(20);
  assert.equal(taken, 40);
  assert.equal(socket.state, "open");
  await socket.close();
  assert.equal((await info!).code, 1000);
});

Deno.test("ten pings in one read get ten pongs, in order", async () => {
  // What Autobahn 2.10 expects, though RFC 6455 §5.5.3 would allow fewer.
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept();
    await socket.closed;
  });
  const conn = await rawOpen(server.addr.port, "/");
  const pings = Array.from({ length: 10 }, (_, i) => clientFrame(0x9, encoder.encode(`ping ${i}`)));
  await writeAll(conn, concatAll(pings));
  const pongs = await readPongs(conn, (payloads) => payloads.length === 10);
  assert.deepEqual(
    pongs.map((payload) => decoder.decode(payload)),
    Array.from({ length: 10 }, (_, i) => `ping ${i}`),
  );
  conn.close();
});

Deno.test("a peer that pings and never reads gets a pong for the latest ping, not one each", async () => {
  // RFC 6455 §5.5.3 allows it once output backs up; a pong per ping
  // queued without limit.
  let server_: ServerSocket | null = null;
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept();
    server_ = socket;
    await socket.closed;
  });
  const conn = await rawOpen(server.addr.port, "/");
  const PINGS = 1000;
  const ROUNDS = 128; // 128,000 pings of 125 bytes: 16 MiB each way, past the kernel's buffers
  const batch = new Uint8Array(131 * PINGS);
  const payload = new Uint8Array(125);
  let last = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < PINGS; i++) {
      new DataView(payload.buffer).setUint32(0, ++last);
      batch.set(clientFrame(0x9, payload), 131 * i);
    }
    await writeAll(conn, batch);
  }
  // Output backs up at 64 KiB; past that, one pong waits.
  await delay(100);
  assert.ok(server_!.bufferedAmount < 128 * 1024, `${server_!.bufferedAmount} bytes queued`);
  // Reading now, the last pong answers the last ping.
  const latest = (payloads: Uint8Array[]): number => {
    const payload = payloads.at(-1);
    return payload === undefined
      ? 0
      : new DataView(payload.buffer, payload.byteOffset).getUint32(0);
  };
  assert.equal(latest(await readPongs(conn, (payloads) => latest(payloads) === last)), last);
  conn.close();
});

Deno.test("shutdown() closes every open socket with 1001 and waits for them", async () => {
  const server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
  const sockets = await Promise.all(
    [0, 1, 2].map(() => connect(`ws://127.0.0.1:${server.addr.port}/`)),
  );
  const native = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
  const nativeClosed = new Promise<CloseEvent>((resolve) => native.onclose = resolve);
  await new Promise((resolve) => native.onopen = resolve);
  const half = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }); // mid-handshake
  await half.write(encoder.encode("GET / HTTP/1.1\r\n"));
  await withTimeout(server.shutdown(), 3000, "shutdown");
  for (const socket of sockets) assert.equal((await socket.closed).code, 1001);
  assert.equal((await nativeClosed).code, 1001);
  assert.equal((await readToEnd(half)).length, 0);
  half.close();
  await server.finished;
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
});

Deno.test("shutdown() waits for handlers still running after their socket closed", async () => {
  let handlerDone = false;
  const server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept();
    await socket.closed;
    await delay(150); // cleanup after the connection ended
    handlerDone = true;
  });
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  await client.close();
  await withTimeout(server.shutdown(), 3000, "shutdown");
  assert.ok(handlerDone, "shutdown() resolved before the handler returned");
  await server.finished;
});

Deno.test("an aborted signal shuts the server down", async () => {
  const controller = new AbortController();
  let listened: Deno.NetAddr | null = null;
  const server = serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      signal: controller.signal,
      onListen: (addr) => (listened = addr),
    },
    (socket) => {
      socket.accept();
      return socket.closed;
    },
  );
  assert.equal(listened!.port, server.addr.port);
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  controller.abort();
  await withTimeout(server.finished, 3000, "finished");
  assert.equal((await socket.closed).code, 1001);
});

Deno.test("an accept() that keeps failing is tried again after pauses that double", async () => {
  // A listener out of file descriptors fails every accept(); Deno itself
  // panics when really out of them, so the listener is stubbed.
  const realListen = Deno.listen;
  const namespace = Deno as unknown as { listen: unknown };
  let accepts = 0;
  namespace.listen = (options: Deno.TcpListenOptions) => {
    const real = realListen({ ...options, transport: "tcp" });
    return {
      addr: real.addr,
      accept: () => {
        accepts++;
        return new Promise((_, reject) =>
          setTimeout(() => reject(new Error("Too many open files (os error 24)")), 0)
        );
      },
      close: () => real.close(),
    };
  };
  try {
    let errors = 0;
    const server = serve({ hostname: "127.0.0.1", port: 0, onError: () => errors++ }, () => {});
    await delay(700);
    // Pauses of 5, 10, ..., 320 ms, then one of 640 ms under way: a handful
    // of tries, where a loop without them made hundreds.
    assert.ok(accepts >= 4 && accepts <= 10, `${accepts} accepts in 700 ms`);
    assert.equal(errors, accepts);
    // Shutdown ends that pause rather than waiting it out.
    const start = performance.now();
    await withTimeout(server.shutdown(), 3000, "shutdown");
    const took = performance.now() - start;
    assert.ok(took < 300, `shutdown took ${took.toFixed(0)} ms`);
  } finally {
    namespace.listen = realListen;
  }
});

/**
 * A server that takes `count` messages and answers with how many, and a
 * client socket to it whose writes are logged by their length.
 */
async function writesLogged(count: number) {
  const server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    let taken = 0;
    for await (const _ of socket) if (++taken === count) break;
    await socket.send(String(taken));
    await socket.closed;
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const writes: number[] = [];
  const socket = clientSocket(interpose(conn, {
    write(data) {
      writes.push(data.length);
      return conn.write(data);
    },
  }));
  assert.ok((await socket.opened).ok);
  return {
    socket,
    writes,
    async [Symbol.asyncDispose]() {
      await socket.close();
      await server.shutdown();
    },
  };
}

Deno.test("frames made in one turn go out in one write", async () => {
  await using peers = await writesLogged(100);
  const { socket, writes } = peers;
  const sends = [];
  for (let i = 0; i < 100; i++) sends.push(socket.send(`message ${i}`));
  sends.push(socket.ping());
  await Promise.all(sends);
  assert.equal(await socket.receive({ timeout: 2000 }), "100");
  assert.equal(writes.length, 2, `writes: ${writes.join(", ")}`); // the request, then one batch
});

/**
 * The lengths of the writes a client socket makes while it echoes bursts of
 * `count` pipelined 32-byte messages, one list per burst. Each burst comes
 * in one write once the echoes of the last are back. With `noDelay`, TCP
 * sends each write at once, and the socket is told so.
 */
async function writesPerBurst(
  count: number,
  bursts: number,
  noDelay: boolean,
): Promise<number[][]> {
  const encoder = new ws.FrameEncoder(ws.ConnectionType.SERVER);
  const payload = randomBytes(prng(21), 32);
  const burst = concatAll(Array.from({ length: count }, () => encoder.encodeData(payload, true)));
  const echoes = count * (6 + payload.length); // masked client frames
  const perBurst: number[][] = [];
  let current: number[] = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = (async () => {
    const conn = await listener.accept();
    try {
      assert.ok(await acceptHandshake(conn));
      for (let i = 0; i < bursts; i++) {
        current = [];
        perBurst.push(current);
        await writeAll(conn, burst);
        const { bytes } = await readUntil(conn, (bytes) => bytes.length >= echoes);
        assert.equal(bytes.length, echoes, `burst ${i}: echoes ${bytes.length} of ${echoes} bytes`);
      }
    } finally {
      conn.close();
    }
  })();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  if (noDelay) conn.setNoDelay(true);
  const socket = clientSocket(
    interpose(conn, {
      write(data) {
        current.push(data.length);
        return conn.write(data);
      },
    }),
    noDelay,
  );
  try {
    assert.ok((await socket.opened).ok);
    for await (const message of socket) socket.send(message);
    await peer;
  } finally {
    await socket.closed;
    listener.close();
  }
  return perBurst;
}

Deno.test("replies to pipelined messages: a lone socket writes them a few at a time", async () => {
  // The peer can start on the first replies while the rest are made: with
  // every reply in one write, it and we took turns (1 x 32 B, 32 deep).
  const perBurst = await writesPerBurst(32, 12, true);
  const frame = 6 + 32;
  const report = `writes: ${JSON.stringify(perBurst)}`;
  // The first bursts may take more than one read, until the buffer grew.
  for (const writes of perBurst.slice(-6)) {
    assert.equal(writes.reduce((sum, length) => sum + length, 0), 32 * frame, report);
    // Eight or so at a time (how many more join while a write is made
    // depends on microtask hops): not all at once, not one by one.
    assert.ok(writes.length >= 3 && writes.length <= 4, report);
    for (const length of writes.slice(0, -1)) {
      assert.ok(length >= 8 * frame && length <= 10 * frame, report);
    }
  }
});

Deno.test("replies to pipelined messages go out in one write where Nagle may hold back a second", async () => {
  // Split, each burst waited 40 ms for the peer's delayed ACK.
  const perBurst = await writesPerBurst(32, 12, false);
  for (const writes of perBurst.slice(-6)) {
    assert.deepEqual(writes, [32 * (6 + 32)], `writes: ${JSON.stringify(perBurst)}`);
  }
});

Deno.test("replies to pipelined messages go out in one write while other sockets have output", async () => {
  // A process busy with many sockets makes the fewest writes instead.
  const gate = Promise.withResolvers<void>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) socket.send(message);
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const stalled = clientSocket(interpose(conn, {
    async write(data) {
      await gate.promise;
      return conn.write(data);
    },
  }));
  try {
    // Its request is a write held at the gate until the bursts are over.
    const perBurst = await writesPerBurst(32, 12, true);
    for (const writes of perBurst.slice(-6)) {
      assert.deepEqual(writes, [32 * (6 + 32)], `writes: ${JSON.stringify(perBurst)}`);
    }
  } finally {
    gate.resolve();
    await stalled.close();
  }
});

Deno.test("a frame too large to join others is written at once; small ones after it wait to join", async () => {
  await using peers = await writesLogged(11);
  const { socket, writes } = peers;
  const before = writes.length;
  // 64 KiB and more goes out alone whatever follows: no reason to wait a
  // microtask (and let its bytes leave the cache) for others to join it.
  const large = socket.send(new Uint8Array(70_000));
  assert.equal(writes.length, before + 1, "written before send() returned");
  const small = Array.from({ length: 10 }, (_, i) => socket.send(`small ${i}`));
  await Promise.all([large, ...small]);
  // Client frames of 7 + 6 bytes: the ten join in the write after the large one.
  assert.equal(writes.at(-1), 10 * 13, `writes: ${writes.slice(before).join(", ")}`);
  assert.equal(await socket.receive({ timeout: 2000 }), "11");
});

Deno.test("small frames queued behind a stalled write arrive whole and in order", async () => {
  // Behind a write that does not finish, frames cut from many different
  // slabs are copied out (so a stalled peer cannot pin them all): the
  // bytes must come out the same.
  const received = Promise.withResolvers<string[]>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    const messages: string[] = [];
    for await (const message of socket) {
      messages.push(message as string);
      if (messages.length === 41) break;
    }
    received.resolve(messages);
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  let gate: PromiseWithResolvers<void> | null = null;
  const socket = clientSocket(interpose(conn, {
    async write(data) {
      await gate?.promise;
      return conn.write(data);
    },
  }));
  assert.ok((await socket.opened).ok);
  gate = Promise.withResolvers<void>();
  const sends = [socket.send("first")];
  await delay(10); // the first write is now in flight, held at the gate
  for (let i = 0; i < 40; i++) {
    sends.push(socket.send(`queued ${i}`));
    for (let j = 0; j < 8; j++) allocate(2048); // the next frame lands in another slab
  }
  gate.resolve();
  await withTimeout(Promise.all(sends), 3000, "sends");
  const messages = await withTimeout(received.promise, 3000, "messages");
  assert.deepEqual(messages, ["first", ...Array.from({ length: 40 }, (_, i) => `queued ${i}`)]);
  await socket.close();
});

Deno.test("a transport that takes a few bytes per write still gets every frame out, in order", async () => {
  // Short writes in the middle of a batch, and a batch of several writes
  // (frames past 64 KiB go out alone): each frame resumes where it stopped.
  const large = randomBytes(prng(7), 100_000);
  const received = Promise.withResolvers<(string | Uint8Array)[]>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    const messages: (string | Uint8Array)[] = [];
    for await (const message of socket) {
      messages.push(message);
      if (messages.length === 4) break;
    }
    received.resolve(messages);
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  let writes = 0;
  let limit = Infinity;
  const socket = clientSocket(interpose(conn, {
    write(data) {
      writes++;
      return conn.write(data.subarray(0, Math.min(limit, data.length)));
    },
  }));
  assert.ok((await socket.opened).ok);
  limit = 4093; // not a divisor of any frame's length
  const sends = [socket.send("one"), socket.send(large), socket.send("three"), socket.send("four")];
  await withTimeout(Promise.all(sends), 3000, "sends");
  const messages = await withTimeout(received.promise, 3000, "messages");
  assert.deepEqual(messages, ["one", large, "three", "four"]);
  assert.ok(writes > 100_000 / 4093, `${writes} writes`);
  await socket.close();
});

Deno.test("a write that fails, at once or later, fails its sends and ends the socket with 1006", async () => {
  for (const failure of ["throws", "rejects"] as const) {
    await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
      for await (const _ of socket) { /* drain */ }
    });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    let broken = false;
    const socket = clientSocket(interpose(conn, {
      write(data) {
        if (!broken) return conn.write(data);
        if (failure === "throws") throw new Deno.errors.BrokenPipe("gone");
        return Promise.reject(new Deno.errors.BrokenPipe("gone"));
      },
    }));
    assert.ok((await socket.opened).ok);
    broken = true;
    const sends = [socket.send("a"), socket.send("b")];
    for (const send of sends) {
      await assert.rejects(withTimeout(send, 2000, "send"), ConnectionClosedError);
    }
    assert.equal((await withTimeout(socket.closed, 2000, "closed")).code, 1006, failure);
    await assert.rejects(socket.send("after"), ConnectionClosedError);
    // It has no output now: counted still, it would keep every other
    // socket from writing a burst's replies a few at a time.
    assert.equal(socketsWithOutput(), 0, failure);
  }
});

Deno.test("an iterator asked again before its answer came answers each call in order", async () => {
  const answers = Promise.withResolvers<IteratorResult<string | Uint8Array, undefined>[]>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    const messages = socket[Symbol.asyncIterator]();
    // Three calls before any message: each must get its own answer.
    const pending = [messages.next(), messages.next(), messages.next()];
    answers.resolve(await Promise.all(pending));
  });
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  await socket.send("one");
  await socket.send("two");
  await socket.close();
  const [first, second, third] = await withTimeout(answers.promise, 3000, "answers");
  assert.deepEqual(first, { done: false, value: "one" });
  assert.deepEqual(second, { done: false, value: "two" });
  assert.deepEqual(third, { done: true, value: undefined });
});

Deno.test("an iterator's return() answers its waiting calls; the next message stays for receive()", async () => {
  type Answer = IteratorResult<string | Uint8Array, undefined>;
  const seen = Promise.withResolvers<[Answer[], Answer, string | Uint8Array]>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    const messages = socket[Symbol.asyncIterator]();
    const pending = [messages.next(), messages.next()];
    await messages.return!();
    // A waiter left behind took the next message, and receive() never saw it.
    const answers = await Promise.all(pending);
    seen.resolve([answers, await messages.next(), await socket.receive({ timeout: 2000 })]);
  });
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  await socket.send("kept");
  const [answers, after, received] = await withTimeout(seen.promise, 3000, "answers");
  const done = { done: true, value: undefined };
  assert.deepEqual(answers, [done, done]);
  assert.deepEqual(after, done, "a returned iterator stays done");
  assert.equal(received, "kept");
  await socket.close();
});

Deno.test("asking an iterator for the next message empties the last result; loops get every message", async (t) => {
  type Answer = IteratorResult<string | Uint8Array, undefined>;
  // The handler reads three messages three ways: by hand, then
  // Array.fromAsync and ReadableStream.from over what follows.
  const handler = (seen: PromiseWithResolvers<unknown[]>) => async (socket: Socket) => {
    const messages = socket[Symbol.asyncIterator]();
    const first: Answer = await messages.next();
    const value = first.value;
    const second = { ...await messages.next() };
    // A loop that waits for its next message no longer holds the last one.
    const emptied = { ...first };
    const rest = await Array.fromAsync({ [Symbol.asyncIterator]: () => messages });
    seen.resolve([value, emptied, second, rest]);
  };
  const check = async (port: number, seen: PromiseWithResolvers<unknown[]>) => {
    const client = await connect(`ws://127.0.0.1:${port}/`);
    for (const message of ["one", "two", "three", new Uint8Array([4])]) await client.send(message);
    await client.close();
    const [value, emptied, second, rest] = await withTimeout(seen.promise, 3000, "the messages");
    assert.equal(value, "one");
    assert.deepEqual(emptied, { done: false, value: undefined });
    assert.deepEqual(second, { done: false, value: "two" });
    assert.deepEqual(rest, ["three", new Uint8Array([4])]);
  };
  await t.step("serve()", async () => {
    const seen = Promise.withResolvers<unknown[]>();
    await using server = serve({ hostname: "127.0.0.1", port: 0 }, handler(seen));
    await check(server.addr.port, seen);
  });
  await t.step("Deno.serve", async () => {
    const seen = Promise.withResolvers<unknown[]>();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => upgrade(request, handler(seen)),
    );
    try {
      await check(server.addr.port, seen);
    } finally {
      await server.shutdown();
    }
  });
  await t.step("ReadableStream.from", async () => {
    const seen = Promise.withResolvers<unknown[]>();
    await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
      const got: unknown[] = [];
      for await (const message of ReadableStream.from(socket)) got.push(message);
      seen.resolve(got);
    });
    const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
    for (const message of ["a", "b", new Uint8Array([3])]) await client.send(message);
    await client.close();
    assert.deepEqual(await withTimeout(seen.promise, 3000, "the messages"), [
      "a",
      "b",
      new Uint8Array([3]),
    ]);
  });
});

Deno.test("long texts read by many sockets in one turn wait their turn, and every echo comes back in order", async () => {
  // Reads that may hold a long text wait, across sockets, for the reader of
  // the last one to have run: nothing may be lost, reordered or stuck.
  const before = readsThatWaitedForText();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) void socket.send(message);
  });
  const random = prng(77);
  const characters = [..."abcdefé€😀"];
  const text = (size: number) =>
    Array.from({ length: size }, () => characters[Math.floor(random() * characters.length)])
      .join("");
  const clients = await Promise.all(
    Array.from({ length: 24 }, () => connect(`ws://127.0.0.1:${server.addr.port}/`)),
  );
  try {
    // One long text and many large binary messages at once: the readers
    // woken after the text hand out none, and must still wake the rest.
    for (let round = 0; round < 10; round++) {
      const sent = clients.map((_, i) => i === round ? text(20_000) : randomBytes(random, 8_000));
      for (const [i, client] of clients.entries()) void client.send(sent[i]!);
      await withTimeout(
        Promise.all(clients.map(async (client, i) => {
          const echoed = await client.receive();
          if (i === round) assert.ok(echoed === sent[i], `the text of round ${round}`);
          else assertSameBytes(echoed as Uint8Array, sent[i] as Uint8Array, `bytes of ${i}`);
        })),
        10_000,
        `the echoes of round ${round}`,
      );
    }
    await withTimeout(
      Promise.all(clients.map(async (client) => {
        const sent = [
          text(20_000 + Math.floor(random() * 20_000)),
          randomBytes(random, 20_000),
          text(50),
          text(70_000),
          text(17_000),
        ];
        // Three rounds, each sent in one burst and then awaited in order.
        for (let round = 0; round < 3; round++) {
          for (const message of sent) void client.send(message);
          for (const [index, message] of sent.entries()) {
            const echoed = await client.receive();
            if (typeof message === "string") {
              assert.ok(echoed === message, `round ${round}, text ${index} came back changed`);
            } else assertSameBytes(echoed as Uint8Array, message, `round ${round}, bytes ${index}`);
          }
        }
      })),
      20_000,
      "the echoes",
    );
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
  assert.ok(readsThatWaitedForText() > before, "no read waited: the test did not reach the case");
});

Deno.test("a server socket's fields describe the connection", async () => {
  const seen = Promise.withResolvers<ServerSocket>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket, request) => {
    assert.equal(request.target, "/room?id=7");
    assert.equal(socket.state, "connecting");
    socket.accept();
    assert.equal(socket.state, "open");
    seen.resolve(socket);
    await socket.closed;
  });
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/room?id=7`);
  const socket = await seen.promise;
  assert.equal((socket.remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
  assert.equal(socket.subprotocol, null);
  assert.deepEqual(socket.extensions, []);
  await client.close(3000, "x".repeat(123));
  assert.deepEqual(await socket.closed, { code: 3000, reason: "x".repeat(123) });
  await assert.rejects(client.close(1005), RangeError);
});

// Echoes each message without waiting for the write, as examples/echo_server.ts.
const echoEach: Handler = async (socket) => {
  for await (const message of socket) socket.send(message).catch(() => {});
};

const untilClose = (events: ws.Event[]): boolean =>
  events.some((event) => event instanceof ws.CloseConnection);

// Events from `conn` through the client engine of rawClient(), until `enough`.
async function readEvents(
  conn: Deno.Conn,
  engine: ws.WSConnection,
  enough: (events: ws.Event[]) => boolean,
  onEvent: (event: ws.Event) => Promise<void> = async () => {},
): Promise<ws.Event[]> {
  const events: ws.Event[] = [];
  const buffer = new Uint8Array(1 << 16);
  for (let reads = 0; reads < 1000 && !enough(events); reads++) {
    const n = await withTimeout(conn.read(buffer), 3000, "read").catch(() => null);
    if (n === null) break;
    engine.receiveData(buffer.slice(0, n));
    for (const event of engine.events()) {
      events.push(event);
      await onEvent(event);
    }
  }
  return events;
}

Deno.test("heartbeat: a ping follows each answer, and a peer that then falls silent is dropped", async () => {
  const ended = Promise.withResolvers<CloseInfo>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 100, pongTimeout: 80 },
    async (socket) => {
      socket.accept();
      ended.resolve(await socket.closed);
    },
  );
  const { conn, engine } = await rawClient(server.addr.port);
  let pings = 0;
  const pingTimes: number[] = [];
  await readEvents(conn, engine, () => pings === 4, async (event) => {
    if (!(event instanceof ws.Ping)) return;
    pings++;
    pingTimes.push(performance.now());
    await writeAll(conn, engine.send(event.response()));
  });
  assert.equal(pings, 4, "a ping after each answer");
  // Every pingInterval, not pingInterval after a tick noticed the answer.
  for (let i = 1; i < pingTimes.length; i++) {
    const gap = pingTimes[i]! - pingTimes[i - 1]!;
    assert.ok(gap >= 90 && gap < 150, `pings ${gap} ms apart`);
  }
  // Silent from now on: the next ping goes unanswered.
  assert.deepEqual(await withTimeout(ended.promise, 3000, "drop"), {
    code: 1006,
    reason: "Ping timeout",
  });
  conn.close();
});

Deno.test("connect(): a ping follows each answer, and a server that then falls silent is dropped", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = (async () => {
    const conn = await listener.accept();
    const engine = new ws.WSConnection(ws.ConnectionType.SERVER);
    let pings = 0;
    await readEvents(conn, engine, () => pings === 3, async (event) => {
      if (event instanceof ws.Request) await writeAll(conn, engine.send(new ws.AcceptConnection()));
      else if (event instanceof ws.Ping && ++pings < 3) {
        await writeAll(conn, engine.send(event.response()));
      }
    });
    return { conn, pings };
  })();
  const socket = await connect(`ws://127.0.0.1:${listener.addr.port}/`, {
    pingInterval: 40,
    pongTimeout: 200,
  });
  const info = await withTimeout(socket.closed, 3000, "drop");
  const { conn, pings } = await peer;
  conn.close();
  assert.equal(pings, 3);
  assert.deepEqual(info, { code: 1006, reason: "Ping timeout" });
});

Deno.test("heartbeat with pongTimeout 0: a silent peer is kept, and no second ping is sent unanswered", async () => {
  let socket: ServerSocket | null = null;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 20, pongTimeout: 0 },
    (accepted) => {
      accepted.accept();
      socket = accepted;
      return accepted.closed;
    },
  );
  const { conn, engine } = await rawClient(server.addr.port);
  const events = await readEvents(conn, engine, () => false).catch(() => []);
  conn.close();
  assert.equal(events.filter((event) => event instanceof ws.Ping).length, 1);
  assert.ok(socket !== null);
  await withTimeout((socket as ServerSocket).closed, 2000, "closed");
});

Deno.test("timeouts and heartbeat intervals outside 0 to 2^31 - 1 ms are refused before any I/O", async () => {
  // Deno, like browsers, fires a longer timeout (Infinity too) after 1 ms.
  // From callers without TypeScript's checks: a BigInt made the message's
  // JSON.stringify throw a TypeError, and null turned the heartbeat off.
  const untyped = [1000n, Symbol("ms"), null] as unknown as number[];
  for (const value of [-1, 1.5, NaN, Infinity, 2 ** 31, ...untyped]) {
    assert.throws(() => serve({ port: 0, pingInterval: value }, () => {}), RangeError);
    assert.throws(() => serve({ port: 0, pongTimeout: value }, () => {}), RangeError);
    assert.throws(() => serve({ port: 0, limits: { closeTimeout: value } }, () => {}), RangeError);
    await assert.rejects(connect("ws://127.0.0.1:9/", { handshakeTimeout: value }), RangeError);
    await assert.rejects(connect("ws://127.0.0.1:9/", { pingInterval: value }), RangeError);
  }
  // receive() computes deadlines: past ones time out at once, far ones never.
  await assert.rejects(new Inbox().receive({ timeout: NaN }), RangeError);
  await assert.rejects(new Inbox().receive({ timeout: -5 }), { name: "TimeoutError" });
  const inbox = new Inbox();
  const waiting = inbox.receive({ timeout: Infinity });
  await delay(20);
  inbox.push("late");
  assert.equal(await waiting, "late");
  const longest = await connect("ws://127.0.0.1:1/", { handshakeTimeout: 2 ** 31 - 1 }).catch((
    error,
  ) => error);
  assert.ok(longest instanceof HandshakeError, "the longest delay is taken (port 1 refuses)");
});

Deno.test("a handler's return closes its socket with 1000", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    assert.equal(await socket.receive(), "one");
  });
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  await client.send("one");
  assert.deepEqual(await withTimeout(client.closed, 2000, "closed"), { code: 1000, reason: "" });
});

Deno.test("the answers to messages go out before a close or failure read with them (Autobahn 3.2, 4.1.3, 5.15, 6.x, 7.1.6)", async (t) => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echoEach);
  const cases: [string, Uint8Array, number][] = [
    ["a reserved bit", clientFrame(0x20 | 0x1, encoder.encode("x")), 1002],
    ["a reserved opcode", clientFrame(0x5, encoder.encode("x")), 1002],
    ["a continuation with no message", clientFrame(0x0, encoder.encode("x")), 1002],
    ["a close", clientFrame(0x8, new Uint8Array([0x03, 0xe8])), 1000],
    [
      "a ping, then a close",
      concatAll([clientFrame(0x9, new Uint8Array()), clientFrame(0x8, new Uint8Array([3, 232]))]),
      1000,
    ],
    [
      "a fragmented ping",
      clientFrame(0x9, new Uint8Array()).map((byte, i) => i === 0 ? 0x09 : byte),
      1002,
    ],
    // Found only in the payload: the header looks like any text frame's.
    ["invalid UTF-8 in a text message", clientFrame(0x1, new Uint8Array([0x48, 0xff])), 1007],
    [
      "invalid UTF-8 in the first piece of a text message",
      clientFrame(0x1, new Uint8Array([0x48, 0xc0, 0xaf])).map((byte, i) => i === 0 ? 0x01 : byte),
      1007,
    ],
    [
      "invalid UTF-8 in the second piece of a text message",
      concatAll([
        clientFrame(0x1, encoder.encode("valid")).map((byte, i) => i === 0 ? 0x01 : byte),
        clientFrame(0x0, new Uint8Array([0xed, 0xa0, 0x80])),
      ]),
      1007,
    ],
    ["invalid UTF-8 in a close reason", clientFrame(0x8, new Uint8Array([3, 232, 0xff])), 1007],
  ];
  for (const [name, ending, code] of cases) {
    await t.step(name, async () => {
      const { conn, engine } = await rawClient(server.addr.port);
      const first = clientFrame(0x1, encoder.encode("Hello, world!"));
      const second = clientFrame(0x2, new Uint8Array([1, 2, 3]));
      await writeAll(conn, concatAll([first, second, ending, clientFrame(0x9, new Uint8Array())]));
      const events = await readEvents(conn, engine, untilClose);
      conn.close();
      assert.deepEqual(
        events.filter((event) => !(event instanceof ws.Pong)).map((event) =>
          event instanceof ws.CloseConnection
            ? event.code
            : (event as ws.TextMessage | ws.BytesMessage).data
        ),
        ["Hello, world!", new Uint8Array([1, 2, 3]), code],
      );
    });
  }
});

Deno.test("an ending read after the messages it follows waits for their answers too", async (t) => {
  // Four messages fill the first 512-byte read exactly; the next read
  // finds the ending at once, while the handler has taken one message.
  // Found by tests/driver_fuzz_test.ts: the ending was answered at once,
  // and its Close frame refused the answers to the other three (or, at
  // the end of the stream, the engine was closed before they came).
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echoEach);
  // Masked text frames of 2 + 4 + 125 bytes, and one of 2 + 4 + 113.
  const payloads = ["a", "b", "c"].map((fill) => fill.repeat(125)).concat("d".repeat(113));
  const messages = concatAll(payloads.map((text) => clientFrame(0x1, encoder.encode(text))));
  assert.equal(messages.length, 512, "what the first read takes");
  const endings: [string, Uint8Array, number | null][] = [
    ["a reserved opcode", clientFrame(0x5, encoder.encode("x")), 1002],
    ["a close", clientFrame(0x8, new Uint8Array([0x03, 0xe8])), 1000],
    ["the end of the stream", new Uint8Array(0), null],
  ];
  for (const [name, ending, code] of endings) {
    await t.step(name, async () => {
      const { conn, engine } = await rawClient(server.addr.port);
      try {
        await writeAll(conn, concatAll([messages, ending]));
        if (code === null) await conn.closeWrite();
        const events = await readEvents(conn, engine, untilClose);
        assert.deepEqual(
          events.map((event) =>
            event instanceof ws.CloseConnection
              ? event.code
              : (event as ws.TextMessage).data.slice(0, 1)
          ),
          code === null ? ["a", "b", "c", "d"] : ["a", "b", "c", "d", code],
        );
      } finally {
        conn.close();
      }
    });
  }
});

Deno.test("after close(), a message is delivered whole or not at all, never its tail", async () => {
  // Past our close, pieces that find the inbox full are dropped; the rest
  // of such a message must go too, even once the reader made room.
  const sizes: number[] = [];
  const done = Promise.withResolvers<void>();
  const SMALL = 64 * 1024;
  const BIG = 4 << 20;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout: 1500 } },
    async (socket) => {
      socket.accept();
      await delay(300); // the peer's messages fill the inbox: reading pauses
      socket.close(1000).catch(() => {});
      for await (const message of socket) {
        sizes.push(message.length);
        await delay(2);
      }
      done.resolve();
    },
  );
  const { conn } = await rawClient(server.addr.port);
  // Masked with a zero key, so the payload goes as it is.
  const frame = (size: number): Uint8Array => {
    const head = new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    new DataView(head.buffer).setBigUint64(2, BigInt(size));
    return concatAll([head, new Uint8Array(size)]);
  };
  const frames = [
    ...Array.from({ length: 24 }, () => frame(SMALL)),
    frame(BIG),
    ...Array.from({ length: 64 }, () => frame(SMALL)),
  ];
  const writing = (async () => {
    for (const bytes of frames) await writeAll(conn, bytes);
  })().catch(() => {});
  const draining = readToEnd(conn, 1 << 24, 8000);
  await withTimeout(done.promise, 8000, "handler");
  await writing;
  conn.close();
  await draining.catch(() => {});
  assert.deepEqual(sizes.filter((size) => size !== SMALL && size !== BIG), []);
});

Deno.test("a message, a close and the FIN read together: the message is answered, then the close", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echoEach);
  const { conn, engine } = await rawClient(server.addr.port);
  await writeAll(
    conn,
    concatAll([
      clientFrame(0x1, encoder.encode("hello")),
      clientFrame(0x8, new Uint8Array([0x03, 0xe8])),
    ]),
  );
  await conn.closeWrite(); // the FIN; the answer is still read
  const events = await readEvents(conn, engine, untilClose);
  conn.close();
  assert.deepEqual(
    events.map((event) =>
      event instanceof ws.CloseConnection ? event.code : event.constructor.name
    ),
    ["TextMessage", 1000],
  );
});

Deno.test("a slow reader gets all a returned handler sent: closeTimeout counts from the last write", async () => {
  const count = 32;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout: 500 } },
    (socket) => {
      socket.accept();
      for (let i = 0; i < count; i++) socket.send(new Uint8Array(1 << 20).fill(i)).catch(() => {});
    },
  );
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  let received = 0;
  for await (const _ of client) {
    received++;
    await delay(60); // 32 x 60 ms: longer than closeTimeout, never stalled for it
  }
  assert.equal(received, count);
  assert.equal((await client.closed).code, 1000);
});

Deno.test("a message, a close and the FIN, read late: the whole echo, then the close", async () => {
  const size = 16 << 20;
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echoEach);
  const { conn, engine } = await rawClient(server.addr.port);
  // Masked with a zero key, so the payload goes as it is.
  const head = new Uint8Array([0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  new DataView(head.buffer).setBigUint64(2, BigInt(size));
  const writing = (async () => {
    await writeAll(conn, concatAll([head, new Uint8Array(size).fill(0x61)]));
    await writeAll(conn, clientFrame(0x8, new Uint8Array([0x03, 0xe8])));
    await conn.closeWrite();
  })();
  await delay(300); // the server's echo waits on our reading
  const events = await readEvents(conn, engine, untilClose);
  await writing;
  conn.close();
  // The engine hands a large message over in pieces.
  const texts = events.filter((event) => event instanceof ws.TextMessage);
  assert.equal(texts.reduce((length, event) => length + event.data.length, 0), size);
  assert.ok(texts.at(-1)!.messageFinished);
  assert.deepEqual(
    events.filter((event) => !(event instanceof ws.TextMessage)).map((event) =>
      event instanceof ws.CloseConnection ? event.code : event.constructor.name
    ),
    [1000],
  );
});

Deno.test("after a protocol error the server half-closes and drains: a peer still sending is not reset", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echoEach);
  const { conn } = await rawClient(server.addr.port);
  // A reserved opcode, then more than the server reads before it answers,
  // still being sent, as a fuzzer sends the rest of its case.
  const writing = writeAll(
    conn,
    concatAll([clientFrame(0x3, new Uint8Array()), new Uint8Array(4 << 20)]),
  )
    .then(() => "written", (error) => String(error));
  await delay(200);
  const { bytes, ended } = await readUntil(conn, (bytes) => bytes.length >= 4);
  assert.equal(bytes[0], 0x88, "our Close frame");
  assert.equal((bytes[2]! << 8) | bytes[3]!, 1002);
  assert.equal(await writing, "written", "closing with bytes unread resets the sender");
  await conn.closeWrite();
  assert.ok(ended || (await readUntil(conn, () => false, 3000)).ended, "then the server's end");
  conn.close();
});

Deno.test("ping() settles on its own pong or a later one's, refuses 126 bytes, and fails at the end", async () => {
  const opened = Promise.withResolvers<ServerSocket>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept();
    opened.resolve(socket);
    await socket.closed;
  });
  const { conn, engine } = await rawClient(server.addr.port);
  const socket = await withTimeout(opened.promise, 3000, "the server socket");
  const pong = (...bytes: number[]) =>
    writeAll(conn, engine.send(new ws.Pong({ payload: new Uint8Array(bytes) })));

  await assert.rejects(socket.ping(new Uint8Array(126)), ws.LocalProtocolError);
  const settled: string[] = [];
  const first = socket.ping(new Uint8Array([1, 2, 3, 4])).then(() => settled.push("first"));
  const second = socket.ping(new Uint8Array([5, 6])).then(() => settled.push("second"));
  const pings = (events: ws.Event[]) => events.filter((event) => event instanceof ws.Ping);
  const seen = await readEvents(conn, engine, (events) => pings(events).length === 2);
  assert.deepEqual(pings(seen).map((ping) => [...ping.payload]), [[1, 2, 3, 4], [5, 6]]);
  // Unsolicited, or a ping's bytes with one more: neither answers a ping.
  await pong(9, 9, 9, 9);
  await pong(1, 2, 3, 4, 0);
  await delay(50);
  assert.deepEqual(settled, []);
  // The pong of the later ping answers the earlier one too (RFC 6455 §5.5.3).
  await pong(5, 6);
  await withTimeout(Promise.all([first, second]), 3000, "the pings");
  assert.deepEqual(settled, ["first", "second"]);

  // A payload of the wrong type is refused as a rejection, never a throw.
  for (const payload of [5, "abc", new DataView(new ArrayBuffer(2)), [1, 2]]) {
    await assert.rejects(
      socket.ping(payload as unknown as Uint8Array),
      (error: Error) =>
        error instanceof TypeError && /A PING payload is a Uint8Array, not/.test(error.message),
    );
  }

  const unanswered = socket.ping();
  await readEvents(conn, engine, (events) => pings(events).length === 1);
  conn.close();
  await assert.rejects(withTimeout(unanswered, 3000, "the last ping"), ConnectionClosedError);
});

Deno.test("a server socket that sent its close still answers the peer's ping", async () => {
  // RFC 6455 §5.5.3: until the peer's close arrives. A peer whose heartbeat
  // crossed our close would otherwise drop the connection unanswered.
  const closedWith = Promise.withResolvers<CloseInfo>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    await socket.receive();
    closedWith.resolve(await socket.close(1000, "bye"));
  });
  const { conn, engine } = await rawClient(server.addr.port);
  try {
    await writeAll(conn, engine.send(new ws.TextMessage({ data: "close now" })));
    const close = [0x88, 5, 0x03, 0xe8, 0x62, 0x79, 0x65];
    let seen: Uint8Array = new Uint8Array(0);
    const buffer = new Uint8Array(1024);
    // The close first; then a ping crosses it, and its pong follows.
    for (let reads = 0; reads < 100 && seen.length < close.length; reads++) {
      const n = await withTimeout(conn.read(buffer), 3000, "the close");
      if (n === null) break;
      seen = concatAll([seen, buffer.subarray(0, n)]);
    }
    assert.deepEqual([...seen], close);
    await writeAll(conn, engine.send(new ws.Ping({ payload: new Uint8Array([1, 2]) })));
    const n = await withTimeout(conn.read(buffer), 3000, "the pong");
    assert.deepEqual([...buffer.subarray(0, n ?? 0)], [0x8a, 2, 1, 2]);
    engine.receiveData(seen);
    const [event] = engine.events();
    assert.ok(event instanceof ws.CloseConnection);
    await writeAll(conn, engine.send(event.response()));
  } finally {
    conn.close();
  }
  // The closing handshake finished after the ping.
  assert.deepEqual(await withTimeout(closedWith.promise, 3000, "close()"), {
    code: 1000,
    reason: "bye",
  });
});

Deno.test("ping() settles when the peer answers only a later heartbeat ping", async () => {
  // RFC 6455 §5.5.3 lets a pong answer only the latest ping, and our own
  // drivers answer so once output backs up. The heartbeat's ping was not
  // counted, so its pong left every ping() before it waiting.
  const opened = Promise.withResolvers<ServerSocket>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 100, pongTimeout: 0 },
    async (socket) => {
      socket.accept();
      opened.resolve(socket);
      await socket.closed;
    },
  );
  const { conn, engine } = await rawClient(server.addr.port);
  try {
    const socket = await withTimeout(opened.promise, 3000, "the server socket");
    const pinged = socket.ping(new Uint8Array([7, 7]));
    const pings = (events: ws.Event[]) => events.filter((event) => event instanceof ws.Ping);
    const seen = await readEvents(conn, engine, (events) => pings(events).length === 2);
    const [ours, heartbeat] = pings(seen) as ws.Ping[];
    assert.deepEqual([...ours!.payload], [7, 7]);
    assert.equal(heartbeat!.payload.length, 0);
    await writeAll(conn, engine.send(heartbeat!.response()));
    await withTimeout(pinged, 3000, "ping()");
  } finally {
    conn.close();
  }
});

Deno.test("serve() over TLS shrugs off clients that do not speak TLS, and serves the next", async () => {
  const { cert, key, ca } = await testCertificate();
  const errors: unknown[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, cert, key, onError: (error) => errors.push(error) },
    async (socket) => {
      for await (const message of socket) await socket.send(message);
    },
  );
  const port = server.addr.port;
  const plain = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(plain, handshakeRequest(port)); // a plain-text handshake
  const { bytes, ended } = await readUntil(plain, () => false, 3000);
  plain.close();
  assert.ok(ended, "the plain-text client was let go");
  assert.equal(bytes[0], 0x15, "with a TLS alert, not an HTTP answer");
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  silent.close(); // gone before a byte
  const halfHello = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(halfHello, new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
  halfHello.close();

  const socket = await connect(`wss://localhost:${port}/`, { caCerts: [ca] });
  await socket.send("still serving");
  assert.equal(await socket.receive({ timeout: 3000 }), "still serving");
  assert.equal((await socket.close()).code, 1000);
  assert.deepEqual(errors, []);
});
