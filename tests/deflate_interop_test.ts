// permessage-deflate (RFC 7692) against peers that others wrote: npm:ws as
// client and as server (defaults, no context takeover, small windows down to
// 8 bits, parameters imposed by either side), and Python's `websockets`
// (Debian's python3-websockets, run by /usr/bin/python3 on
// tests/websockets_peer.py) as client. Every connection echoes the same 20
// messages: 0 B, 1 B, 125 B, 64 KiB and 1 MiB, text and binary, compressible
// and (seeded) random, compared byte for byte after the round trip. Where the
// peer exposes its socket, the bytes on the wire show that both directions
// were really compressed.
//
// The Python tests are skipped, loudly, when /usr/bin/python3 has no
// websockets; under CI=true that is a failure.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
// deno-lint-ignore no-import-prefix -- deno.json has no "ws" mapping; tests pin it here
import { WebSocket as WsClient, WebSocketServer } from "npm:ws@8.18.3";
import { connect } from "../client.ts";
import type { PerMessageDeflateOptions } from "../permessage_deflate.ts";
import { serve } from "../server.ts";
import type { Handler, MessageData, Socket } from "../socket.ts";
import { withTimeout } from "./_drivers.ts";
import { firstDifference, prng, randomBytes } from "./_util.ts";

/** Every wait in this file is bounded by this many milliseconds. */
const WAIT = 15_000;

const encoder = new TextEncoder();

// ------------------------------------------------------------- the messages

interface Sample {
  name: string;
  data: MessageData;
  /** The payload's size in bytes (UTF-8 for text). */
  size: number;
}

const SIZES = [0, 1, 125, 64 * 1024, 1024 * 1024];

/** A phrase of 1- to 3-byte characters, repeated, then ASCII to fill: `size` bytes of UTF-8. */
function compressibleText(size: number): string {
  const phrase = "Größe — per-message deflate ✓ ";
  const length = encoder.encode(phrase).length;
  return phrase.repeat(Math.floor(size / length)) + "x".repeat(size % length);
}

/**
 * Random code points of every UTF-8 length (surrogates excluded), exactly
 * `size` bytes once encoded.
 */
function randomText(random: () => number, size: number): string {
  const parts: string[] = [];
  for (let left = size; left > 0;) {
    const bytes = 1 + Math.floor(random() * Math.min(4, left));
    let codePoint: number;
    if (bytes === 1) codePoint = Math.floor(random() * 0x80);
    else if (bytes === 2) codePoint = 0x80 + Math.floor(random() * (0x800 - 0x80));
    else if (bytes === 3) {
      do codePoint = 0x800 + Math.floor(random() * (0x10000 - 0x800)); while (
        codePoint >= 0xd800 && codePoint <= 0xdfff
      );
    } else codePoint = 0x10000 + Math.floor(random() * (0x110000 - 0x10000));
    parts.push(String.fromCodePoint(codePoint));
    left -= bytes;
  }
  return parts.join("");
}

/** A 40-byte seeded block, repeated: compresses even within an 8-bit window. */
function compressibleBytes(random: () => number, size: number): Uint8Array {
  const block = randomBytes(random, 40);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = block[i % block.length]!;
  return out;
}

function samples(): Sample[] {
  const random = prng(7692);
  const out: Sample[] = [];
  for (const size of SIZES) {
    out.push({ name: `${size} B compressible text`, data: compressibleText(size), size });
    out.push({ name: `${size} B random text`, data: randomText(random, size), size });
    out.push({
      name: `${size} B compressible binary`,
      data: compressibleBytes(random, size),
      size,
    });
    out.push({ name: `${size} B random binary`, data: randomBytes(random, size), size });
  }
  for (const sample of out) {
    const actual = typeof sample.data === "string"
      ? encoder.encode(sample.data).length
      : sample.data.length;
    assert.equal(actual, sample.size, `${sample.name} has ${actual} bytes`);
  }
  return out;
}

const MESSAGES = samples();
const TOTAL = MESSAGES.reduce((sum, sample) => sum + sample.size, 0);
/**
 * Half the payload is compressible to almost nothing, half random: a
 * direction that compresses carries well under 60% of the payload.
 */
