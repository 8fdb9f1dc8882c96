// Load on the raw TCP driver over 127.0.0.1: a thousand connections held
// open and talking, a thousand that vanish at every stage of a connection's
// life, and the server's memory after them. Clients are `connect()` when
// they behave, and bare `Deno.connect` sockets writing hand-built bytes
// when they must stop at a chosen byte.
import assert from "node:assert/strict";
import { connect } from "../client.ts";
import { serve } from "../server.ts";
import type { CloseInfo, Socket } from "../socket.ts";
import type { SoakReport } from "../tools/soak.ts";
import {
  clientFrame,
  closePayload,
  handshakeRequest,
  openDescriptors,
  rawOpen,
  readUntil,
  waitFor,
  withTimeout,
} from "./_drivers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const WANTED = 1000;

// How many connections this process may hold: each costs two descriptors
// here (the client's and the server's), and the runner needs some spare.
async function connectionBudget(): Promise<number> {
  const output = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
  const text = decoder.decode(output.stdout).trim();
  const limit = text === "unlimited" ? Infinity : Number(text);
  const budget = Number.isFinite(limit) ? Math.floor((limit - 128) / 2) : WANTED;
  if (budget < WANTED) {
    // deno-lint-ignore no-console
    console.warn(
      `!!! ulimit -n is ${text}: the load tests run ${budget} connections instead of ${WANTED}`,
    );
  }
  return Math.max(10, Math.min(WANTED, budget));
}

// Run `count` jobs with at most `width` at once, so that a burst of
// connects never overflows the listen backlog (which would only measure
// the kernel's SYN retries).
async function inBatches<T>(count: number, width: number, job: (i: number) => Promise<T>) {
  const results: T[] = [];
  for (let done = 0; done < count; done += width) {
    const batch = Array.from({ length: Math.min(width, count - done) }, (_, i) => job(done + i));
    results.push(...await Promise.all(batch));
  }
  return results;
}

// ---- The tests ----

Deno.test("one serve() holds 1,000 concurrent connections exchanging messages, and closes them all with 1000", async () => {
  const count = await connectionBudget();
  let open = 0;
  const ended: Promise<CloseInfo>[] = [];
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    open++;
    ended.push(socket.closed);
    for await (const message of socket) await socket.send(message);
    open--;
  });
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const sockets: Socket[] = await withTimeout(
    inBatches(count, 100, () => connect(url)),
    15_000,
    "connecting",
  );
  // Every connection is open on both ends at the same time.
  assert.equal(open, count);
  assert.ok(sockets.every((socket) => socket.state === "open"));

  // Each sends text and binary, and waits for each echo: all at once.
  const exchanged = await withTimeout(
    Promise.all(sockets.map(async (socket, index) => {
      let n = 0;
      for (let i = 0; i < 3; i++) {
        const text = `client ${index}, message ${i}`;
        await socket.send(text);
        assert.equal(await socket.receive({ timeout: 5000 }), text);
        const binary = new Uint8Array([index & 0xff, index >> 8, i]);
        await socket.send(binary);
        assert.deepEqual(await socket.receive({ timeout: 5000 }), binary);
        n += 2;
      }
      return n;
    })),
    15_000,
    "exchanging",
  );
  assert.equal(exchanged.reduce((a, b) => a + b, 0), count * 6);

  const clientEnds = await withTimeout(
    Promise.all(sockets.map((socket) => socket.close(1000, "done"))),
    10_000,
    "closing",
  );
  assert.ok(clientEnds.every((info) => info.code === 1000 && info.reason === "done"));
  const serverEnds = await withTimeout(Promise.all(ended), 5000, "server sockets closed");
  assert.equal(serverEnds.length, count);
  assert.ok(serverEnds.every((info) => info.code === 1000 && info.reason === "done"));
  assert.ok(await waitFor(() => open === 0, 2000), `${open} handlers still running`);
});

