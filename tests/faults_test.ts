// Hostile and broken peers against the raw TCP driver over 127.0.0.1:
// slowloris handshakes, readers that stop reading, peers that vanish while
// the server writes or while its handler decides, and a shutdown in the
// middle of all of it. Misbehaving clients are bare `Deno.connect` sockets
// writing hand-built bytes; well-behaved ones are `connect()`.
import assert from "node:assert/strict";
import { connect } from "../client.ts";
import { serve } from "../server.ts";
import { type CloseInfo, ConnectionClosedError, type ServerSocket } from "../socket.ts";
import {
  clientFrame,
  delay,
  handshakeRequest,
  hasHead,
  rawOpen,
  readUntil,
  waitFor,
  withTimeout,
} from "./_drivers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// How late a timer may fire on a loaded runner before we call it wrong.
const SLACK = 1000;

// Keeps a few connect() clients echoing until `stop` resolves, to show the
// server goes on serving others; returns how many round trips each made.
function steadyClients(port: number, count: number, stop: Promise<void>): Promise<number[]> {
  let stopped = false;
  stop.then(() => stopped = true);
  const all = Promise.all(Array.from({ length: count }, async (_, index) => {
    const socket = await connect(`ws://127.0.0.1:${port}/steady/${index}`);
    let echoes = 0;
    const deadline = Date.now() + 15_000;
    while (!stopped && Date.now() < deadline && echoes < 100_000) {
      const message = `steady ${index}: ${echoes}`;
      await socket.send(message);
      assert.equal(await socket.receive({ timeout: 3000 }), message);
      echoes++;
    }
    assert.equal((await socket.close(1000)).code, 1000);
    return echoes;
  }));
  // Awaited by the caller; if the test fails first, the failure is what
  // it reports, not this promise's rejection as an uncaught error.
  all.catch(() => {});
  return all;
}

async function echo(socket: ServerSocket): Promise<void> {
  try {
    for await (const message of socket) await socket.send(message);
  } catch (error) {
    // A peer that vanished before its echo: `closed` tells how it ended.
    if (!(error instanceof ConnectionClosedError)) throw error;
  }
}

Deno.test("slowloris: handshakes dribbled slower than handshakeTimeout are cut at it, faster ones are served", async () => {
  // One byte every 100 ms stands in for one a second: each byte comes well
  // within the limit, so only a deadline on the whole request cuts it.
  const limit = 500;
  const targets: string[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { handshakeTimeout: limit } },
    (socket, request) => {
      targets.push(request.target);
      return echo(socket);
    },
  );
  const port = server.addr.port;
  const stop = Promise.withResolvers<void>();
  const steady = steadyClients(port, 5, stop.promise);

  // 40 slow dribblers and 10 that never send a byte.
  const slow = Array.from({ length: 50 }, async (_, index) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = Date.now();
    const reading = readUntil(conn, () => false, limit + SLACK * 2);
    let cut = false;
    reading.then(() => cut = true);
    const request = handshakeRequest(port, `/slow/${index}`);
    let written = 0;
    if (index < 40) {
      while (!cut && written < request.length) {
        try {
          written += await conn.write(request.subarray(written, written + 1));
        } catch {
          break; // the server is gone: a reset
        }
        await delay(100);
      }
    }
    const { bytes, ended } = await reading;
    const elapsed = Date.now() - started;
    conn.close();
    return { bytes, ended, elapsed, written, length: request.length };
  });
  // 10 fast dribblers: the request in 10-byte pieces, 5 ms apart.
  const fast = Array.from({ length: 10 }, async (_, index) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = Date.now();
    const request = handshakeRequest(port, `/fast/${index}`);
    for (let at = 0; at < request.length; at += 10) {
      await conn.write(request.subarray(at, at + 10));
      await delay(5);
    }
    const took = Date.now() - started;
    const { bytes } = await readUntil(conn, hasHead);
    await conn.write(clientFrame(0x1, encoder.encode("made it")));
    const { bytes: reply } = await readUntil(conn, (bytes) => bytes.length >= 9);
    conn.close();
    return { took, head: decoder.decode(bytes), reply: decoder.decode(reply.subarray(2)) };
  });

  const [fastResults, slowResults] = await Promise.all([Promise.all(fast), Promise.all(slow)]);
  for (const result of fastResults) {
    assert.ok(result.took < limit, `a fast dribbler took ${result.took} ms`);
    assert.match(result.head, /^HTTP\/1\.1 101 /);
    assert.equal(result.reply, "made it");
  }
  for (const result of slowResults) {
    assert.ok(result.ended, "the server dropped the slow client");
    assert.equal(result.bytes.length, 0, "without an answer");
    assert.ok(
      result.elapsed >= limit - 15 && result.elapsed < limit + SLACK,
      `cut after ${result.elapsed} ms`,
    );
    assert.ok(result.written < result.length / 2, `${result.written} bytes got in`);
  }
  stop.resolve();
  for (const echoes of await steady) assert.ok(echoes > 0);
  assert.ok(targets.every((target) => !target.startsWith("/slow/")));
  assert.equal(targets.filter((target) => target.startsWith("/fast/")).length, 10);
});