const COMPRESSED_MAX = Math.floor(TOTAL * 0.6);
/** Random bytes do not compress: less than this on the wire means a broken counter. */
const COMPRESSED_MIN = Math.floor(TOTAL * 0.3);

/** The bytes that crossed the wire one way look compressed (the count is the peer's). */
function looksCompressed(count: unknown, what: string): void {
  // deno-lint-ignore no-console
  if (Deno.env.get("SHOW_WIRE")) console.log(what, count, TOTAL);
  assert.equal(typeof count, "number", `${what}: no byte count`);
  assert.ok(
    (count as number) > COMPRESSED_MIN && (count as number) < COMPRESSED_MAX,
    `${what}: ${count} bytes on the wire for ${TOTAL} bytes of payload`,
  );
}

/** `received` is `sample.data`, type and content, byte for byte. */
function same(received: unknown, sample: Sample, who: string): void {
  const sent = sample.data;
  const what = `${who}: echo of the ${sample.name} message`;
  if (typeof sent === "string") {
    assert.equal(typeof received, "string", `${what} is not text`);
    const text = received as string;
    if (text !== sent) {
      const a = encoder.encode(text);
      const b = encoder.encode(sent);
      assert.fail(
        `${what} differs: ${a.length} bytes instead of ${b.length}, first difference at byte ` +
          firstDifference(a, b),
      );
    }
    return;
  }
  assert.ok(received instanceof Uint8Array, `${what} is not binary`);
  const bytes = received as Uint8Array;
  if (bytes.length !== sent.length || firstDifference(bytes, sent) !== sent.length) {
    assert.fail(
      `${what} differs: ${bytes.length} bytes instead of ${sent.length}, first difference at ` +
        firstDifference(bytes, sent),
    );
  }
}

// ------------------------------------------------------------------ helpers

/** Our echo handler; it records what the server side negotiated. */
function echoServer(ours: boolean | PerMessageDeflateOptions) {
  const seen = Promise.withResolvers<{ offers: string[]; extensions: string[] }>();
  const handler: Handler = async (socket, request) => {
    socket.accept();
    seen.resolve({
      offers: request.extensions.map((offer) => typeof offer === "string" ? offer : offer.name),
      extensions: [...socket.extensions],
    });
    for await (const message of socket) await socket.send(message);
  };
  const server = serve({ hostname: "127.0.0.1", port: 0, deflate: ours }, handler);
  return { server, seen: () => withTimeout(seen.promise, WAIT, "the server's handler") };
}

interface NodeSocket {
  bytesRead: number;
  bytesWritten: number;
}