Deno.test("1,000 clients that vanish mid-frame, mid-handshake and mid-close end right while others are served", async () => {
  const count = await connectionBudget();
  // What each server socket saw, by the path its client asked for.
  const seen = new Map<string, { messages: unknown[]; closed: CloseInfo }>();
  let handlers = 0;
  const errors: unknown[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    // Long enough that a half-sent request is released by its end of
    // stream, not by this timer, within the test.
    limits: { handshakeTimeout: 30_000, closeTimeout: 30_000 },
    onError: (error) => errors.push(error),
  }, async (socket, request) => {
    handlers++;
    const messages: unknown[] = [];
    try {
      for await (const message of socket) {
        messages.push(message);
        if (message === "close please") socket.close(4000, "asked").catch(() => {});
        else await socket.send(message);
      }
    } catch {
      // a send to a peer that vanished; `closed` tells how it ended
    }
    seen.set(request.target, { messages, closed: await socket.closed });
    handlers--;
  });
  const port = server.addr.port;
  const before = openDescriptors();

  // Well-behaved clients keep talking through the whole storm.
  const storm = Promise.withResolvers<void>();
  const steadySockets = await Promise.all(
    Array.from({ length: 10 }, (_, index) => connect(`ws://127.0.0.1:${port}/steady/${index}`)),
  );
  const steady = Promise.all(steadySockets.map(async (socket, index) => {
    let echoes = 0;
    const deadline = Date.now() + 20_000;
    let calm = false;
    storm.promise.then(() => calm = true);
    while (!calm && Date.now() < deadline && echoes < 100_000) {
      await socket.send(`steady ${index}: ${echoes}`);
      assert.equal(await socket.receive({ timeout: 5000 }), `steady ${index}: ${echoes}`);
      echoes++;
    }
    const info = await socket.close(1000);
    return { echoes, info };
  }));
  // Awaited below; if the test fails first, that failure is what it
  // reports, not this promise's rejection as an uncaught error.
  steady.catch(() => {});

  // Six ways to vanish, each closing TCP without a closing handshake.
  const kinds = {
    // Half the request: the handler never runs.
    async "half-request"(target: string) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const request = handshakeRequest(port, target);
      await conn.write(request.subarray(0, request.length >> 1));
      conn.close();
    },
    // The whole request, gone before the 101.
    async "whole-request"(target: string) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(handshakeRequest(port, target));
      conn.close();
    },
    // One message echoed, then half of the next frame.
    async "mid-frame"(target: string) {
      const conn = await rawOpen(port, target, { nothingAfter: true });
      await conn.write(clientFrame(0x1, encoder.encode("whole")));
      await readUntil(conn, (bytes) => bytes.length >= 7);
      const next = clientFrame(0x1, encoder.encode("never finished"));
      await conn.write(next.subarray(0, 9));
      conn.close();
    },
    // The server's close arrives and is never answered.
    async "server-close-unanswered"(target: string) {
      const conn = await rawOpen(port, target, { nothingAfter: true });
      await conn.write(clientFrame(0x1, encoder.encode("close please")));
      const { bytes: close } = await readUntil(conn, (bytes) => bytes.length >= 2);
      assert.equal(close[0], 0x88, "a close frame");
      conn.close();
    },
    // The client's close, and gone before the server's answer.
    async "client-close-then-gone"(target: string) {
      const conn = await rawOpen(port, target, { nothingAfter: true });
      await conn.write(clientFrame(0x8, closePayload(4001, "bye")));
      conn.close();
    },
    // Half a close frame.
    async "half-close-frame"(target: string) {
      const conn = await rawOpen(port, target, { nothingAfter: true });
      await conn.write(clientFrame(0x8, closePayload(1000, "half")).subarray(0, 5));
      conn.close();
    },
  };
  type Kind = keyof typeof kinds;
  const names = Object.keys(kinds) as Kind[];
  const targetOf = (i: number): string => `/${names[i % names.length]!}/${i}`;
  await withTimeout(
    inBatches(count, 100, (i) => kinds[names[i % names.length]!](targetOf(i))),
    20_000,
    "vanishing",
  );
  storm.resolve();

  // What each server socket should have seen.
  const expected = (kind: Kind): { messages: unknown[]; closed: CloseInfo } | null => {
    switch (kind) {
      case "half-request":
        return null;
      case "whole-request":
      case "half-close-frame":
        return { messages: [], closed: { code: 1006, reason: "" } };
      case "mid-frame":
        return { messages: ["whole"], closed: { code: 1006, reason: "" } };
      case "server-close-unanswered":
        return { messages: ["close please"], closed: { code: 1006, reason: "" } };
      case "client-close-then-gone":
        return { messages: [], closed: { code: 4001, reason: "bye" } };
    }
  };
  const reaching = Array.from({ length: count }, (_, i) => i)
    .filter((i) => expected(names[i % names.length]!) !== null).length;
  assert.ok(
    await waitFor(() => seen.size >= reaching, 10_000),
    `${seen.size} of ${reaching} server sockets ended`,
  );
  for (let i = 0; i < count; i++) {
    const target = targetOf(i);
    assert.deepEqual(seen.get(target) ?? null, expected(names[i % names.length]!), target);
  }

  const steadyResults = await withTimeout(steady, 10_000, "steady clients");
  for (const { echoes, info } of steadyResults) {
    assert.ok(echoes > 0, "a steady client was served during the storm");
    assert.equal(info.code, 1000);
  }
  // And the server still takes new connections.
  const late = await connect(`ws://127.0.0.1:${port}/late`);
  await late.send("still here");
  assert.equal(await late.receive({ timeout: 2000 }), "still here");
  await late.close();

  assert.ok(await waitFor(() => handlers === 0, 5000), `${handlers} handlers still running`);
  assert.deepEqual(errors, []);
  if (before !== null) {
    // Half-sent requests included: every socket is released on its end of
    // stream, long before the 30 s handshake timeout.
    const released = await waitFor(() => openDescriptors()! <= before, 5000);
    assert.ok(released, `${openDescriptors()! - before} descriptors more than before`);
  }
});