Deno.test("readers that stop reading make the server's sends wait: at most one frame queued per socket", async () => {
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  // One frame (64 KiB and its header), plus the 101 response that may
  // still be queued beside the first one.
  const frameBound = chunk.length + 14 + 256;
  const stalled = 20;
  interface Stall {
    sentBytes: number;
    maxBuffered: number;
    pending: boolean;
    rejection: unknown;
    closed: CloseInfo;
    bufferedAfter: number;
  }
  const stalls = new Map<string, Stall>();
  const blocked = new Set<string>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket, request) => {
    if (!request.target.startsWith("/stalled/")) return echo(socket);
    socket.accept();
    const stall: Stall = {
      sentBytes: 0,
      maxBuffered: 0,
      pending: false,
      rejection: null,
      closed: { code: 0, reason: "" },
      bufferedAfter: -1,
    };
    const deadline = Date.now() + 8000;
    // As fast as awaiting send() allows; stop once one stays pending.
    for (let i = 0; i < 2048 && Date.now() < deadline; i++) {
      const sending = socket.send(chunk);
      stall.maxBuffered = Math.max(stall.maxBuffered, socket.bufferedAmount);
      const done = await Promise.race([
        sending.then(() => true, () => true),
        delay(300).then(() => false),
      ]);
      if (!done) {
        stall.pending = true;
        blocked.add(request.target);
        stall.rejection = await sending.then(() => null, (error: unknown) => error);
        break;
      }
      stall.sentBytes += chunk.length;
    }
    stall.closed = await socket.closed;
    stall.bufferedAfter = socket.bufferedAmount;
    stalls.set(request.target, stall);
  });
  const port = server.addr.port;
  const before = Deno.memoryUsage();

  // They open, then never read again.
  const conns = await Promise.all(
    Array.from({ length: stalled }, (_, i) => rawOpen(port, `/stalled/${i}`)),
  );
  assert.ok(await waitFor(() => blocked.size === stalled, 10_000), `${blocked.size} blocked`);
  // Blocked, the server still serves everyone else.
  const stop = Promise.withResolvers<void>();
  const steady = steadyClients(port, 3, stop.promise);
  await delay(300);
  stop.resolve();
  for (const echoes of await withTimeout(steady, 5000, "steady")) assert.ok(echoes > 0);
  const during = Deno.memoryUsage();
  // Coarse, since the collector has not run: frames already written are
  // garbage. Unbounded buffering would be gigabytes here, not megabytes.
  const growth = during.heapUsed + during.external - before.heapUsed - before.external;
  assert.ok(growth < 256 << 20, `the heap grew by ${growth >> 20} MiB`);

  // Now they vanish: each pending send fails, and each socket ends with 1006.
  for (const conn of conns) conn.close();
  assert.ok(await waitFor(() => stalls.size === stalled, 5000), `${stalls.size} ended`);
  for (const [target, stall] of stalls) {
    assert.ok(stall.pending, `${target}: every send resolved`);
    assert.ok(stall.maxBuffered <= frameBound, `${target}: ${stall.maxBuffered} bytes queued`);
    // What got out sits in the kernel's socket buffers; bounded, too.
    assert.ok(stall.sentBytes < 32 << 20, `${target}: ${stall.sentBytes} bytes written`);
    assert.ok(stall.rejection instanceof ConnectionClosedError, `${target}: ${stall.rejection}`);
    assert.deepEqual(stall.closed, { code: 1006, reason: "" });
    assert.equal(stall.bufferedAfter, 0);
  }
});

Deno.test("close() behind a write stuck on a reader that stopped reading ends at closeTimeout with 1006", async () => {
  const closeTimeout = 400;
  const result = Promise.withResolvers<{ info: CloseInfo; elapsed: number; send: unknown }>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout } },
    async (socket) => {
      socket.accept();
      const chunk = new Uint8Array(256 * 1024);
      let sending: Promise<void> = Promise.resolve();
      for (let i = 0; i < 1024; i++) {
        sending = socket.send(chunk);
        const done = await Promise.race([sending.then(() => true), delay(300).then(() => false)]);
        if (!done) break;
      }
      // The close frame queues behind the stuck write and can never go out.
      const started = Date.now();
      const info = await socket.close(1000, "bye");
      const send = await sending.then(() => null, (error: unknown) => error);
      result.resolve({ info, elapsed: Date.now() - started, send });
    },
  );
  const conn = await rawOpen(server.addr.port, "/");
  const { info, elapsed, send } = await withTimeout(result.promise, 10_000, "close");
  conn.close();
  assert.deepEqual(info, { code: 1006, reason: "" });
  assert.ok(elapsed >= closeTimeout - 15 && elapsed < closeTimeout + SLACK, `${elapsed} ms`);
  assert.ok(send instanceof ConnectionClosedError);
});