/** An npm:ws client whose messages queue up for `next()`. */
function wsClient(url: string, perMessageDeflate: unknown) {
  const socket = new WsClient(url, [], { perMessageDeflate });
  const queue: unknown[] = [];
  const waiters: ((data: unknown) => void)[] = [];
  socket.on("message", (data: Uint8Array, isBinary: boolean) => {
    const message = isBinary ? new Uint8Array(data) : new TextDecoder().decode(data);
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  // The 101 response: its Sec-WebSocket-Extensions, and the TCP socket.
  const upgrade = new Promise<{ answer: string; tcp: NodeSocket }>((resolve) => {
    socket.once(
      "upgrade",
      (response: { headers: Record<string, string>; socket: NodeSocket }) =>
        resolve({
          answer: response.headers["sec-websocket-extensions"] ?? "",
          tcp: response.socket,
        }),
    );
  });
  // ws emits "error" before "close" when the connection fails; the
  // failure then shows in `opened()` or in the close.
  socket.on("error", () => {});
  const opened = new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once(
      "close",
      (code: number, reason: Uint8Array) =>
        resolve({ code, reason: new TextDecoder().decode(reason) }),
    )
  );
  return {
    socket,
    upgrade: () => withTimeout(upgrade, WAIT, "npm:ws client upgrade"),
    opened: () => withTimeout(opened, WAIT, "npm:ws client open"),
    closed: () => withTimeout(closed, WAIT, "npm:ws client close"),
    next: (what: string) =>
      withTimeout(
        queue.length > 0
          ? Promise.resolve(queue.shift())
          : new Promise<unknown>((resolve) => waiters.push(resolve)),
        WAIT,
        what,
      ),
  };
}

/**
 * After a failure: close an npm:ws client that is still open, and drop it if
 * that takes too long. (Terminating it at once, while its inflater may still
 * be busy, makes Node's zlib throw "zlib binding closed" outside any test.)
 */
async function dispose(client: ReturnType<typeof wsClient>): Promise<void> {
  if (client.socket.readyState === WsClient.CLOSED) return;
  if (client.socket.readyState === WsClient.OPEN) client.socket.close(1000);
  try {
    await client.closed();
  } catch {
    client.socket.terminate();
    await client.closed().catch(() => {});
  }
}

/** An npm:ws echo server; it records the offer, its answer and its TCP socket. */
async function wsEchoServer(perMessageDeflate: unknown) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate });
  const answer = Promise.withResolvers<string>();
  wss.on("headers", (headers: string[]) => {
    const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
    answer.resolve(line === undefined ? "" : line.replace(/^[^:]*:\s*/, ""));
  });
  const peer = Promise.withResolvers<
    { offer: string; extensions: string; tcp: NodeSocket; closed: () => Promise<number> }
  >();
  wss.on(
    "connection",
    (
      socket: WsClient,
      request: { headers: Record<string, string>; socket: NodeSocket },
    ) => {
      const closed = new Promise<number>((resolve) =>
        socket.once("close", (code: number) => resolve(code))
      );
      socket.on("error", () => {}); // a failure shows in the close code
      socket.on("message", (data: Uint8Array, isBinary: boolean) => {
        socket.send(data, { binary: isBinary });
      });
      peer.resolve({
        offer: request.headers["sec-websocket-extensions"] ?? "",
        extensions: socket.extensions,
        tcp: request.socket,
        closed: () => withTimeout(closed, WAIT, "npm:ws server close"),
      });
    },
  );
  await withTimeout(
    new Promise((resolve) => wss.once("listening", resolve)),
    WAIT,
    "npm:ws listening",
  );
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`,
    answer: () => withTimeout(answer.promise, WAIT, "npm:ws server answer"),
    peer: () => withTimeout(peer.promise, WAIT, "npm:ws server connection"),
    close: () =>
      withTimeout(new Promise((resolve) => wss.close(resolve)), WAIT, "npm:ws server shutdown"),
  };
}

async function exchange(socket: Socket, who: string): Promise<void> {
  for (const sample of MESSAGES) {
    await withTimeout(socket.send(sample.data), WAIT, `${who}: sending ${sample.name}`);
    same(await socket.receive({ timeout: WAIT }), sample, who);
  }
}

/** Every parameter of `expected` (";"-separated) is in `answer`, and no other. */
function sameParams(answer: string, expected: string, what: string): void {
  const params = (s: string) =>
    s.split(";").map((p) => p.trim().toLowerCase()).filter((p) => p !== "").sort();
  assert.deepEqual(params(answer), params(expected), `${what}: ${answer}`);
}

// -------------------------------------------- serve() and an npm:ws client

interface WsClientCase {
  name: string;
  ours: boolean | PerMessageDeflateOptions;
  theirs: unknown;
  /** Our exact Sec-WebSocket-Extensions answer. */
  answer: string;
}

const WS_CLIENT_CASES: WsClientCase[] = [
  {
    name: "with defaults on both sides (thresholds 32 and 1024)",
    ours: true,
    theirs: true,
    answer: "permessage-deflate",
  },
  {
    name: "with context takeover, threshold 0",
    ours: { threshold: 0 },
    theirs: { threshold: 0 },
    answer: "permessage-deflate",
  },
  {
    name: "without context takeover, asked for by the client",
    ours: { threshold: 0 },
    theirs: { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 },
    answer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  },
  {
    name: "with 9-bit windows, asked for by the client",
    ours: { threshold: 0 },
    theirs: { serverMaxWindowBits: 9, clientMaxWindowBits: 9, threshold: 0 },
    answer: "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
  },
  {
    name: "with 8-bit windows, asked for by the client",
    ours: { threshold: 0 },
    theirs: { serverMaxWindowBits: 8, clientMaxWindowBits: 8, threshold: 0 },
    answer: "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
  },
  {
    name: "without context takeover and with small windows, imposed by the server",
    ours: {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 9,
      threshold: 0,
    },
    theirs: { threshold: 0 },
    answer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " +
      "server_max_window_bits=10; client_max_window_bits=9",
  },
  {
    name: "with 12-bit windows and memoryLevel 5 (Python websockets' server settings)",
    ours: { serverMaxWindowBits: 12, clientMaxWindowBits: 12, memoryLevel: 5, threshold: 0 },
    theirs: { threshold: 0 },
    answer: "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
  },
];

for (const c of WS_CLIENT_CASES) {
  Deno.test(`serve() echoes every message to an npm:ws client, permessage-deflate ${c.name}`, async () => {
    const { server, seen } = echoServer(c.ours);
    await using _server = server;
    const client = wsClient(`ws://127.0.0.1:${server.addr.port}/`, c.theirs);
    try {
      await client.opened();
      const { answer, tcp } = await client.upgrade();
      assert.equal(answer, c.answer);
      assert.equal(client.socket.extensions, "permessage-deflate");
      const { offers, extensions } = await seen();
      assert.match(offers[0] ?? "", /^permessage-deflate\b/);
      assert.deepEqual(extensions, ["permessage-deflate"]);

      for (const sample of MESSAGES) {
        client.socket.send(sample.data, { binary: typeof sample.data !== "string" });
        same(await client.next(`npm:ws client: echo of ${sample.name}`), sample, "npm:ws client");
      }
      // Both directions were compressed: the random half of the payload
      // dominates what went over the wire.
      looksCompressed(tcp.bytesWritten, "npm:ws client to serve()");
      looksCompressed(tcp.bytesRead, "serve() to npm:ws client");

      client.socket.close(1000, "ws done");
      assert.deepEqual(await client.closed(), { code: 1000, reason: "ws done" });
    } finally {
      await dispose(client);
    }
  });
}