Deno.test("after 1,000 connections and 300 vanished ones have closed, the server's heap is back near its baseline", async () => {
  const count = await connectionBudget();
  // A child process, so that V8 can be asked to collect (`--expose-gc`)
  // and the figures are of that server alone; tools/soak.ts runs the
  // clients in a grandchild and reports the heap at each stage.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("../tools/soak.ts", import.meta.url).pathname,
      "--connections",
      String(count),
      "--messages",
      "3",
      "--vanish",
      "300",
      "--duration",
      "0",
      "--json",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = decoder.decode(output.stderr);
  assert.ok(output.success, `soak failed: ${decoder.decode(output.stdout)}\n${stderr}`);
  const report = JSON.parse(decoder.decode(output.stdout)) as SoakReport;
  assert.deepEqual(report.errors, {});
  // The soak scales itself down further if the descriptor limit asks it to.
  const held = report.options.connections;
  assert.ok(held >= Math.min(count, 100), `only ${held} connections`);
  assert.equal(report.connectionsHeld, held);
  assert.equal(report.messagesEchoed, held * 3);
  assert.deepEqual(report.vanished, { "mid-handshake": 100, "mid-frame": 100, "mid-close": 100 });
  assert.deepEqual(report.serverCloses, { "1000": held, "1006": 200 });
  assert.ok(report.heap.forcedGc);

  const { baseline, idle, after } = report.heap;
  const idleCost = idle - baseline;
  const left = after - baseline;
  const mib = (bytes: number): string => `${(bytes / (1 << 20)).toFixed(2)} MiB`;
  // Open connections cost the server real memory (a read buffer and the
  // engine each)...
  assert.ok(idleCost > held * 1024, `${held} idle connections held only ${mib(idleCost)}`);
  // ...and nearly all of it comes back once they are gone: a leak of even
  // 3 KiB per connection would show.
  assert.ok(
    left < 3 << 20 && left < idleCost / 4,
    `heap ${mib(after)} after closing, baseline ${mib(baseline)}, ${mib(idleCost)} while idle`,
  );
});