Deno.test("a client gone while the handler decides: a late accept() or reject() is harmless and the socket ends with 1006", async () => {
  const outcomes = new Map<string, { threw: unknown; closed: CloseInfo; send: unknown }>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket, request) => {
    await delay(150); // an authorisation check, say
    let threw: unknown = null;
    try {
      if (request.target === "/accept") socket.accept();
      else socket.reject({ status: 401, body: "who are you" });
    } catch (error) {
      threw = error;
    }
    const send = await socket.send("anyone?").then(() => null, (error: unknown) => error);
    outcomes.set(request.target, { threw, closed: await socket.closed, send });
  });
  const port = server.addr.port;
  for (const target of ["/accept", "/reject"]) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(handshakeRequest(port, target));
    conn.close();
  }
  assert.ok(await waitFor(() => outcomes.size === 2, 3000), `${outcomes.size} of 2 ended`);
  for (const [target, outcome] of outcomes) {
    assert.equal(outcome.threw, null, target);
    assert.deepEqual(outcome.closed, { code: 1006, reason: "" }, target);
    // The kernel may still take the bytes of a send to a peer that just
    // left (its FIN only closes its half); if the send fails, it is with
    // ConnectionClosedError.
    assert.ok(
      outcome.send === null || outcome.send instanceof ConnectionClosedError,
      `${target}: ${outcome.send}`,
    );
  }
});

Deno.test("shutdown() amid open, half-handshaken and unresponsive sockets ends them all within closeTimeout", async () => {
  const closeTimeout = 500;
  const ended = new Map<string, CloseInfo>();
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    limits: { closeTimeout, handshakeTimeout: 30_000 },
  }, async (socket, request) => {
    await echo(socket);
    ended.set(request.target, await socket.closed);
  });
  const port = server.addr.port;
  try {
    const polite = await Promise.all(
      Array.from({ length: 30 }, (_, i) => connect(`ws://127.0.0.1:${port}/polite/${i}`)),
    );
    // Open, but they will never read or answer the server's close.
    const deaf = await Promise.all(
      Array.from({ length: 30 }, (_, i) => rawOpen(port, `/deaf/${i}`)),
    );
    // Half a request each, then nothing: 30 s from their handshake timeout.
    const half = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const request = handshakeRequest(port, `/half/${i}`);
      await conn.write(request.subarray(0, 40));
      return conn;
    }));
    await delay(50); // so the server has read the half requests

    const started = Date.now();
    const halfEnds = half.map((conn) =>
      readUntil(conn, () => false, SLACK).then((result) => ({
        ...result,
        elapsed: Date.now() - started,
      }))
    );
    await withTimeout(server.shutdown(), closeTimeout + SLACK * 2, "shutdown");
    const took = Date.now() - started;
    // The deaf ones hold it until closeTimeout, and no longer.
    assert.ok(took >= closeTimeout - 15 && took < closeTimeout + SLACK, `shutdown took ${took} ms`);
    await server.finished;

    for (const socket of polite) {
      assert.deepEqual(await socket.closed, { code: 1001, reason: "Server shutting down" });
    }
    for (const result of await Promise.all(halfEnds)) {
      assert.ok(result.ended && result.bytes.length === 0, "a half request dropped unanswered");
      assert.ok(result.elapsed < closeTimeout, `a half request dropped after ${result.elapsed} ms`);
    }
    for (const conn of [...deaf, ...half]) conn.close();
    for (let i = 0; i < 30; i++) {
      assert.deepEqual(ended.get(`/polite/${i}`), { code: 1001, reason: "Server shutting down" });
      assert.deepEqual(ended.get(`/deaf/${i}`), { code: 1006, reason: "" });
    }
    assert.equal(ended.size, 60);
  } finally {
    await server.shutdown();
  }
});