Deno.test("serve() reassembles compressed messages an npm:ws client sends in fragments", async () => {
  const { server, seen } = echoServer({ threshold: 0 });
  await using _server = server;
  const client = wsClient(`ws://127.0.0.1:${server.addr.port}/`, { threshold: 0 });
  try {
    await client.opened();
    assert.deepEqual((await seen()).extensions, ["permessage-deflate"]);
    // The largest messages, cut into three frames at uneven places (inside
    // UTF-8 sequences too); each frame ends with its own sync flush.
    for (const sample of MESSAGES.filter((m) => m.size === 1024 * 1024)) {
      const binary = typeof sample.data !== "string";
      const bytes = binary ? sample.data as Uint8Array : encoder.encode(sample.data as string);
      const cuts = [0, 100_001, 700_003, bytes.length];
      for (let i = 0; i < 3; i++) {
        client.socket.send(bytes.subarray(cuts[i], cuts[i + 1]), {
          binary,
          compress: true,
          fin: i === 2,
        });
      }
      same(await client.next(`npm:ws client: echo of ${sample.name}`), sample, "npm:ws client");
    }
    client.socket.close(1000);
    assert.equal((await client.closed()).code, 1000);
  } finally {
    await dispose(client);
  }
});

// ----------------------------------------- connect() and an npm:ws server

interface WsServerCase {
  name: string;
  ours: boolean | PerMessageDeflateOptions;
  theirs: unknown;
  /** The offer we should make. */
  offer: string;
  /** The parameters of npm:ws's answer, in any order. */
  answer: string;
}

