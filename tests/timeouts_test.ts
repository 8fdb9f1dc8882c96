// The time limits, `handshakeTimeout` and `closeTimeout`: their documented
// defaults, and each one met just below and just above, on the server
// (`serve()`) and on the client (`connect()`), over 127.0.0.1. The peer
// under test is a bare TCP socket writing hand-built bytes on a schedule.
//
// Timings: each limit is T = 600 ms here; "below" finishes at about T/2,
// "above" at about 3T/2 or never. Assertions on elapsed time allow the
// late side a wide margin, since the runner may share two busy cores.
import assert from "node:assert/strict";
import { connect, HandshakeError } from "../client.ts";
import { DEFAULT_LIMITS, resolveLimits } from "../limits.ts";
import { serve } from "../server.ts";
import type { CloseInfo } from "../socket.ts";
import {
  clientFrame,
  closePayload,
  delay,
  handshakeRequest,
  hasHead,
  readUntil,
  withTimeout,
} from "./_drivers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const T = 600;
const BELOW = T / 2;
const ABOVE = (T * 3) / 2;
// How late a timer may fire on a loaded runner before we call it wrong.
const SLACK = 1000;

function assertAround(elapsed: number, at: number, what: string): void {
  assert.ok(elapsed >= at - 15 && elapsed < at + SLACK, `${what} after ${elapsed} ms, not ~${at}`);
}

/** Write `bytes` in pieces spread evenly over `ms`. */
async function dribble(conn: Deno.Conn, bytes: Uint8Array, ms: number, pieces: number) {
  for (let i = 0; i < pieces; i++) {
    const from = Math.floor((bytes.length * i) / pieces);
    const to = Math.floor((bytes.length * (i + 1)) / pieces);
    await conn.write(bytes.subarray(from, to));
    if (i < pieces - 1) await delay(ms / (pieces - 1));
  }
}

/** The raw server side of the opening handshake: read the request, answer 101. */
async function acceptRaw(conn: Deno.Conn, answerAfter = 0): Promise<void> {
  const { bytes } = await readUntil(conn, hasHead);
  const key = /sec-websocket-key:\s*(\S+)/i.exec(decoder.decode(bytes))?.[1];
  assert.ok(key !== undefined, "the request carries a key");
  // RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  if (answerAfter > 0) await delay(answerAfter);
  await conn.write(
    encoder.encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    ),
  );
}

/** A listener whose connections are handed to `script`, one each, in order. */
function rawServer(...scripts: ((conn: Deno.Conn) => Promise<void>)[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const running = (async () => {
    const tasks: Promise<void>[] = [];
    for (const script of scripts) {
      const conn = await listener.accept();
      tasks.push(
        script(conn).finally(() => {
          try {
            conn.close();
          } catch {
            // closed by the script
          }
        }),
      );
    }
    await Promise.all(tasks);
  })();
  let disposed: Promise<void> | null = null;
  return {
    url: `ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    [Symbol.asyncDispose](): Promise<void> {
      disposed ??= running.finally(() => listener.close());
      return disposed;
    },
  };
}

Deno.test("the time limits are documented with their defaults in limits.ts: handshake 10 s, close 5 s", async () => {
  assert.equal(DEFAULT_LIMITS.handshakeTimeout, 10_000);
  assert.equal(DEFAULT_LIMITS.closeTimeout, 5_000);
  assert.deepEqual(
    [resolveLimits().handshakeTimeout, resolveLimits().closeTimeout],
    [10_000, 5_000],
  );
  // The one place they are documented says the same as the code.
  const source = await Deno.readTextFile(new URL("../limits.ts", import.meta.url));
  for (const name of ["handshakeTimeout", "closeTimeout"] as const) {
    const doc = new RegExp(`/\\*\\*([^*]|\\*(?!/))*?(\\d+) s\\.? \\*/\\s*${name}: number;`)
      .exec(source);
    assert.ok(doc !== null, `${name} has a doc comment that gives its default in seconds`);
    assert.equal(Number(doc[2]) * 1000, DEFAULT_LIMITS[name], `${name}'s documented default`);
  }
});