// When the peer starts the closing handshake while a write is stuck (it
// stopped reading), the close reply queues behind that write. Without a
// timer on that flush (`closeTimeout` was once armed only for closes we
// start, and heartbeats stop once closing), the socket, its descriptor and
// its handler were held until the peer went away, which a hostile peer
// never does.
Deno.test("a close from a peer that stopped reading ends the server socket by closeTimeout", async () => {
  const closeTimeout = 300;
  const stuck = Promise.withResolvers<void>();
  const ended = Promise.withResolvers<{ info: CloseInfo; at: number }>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout } },
    async (socket) => {
      socket.accept();
      const chunk = new Uint8Array(256 * 1024);
      for (let i = 0; i < 1024; i++) {
        const sending = socket.send(chunk);
        const done = await Promise.race([
          sending.then(() => true, () => true),
          delay(300).then(() => false),
        ]);
        if (!done) break;
      }
      stuck.resolve();
      const info = await socket.closed;
      ended.resolve({ info, at: Date.now() });
    },
  );
  const conn = await rawOpen(server.addr.port, "/");
  try {
    await withTimeout(stuck.promise, 10_000, "a stuck send");
    // The peer, which never reads, sends its close (1000) and keeps TCP open.
    await conn.write(clientFrame(0x8, new Uint8Array([0x03, 0xe8])));
    const sent = Date.now();
    const result = await withTimeout(ended.promise, closeTimeout + SLACK * 2, "closed")
      .catch((error: Error) => error);
    assert.ok(!(result instanceof Error), `the server socket was still held: ${result}`);
    assert.deepEqual(result.info, { code: 1000, reason: "" });
    assert.ok(result.at - sent < closeTimeout + SLACK, `ended ${result.at - sent} ms later`);
  } finally {
    conn.close(); // releases the server socket either way
    await withTimeout(ended.promise, 5000, "closed after the peer left");
  }
});

// The same hazard as above for reject(): it waits for its response to
// flush, so without a timer a refusal with a body larger than the socket
// buffers, sent to a peer that never reads, would hold the socket for as
// long as the peer likes.
Deno.test("a refusal that a peer never reads ends the server socket by closeTimeout", async () => {
  const closeTimeout = 300;
  const ended = Promise.withResolvers<{ info: CloseInfo; at: number }>();
  let rejectedAt = 0;
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout } },
    (socket) => {
      socket.closed.then((info) => ended.resolve({ info, at: Date.now() }));
      rejectedAt = Date.now();
      socket.reject({ status: 403, body: new Uint8Array(16 << 20) });
    },
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(handshakeRequest(server.addr.port, "/")); // and never read
    const result = await withTimeout(ended.promise, closeTimeout + SLACK * 2, "closed")
      .catch((error: Error) => error);
    assert.ok(!(result instanceof Error), `the server socket was still held: ${result}`);
    assert.equal(result.info.code, 1006);
    assert.ok(
      result.at - rejectedAt < closeTimeout + SLACK,
      `ended ${result.at - rejectedAt} ms later`,
    );
  } finally {
    conn.close();
    await withTimeout(ended.promise, 5000, "closed after the peer left");
  }
});

// A connection that completes after the abort must be closed exactly once:
// client.ts's raceAbort() once closed it in its abort handler and again in
// its fulfilment handler, and the second close() threw BadResource inside a
// promise callback, an unhandled rejection that kills a program. The same
// path runs when `handshakeTimeout` expires while TCP is still connecting.
Deno.test("a connect() aborted while TCP is still connecting rejects without an uncaught error", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  const uncaught: unknown[] = [];
  const onUnhandled = (event: PromiseRejectionEvent): void => {
    event.preventDefault();
    uncaught.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const controller = new AbortController();
    const attempt = connect(`ws://127.0.0.1:${server.addr.port}/`, {
      signal: controller.signal,
    });
    controller.abort(); // while Deno.connect() is in flight
    const error = await attempt.then(() => null, (error: unknown) => error);
    assert.ok(error instanceof DOMException && error.name === "AbortError", `${error}`);
    await delay(100); // the connection completes, and is closed
    assert.deepEqual(uncaught.map(String), []);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});

Deno.test("a message in progress holds about its size however the peer chops it", async () => {
  // Each 8 KiB piece landed at the front of a fresh 64 KiB frame buffer,
  // the 1-byte read after it made the driver drop that buffer, and the
  // piece's view pinned all of it: 6.7 times the message (431 MiB for one
  // of 64 MiB). Measured in a process of its own, after collecting garbage.
  const total = 2 * 1024 * 1024;
  const held = async (pieces: number[]) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        new URL("./_held_by_pieces.ts", import.meta.url).pathname,
        String(total),
        pieces.join(","),
      ],
      stdin: "null",
    }).output();
    assert.ok(output.success, decoder.decode(output.stderr));
    const report = JSON.parse(decoder.decode(output.stdout)) as {
      sent: number;
      held: number;
      length: number;
    };
    assert.equal(report.length, total, "the message came whole");
    return report.held / report.sent;
  };
  const even = await held([65536]);
  const chopped = await held([8192, 1, 2049]);
  assert.ok(even < 2, `64 KiB pieces: ${even.toFixed(2)} times the bytes received`);
  assert.ok(
    chopped < 2,
    `8 KiB, 1 B, 2 KiB pieces: ${chopped.toFixed(2)} times the bytes received`,
  );
});