const WS_SERVER_CASES: WsServerCase[] = [
  {
    name: "with defaults on both sides (thresholds 32 and 1024)",
    ours: true,
    theirs: true,
    offer: "permessage-deflate; client_max_window_bits",
    answer: "permessage-deflate",
  },
  {
    name: "with context takeover, threshold 0",
    ours: { threshold: 0 },
    theirs: { threshold: 0 },
    offer: "permessage-deflate; client_max_window_bits",
    answer: "permessage-deflate",
  },
  {
    name: "without context takeover, imposed by the server",
    ours: { threshold: 0 },
    theirs: { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 },
    offer: "permessage-deflate; client_max_window_bits",
    answer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  },
  {
    name: "with 9-bit windows, imposed by the server",
    ours: { threshold: 0 },
    theirs: { serverMaxWindowBits: 9, clientMaxWindowBits: 9, threshold: 0 },
    offer: "permessage-deflate; client_max_window_bits",
    answer: "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
  },
  {
    name: "with a 10-bit server window and no client context takeover, asked for by us",
    ours: { serverMaxWindowBits: 10, clientNoContextTakeover: true, threshold: 0 },
    theirs: { threshold: 0 },
    offer: "permessage-deflate; client_max_window_bits; server_max_window_bits=10; " +
      "client_no_context_takeover",
    answer: "permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
  },
  {
    name: "with 8- and 9-bit windows and no server context takeover, asked for by us",
    ours: {
      clientMaxWindowBits: 9,
      serverMaxWindowBits: 8,
      serverNoContextTakeover: true,
      threshold: 0,
    },
    theirs: { threshold: 0 },
    offer: "permessage-deflate; client_max_window_bits=9; server_max_window_bits=8; " +
      "server_no_context_takeover",
    answer: "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; " +
      "client_max_window_bits=9",
  },
];

for (const c of WS_SERVER_CASES) {
  Deno.test(`connect() exchanges every message with an npm:ws server, permessage-deflate ${c.name}`, async () => {
    const wss = await wsEchoServer(c.theirs);
    try {
      const socket = await connect(wss.url, { deflate: c.ours, handshakeTimeout: WAIT });
      try {
        assert.deepEqual(socket.extensions, ["permessage-deflate"]);
        const peer = await wss.peer();
        assert.equal(peer.offer, c.offer);
        sameParams(await wss.answer(), c.answer, "npm:ws's answer");
        assert.equal(peer.extensions, "permessage-deflate");

        await exchange(socket, "connect()");
        looksCompressed(peer.tcp.bytesRead, "connect() to npm:ws server");
        looksCompressed(peer.tcp.bytesWritten, "npm:ws server to connect()");
        assert.deepEqual(await withTimeout(socket.close(1000, "ours done"), WAIT, "close"), {
          code: 1000,
          reason: "ours done",
        });
        assert.equal(await peer.closed(), 1000);
      } finally {
        await withTimeout(socket.close(), WAIT, "close in cleanup");
      }
    } finally {
      await wss.close();
    }
  });
}

// ------------------------------------- serve() and Python's websockets client

const PYTHON = "/usr/bin/python3";
const PEER = new URL("./websockets_peer.py", import.meta.url).pathname;