Deno.test("serve(): a request completed just below handshakeTimeout is served, one just above is cut at it", async () => {
  const targets: string[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { handshakeTimeout: T } },
    async (socket, request) => {
      targets.push(request.target);
      for await (const message of socket) await socket.send(message);
    },
  );
  const port = server.addr.port;
  const below = (async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = Date.now();
    await dribble(conn, handshakeRequest(port, "/below"), BELOW, 10);
    const sent = Date.now() - started;
    const { bytes } = await readUntil(conn, hasHead);
    await conn.write(clientFrame(0x8, closePayload(1000, "")));
    await readUntil(conn, () => false); // until the server closes TCP
    conn.close();
    return { sent, answer: decoder.decode(bytes) };
  })();
  const above = (async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = Date.now();
    const reading = readUntil(conn, () => false, T + SLACK * 2).then((result) => ({
      ...result,
      elapsed: Date.now() - started,
    }));
    // Each piece comes well within T of the last: only a deadline on the
    // whole request, not an idle timer, can cut this client.
    await dribble(conn, handshakeRequest(port, "/above"), ABOVE, 10).catch(() => {});
    const result = await reading;
    conn.close();
    return result;
  })();

  const [served, cut] = await Promise.all([below, above]);
  assert.ok(served.sent < T, `the request took ${served.sent} ms to send`);
  assert.match(served.answer, /^HTTP\/1\.1 101 /);
  assert.ok(cut.ended, "the server closed the connection");
  assert.equal(cut.bytes.length, 0, "without an answer");
  assertAround(cut.elapsed, T, "cut");
  assert.deepEqual(targets, ["/below"]);
});

Deno.test("connect(): a 101 just below handshakeTimeout opens, one just above fails with a HandshakeError at the limit", async () => {
  let sawEnd = false;
  await using server = rawServer(
    async (conn) => {
      await acceptRaw(conn, BELOW);
      // Then answer the client's close, and close TCP.
      await readUntil(conn, (bytes) => bytes.length >= 2);
      await conn.write(new Uint8Array([0x88, 0x02, 0x03, 0xe8]));
    },
    async (conn) => {
      const answering = acceptRaw(conn, ABOVE).catch(() => {});
      // The client gives up first: its end of the connection goes away.
      sawEnd = (await readUntil(conn, () => false, ABOVE + SLACK)).ended;
      await answering;
    },
  );
  let started = Date.now();
  const socket = await connect(server.url, { handshakeTimeout: T });
  assert.ok(Date.now() - started >= BELOW - 15);
  assert.equal(socket.state, "open");
  assert.equal((await withTimeout(socket.close(), 2000, "close")).code, 1000);

  started = Date.now();
  const error = await withTimeout(
    connect(server.url, { handshakeTimeout: T }).then(
      () => assert.fail("connected after the timeout"),
      (error: unknown) => error,
    ),
    T + SLACK,
    "connect",
  );
  assertAround(Date.now() - started, T, "connect() gave up");
  assert.ok(error instanceof HandshakeError, `${error}`);
  assert.match(error.message, new RegExp(`${T} ms`));
  await server[Symbol.asyncDispose]();
  assert.ok(sawEnd, "the abandoned connection was closed");
});

Deno.test("serve(): a close answered just below closeTimeout ends cleanly, one unanswered ends with 1006 at the limit", async () => {
  const ended = new Map<string, { info: CloseInfo; elapsed: number }>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout: T } },
    async (socket, request) => {
      socket.accept();
      const started = Date.now();
      const info = await socket.close(4000, "server done");
      ended.set(request.target, { info, elapsed: Date.now() - started });
    },
  );
  const port = server.addr.port;
  const peer = async (target: string, answerAfter: number | null) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(handshakeRequest(port, target));
    const { bytes } = await readUntil(conn, (bytes) => bytes.includes(0x88));
    assert.ok(bytes.includes(0x88), "the server's close frame came");
    if (answerAfter !== null) {
      await delay(answerAfter);
      await conn.write(clientFrame(0x8, closePayload(4000, "client done")));
    }
    const { ended } = await readUntil(conn, () => false, T + SLACK * 2);
    conn.close();
    return ended;
  };
  const [answered, silent] = await Promise.all([peer("/below", BELOW), peer("/above", null)]);
  assert.ok(answered && silent, "the server closed TCP on both");
  // `closed` settles just after TCP closes: give it a moment.
  for (let i = 0; i < 100 && ended.size < 2; i++) await delay(10);

  const below = ended.get("/below")!;
  assert.deepEqual(below.info, { code: 4000, reason: "client done" });
  assertAround(below.elapsed, BELOW, "the clean close");
  const above = ended.get("/above")!;
  assert.deepEqual(above.info, { code: 1006, reason: "" });
  assertAround(above.elapsed, T, "the dropped close");
});