function websocketsAvailable(): boolean {
  try {
    return new Deno.Command(PYTHON, {
      args: [
        "-c",
        "import websockets\n" +
        "from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory",
      ],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

const AVAILABLE = websocketsAvailable();
const IN_CI = Deno.env.get("CI") === "true";
if (!AVAILABLE && !IN_CI) {
  // deno-lint-ignore no-console
  console.warn(
    "\n!!! tests/deflate_interop_test.ts: the Python websockets tests are SKIPPED: " +
      "/usr/bin/python3 with websockets not found (apt-get install python3-websockets). " +
      "Under CI=true this is a failure. !!!\n",
  );
}

/** The messages on the peer's stdin: type byte (0 text, 1 binary), u32 length, payload. */
function peerInput(): Uint8Array {
  const parts = MESSAGES.map((sample) => {
    const payload = typeof sample.data === "string" ? encoder.encode(sample.data) : sample.data;
    const part = new Uint8Array(5 + payload.length);
    part[0] = typeof sample.data === "string" ? 0 : 1;
    new DataView(part.buffer).setUint32(1, payload.length);
    part.set(payload, 5);
    return part;
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

interface PythonResult {
  ok: boolean;
  version?: string;
  error?: string;
  close_code?: number;
  extensions?: Record<string, unknown>[];
  results: { index: number; ok: boolean; error?: string }[];
}

async function runPython(url: string, config: Record<string, unknown>): Promise<PythonResult> {
  const child = new Deno.Command(PYTHON, {
    args: [PEER, url, JSON.stringify(config)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const written = writer.write(peerInput()).then(() => writer.close()).catch(() => {});
  const output = child.output();
  try {
    await withTimeout(output, WAIT, "the Python websockets client");
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await output;
    await written;
    throw error;
  }
  await written;
  const { success, stdout, stderr } = await output;
  const text = new TextDecoder().decode(stdout).trim();
  assert.ok(
    success && text !== "",
    `the Python peer failed:\n${new TextDecoder().decode(stderr)}\n${text}`,
  );
  return JSON.parse(text.split("\n").at(-1)!);
}

interface PythonCase {
  name: string;
  /** Keyword arguments of ClientPerMessageDeflateFactory; {} for websockets' default offer. */
  config: Record<string, unknown>;
  /**
   * What the Python side agreed (PerMessageDeflate's attributes, seen from
   * the client), or how to work it out from its offer.
   */
  agreed: Record<string, unknown> | ((offer: string) => Record<string, unknown>);
}

const PYTHON_CASES: PythonCase[] = [
  {
    // 15-bit windows in websockets 10, 12-bit ones (memLevel 5) in later versions.
    name: "websockets' default offer",
    config: {},
    agreed: (offer) => {
      const bits = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(offer)?.[1] ?? 15);
      return {
        remote_no_context_takeover: false,
        local_no_context_takeover: false,
        remote_max_window_bits: bits("server_max_window_bits"),
        local_max_window_bits: bits("client_max_window_bits"),
      };
    },
  },
  {
    name: "client_max_window_bits=9, server_max_window_bits=10, client_no_context_takeover",
    config: {
      client_max_window_bits: 9,
      server_max_window_bits: 10,
      client_no_context_takeover: true,
    },
    agreed: {
      remote_no_context_takeover: false,
      local_no_context_takeover: true,
      remote_max_window_bits: 10,
      local_max_window_bits: 9,
    },
  },
  {
    name: "server_no_context_takeover, server_max_window_bits=8",
    config: { server_no_context_takeover: true, server_max_window_bits: 8 },
    agreed: {
      remote_no_context_takeover: true,
      local_no_context_takeover: false,
      remote_max_window_bits: 8,
      local_max_window_bits: 15,
    },
  },
];

for (const c of PYTHON_CASES) {
  Deno.test({
    name: `serve({ deflate: true }) echoes every message to Python websockets, ${c.name}`,
    ignore: !AVAILABLE && !IN_CI,
    async fn() {
      if (!AVAILABLE) {
        throw new Error(
          "CI=true but /usr/bin/python3 with websockets is missing: install python3-websockets",
        );
      }
      const { server, seen } = echoServer(true);
      await using _server = server;
      const result = await runPython(`ws://127.0.0.1:${server.addr.port}/`, c.config);
      const failures = result.results.filter((r) => !r.ok).map((r) =>
        `${MESSAGES[r.index]?.name}: ${r.error}`
      );
      assert.deepEqual(failures, [], `Python websockets ${result.version}: echoes differ`);
      assert.equal(
        result.error,
        undefined,
        `Python websockets ${result.version} failed after ${result.results.length} echoes, ` +
          `at the ${MESSAGES[result.results.length]?.name} message`,
      );
      assert.equal(result.results.length, MESSAGES.length);
      assert.ok(result.ok);
      assert.equal(result.close_code, 1000);
      const { offers, extensions } = await seen();
      assert.equal(offers.length, 1);
      assert.match(offers[0]!, /^permessage-deflate\b/);
      assert.deepEqual(extensions, ["permessage-deflate"]);
      const agreed = typeof c.agreed === "function" ? c.agreed(offers[0]!) : c.agreed;
      assert.deepEqual(
        result.extensions,
        [{ name: "permessage-deflate", ...agreed }],
        `Python websockets ${result.version} offered ${offers[0]}`,
      );
    },
  });
}