Deno.test("serve(): a peer that pings on after our close is answered, and dropped at closeTimeout", async () => {
  // RFC 6455 §5.5.3 has us answer its pings until its close; each pong
  // written used to restart the timer, and the socket stayed open for as
  // long as the peer pinged.
  const ended = Promise.withResolvers<{ info: CloseInfo; elapsed: number }>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, limits: { closeTimeout: T } },
    async (socket) => {
      socket.accept();
      const started = Date.now();
      const info = await socket.close(4000, "server done");
      ended.resolve({ info, elapsed: Date.now() - started });
    },
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(handshakeRequest(server.addr.port));
    await readUntil(conn, (bytes) => bytes.includes(0x88));
    let pongs = 0;
    const deadline = Date.now() + 4 * T;
    for (let ping = 0; Date.now() < deadline && ping < 100; ping++) {
      const written = await conn.write(clientFrame(0x9, new Uint8Array([ping]))).catch(() => null);
      if (written === null) break;
      const { bytes, ended } = await readUntil(conn, (bytes) => bytes[0] === 0x8a, T / 6);
      if (bytes[0] === 0x8a) pongs++;
      if (ended) break;
      await delay(T / 6);
    }
    assert.ok(pongs > 0, "the pings after our close were answered");
  } finally {
    conn.close();
  }
  const { info, elapsed } = await withTimeout(ended.promise, SLACK, "close()");
  assert.deepEqual(info, { code: 1006, reason: "" });
  assertAround(elapsed, T, "the dropped close");
});

Deno.test("connect(): closeTimeout bounds the wait for the server's close frame and for its TCP close", async () => {
  const closeFrame = new Uint8Array([0x88, 0x02, 0x03, 0xe8]);
  // One server per case, so that connections cannot swap scripts.
  const cases = {
    // Answers the close and closes TCP just below the limit.
    below: async (conn: Deno.Conn) => {
      await acceptRaw(conn);
      await readUntil(conn, (bytes) => bytes.length >= 2);
      await delay(BELOW);
      await conn.write(closeFrame);
    },
    // Answers the close at once but keeps TCP open past the limit.
    lingering: async (conn: Deno.Conn) => {
      await acceptRaw(conn);
      await readUntil(conn, (bytes) => bytes.length >= 2);
      await conn.write(closeFrame);
      await readUntil(conn, () => false, ABOVE + SLACK);
    },
    // Never answers the close.
    silent: async (conn: Deno.Conn) => {
      await acceptRaw(conn);
      await readUntil(conn, () => false, ABOVE + SLACK);
    },
  };
  const results = await Promise.all(
    Object.entries(cases).map(async ([name, script]) => {
      await using server = rawServer(script);
      const socket = await connect(server.url, { limits: { closeTimeout: T } });
      const started = Date.now();
      const info = await withTimeout(socket.close(1000), T + SLACK * 2, name);
      return { name, info, elapsed: Date.now() - started };
    }),
  );
  const [below, lingering, silent] = results;
  assert.deepEqual(below!.info, { code: 1000, reason: "" });
  assertAround(below!.elapsed, BELOW, "closed below the limit");
  // The closing handshake was complete: only TCP was late, so the code stands.
  assert.deepEqual(lingering!.info, { code: 1000, reason: "" });
  assertAround(lingering!.elapsed, T, "TCP dropped");
  assert.deepEqual(silent!.info, { code: 1006, reason: "" });
  assertAround(silent!.elapsed, T, "the unanswered close dropped");
});

Deno.test("serve(): a peer that reads a backlog slowly is not dropped as silent by the heartbeat", async () => {
  // The ping waits behind what was queued before it, and the wait for its
  // pong counted from its queueing: a client taking one message every
  // 40 ms was dropped with 1006 "Ping timeout", half its messages lost.
  const serverClosed = Promise.withResolvers<CloseInfo>();
  const count = 96; // 24 MiB queued at once
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 200, pongTimeout: 1000 },
    async (socket) => {
      socket.accept();
      const message = new Uint8Array(256 * 1024);
      await Promise.all(Array.from({ length: count }, () => socket.send(message).catch(() => {})));
      serverClosed.resolve(await socket.closed);
    },
  );
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  let taken = 0;
  const deadline = Date.now() + 15_000;
  try {
    while (taken < count && Date.now() < deadline) {
      await client.receive({ timeout: 3000 });
      taken++;
      await delay(40);
    }
  } catch {
    // dropped: the count says how far it got
  }
  await client.close().catch(() => {});
  assert.equal(taken, count);
  assert.equal((await withTimeout(serverClosed.promise, 5000, "the server's close")).code, 1000);
});
