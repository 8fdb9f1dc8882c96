/**
 * A soak run of the raw TCP driver: one `serve()` in this process, its
 * clients in a child process (so that the memory figures are the server's
 * alone), over 127.0.0.1.
 *
 *     deno run -A --v8-flags=--expose-gc tools/soak.ts [--connections N] [--messages M]
 *       [--size BYTES] [--vanish V] [--duration SECONDS] [--json]
 *
 * Each round, `N` well-behaved clients (`connect()`) held open together
 * exchange `M` echoed messages each, and `V` raw clients vanish: a third
 * mid-handshake (half a request, then the TCP close), a third mid-frame
 * (half a frame), a third mid-close (the server's close frame never
 * answered). Rounds repeat until `--duration` has passed (at least one).
 * Then every client closes with 1000 and the report prints connections
 * held, messages exchanged, the server's close codes, errors by kind, peak
 * RSS, the bytes each idle connection costs the server, and the server's
 * heap after everything closed against its baseline. Without
 * `--expose-gc` the heap figures are taken without a forced collection and
 * are only rough.
 *
 * `--json` prints the report as one JSON object instead (the load test
 * reads it). The exit code is 1 when any error was counted.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { connect } from "../client.ts";
import { serve } from "../server.ts";
import type { Socket } from "../socket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the server's handler closes on request, so that a client can vanish mid-close. */
const CLOSE_ME = "please close";

const USAGE = `Usage: deno run -A --v8-flags=--expose-gc tools/soak.ts [options]

  --connections N     well-behaved connections held open together (default 1000)
  --messages M        echoed messages per connection per round (default 10)
  --size BYTES        bytes per message (default 64)
  --vanish V          raw clients vanishing per round, split mid-handshake,
                      mid-frame and mid-close (default 300)
  --duration SECONDS  keep running rounds this long; at least one round (default 10)
  --json              print the report as JSON
  --help              this text
`;

interface Options {
  connections: number;
  messages: number;
  size: number;
  vanish: number;
  duration: number;
  json: boolean;
}

/** Counts by kind, kept as a plain object so that it prints and serialises as it is. */
type Counts = Record<string, number>;

function bump(counts: Counts, kind: string, by = 1): void {
  counts[kind] = (counts[kind] ?? 0) + by;
}

function merge(into: Counts, from: Counts, prefix = ""): void {
  for (const [kind, count] of Object.entries(from)) bump(into, prefix + kind, count);
}

function errorKind(error: unknown): string {
  if (error instanceof Error) return error.name;
  return typeof error;
}

function parseOptions(argv: readonly string[]): Options | null {
  const options: Options = {
    connections: 1000,
    messages: 10,
    size: 64,
    vanish: 300,
    duration: 10,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=")
      ? arg.split("=", 2) as [string, string]
      : [arg, undefined];
    const count = (): number => {
      const text = inline ?? argv[++i];
      const value = Number(text);
      if (text === undefined || !Number.isSafeInteger(value) || value < 0) {
        throw new TypeError(`${flag} needs a non-negative integer`);
      }
      return value;
    };
    if (flag === "--help" || flag === "-h") return null;
    else if (flag === "--connections") options.connections = count();
    else if (flag === "--messages") options.messages = count();
    else if (flag === "--size") options.size = count();
    else if (flag === "--vanish") options.vanish = count();
    else if (flag === "--duration") options.duration = count();
    else if (flag === "--json") options.json = true;
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  return options;
}

// ---- Raw clients: hand-built bytes, so that they can vanish anywhere ----

function handshakeRequest(port: number): Uint8Array {
  return encoder.encode(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Version: 13\r\n\r\n",
  );
}

/** A masked client frame (RFC 6455 §5.2), payload under 64 KiB. */
function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const long = payload.length > 125;
  const head = long
    ? [0x80 | opcode, 0x80 | 126, payload.length >>> 8, payload.length & 0xff]
    : [0x80 | opcode, 0x80 | payload.length];
  const key = [0x12, 0x34, 0x56, 0x78];
  const frame = new Uint8Array(head.length + 4 + payload.length);
  frame.set(head);
  frame.set(key, head.length);
  for (let i = 0; i < payload.length; i++) {
    frame[head.length + 4 + i] = payload[i]! ^ key[i & 3]!;
  }
  return frame;
}

/** Read until `done(bytes so far)` or the peer closes, within `ms`. */
async function readUntil(
  conn: Deno.Conn,
  done: (text: string, bytes: Uint8Array) => boolean,
  ms: number,
): Promise<Uint8Array> {
  let received = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + ms;
  for (let reads = 0; reads < 1000 && Date.now() < deadline; reads++) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buffer),
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), ms)),
    ]).finally(() => clearTimeout(timer));
    if (n === null || n === "timeout") break;
    const grown = new Uint8Array(received.length + n);
    grown.set(received);
    grown.set(buffer.subarray(0, n), received.length);
    received = grown;
    if (done(decoder.decode(received), received)) break;
  }
  return received;
}

function headEnd(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.length; i++) {
    if (bytes[i - 3] === 13 && bytes[i - 2] === 10 && bytes[i - 1] === 13 && bytes[i] === 10) {
      return i + 1;
    }
  }
  return -1;
}

type VanishKind = "mid-handshake" | "mid-frame" | "mid-close";

/**
 * One raw client that vanishes (closes TCP without a close frame) at the
 * given point. Returns the kind of failure when it could not get there.
 */
async function vanish(port: number, kind: VanishKind): Promise<string | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = handshakeRequest(port);
    if (kind === "mid-handshake") {
      await conn.write(request.subarray(0, request.length >> 1));
      return null;
    }
    await conn.write(request);
    const head = await readUntil(conn, (_, bytes) => headEnd(bytes) >= 0, 10_000);
    if (!decoder.decode(head).startsWith("HTTP/1.1 101")) return "raw handshake refused";
    if (kind === "mid-frame") {
      const frame = clientFrame(0x1, encoder.encode("cut short ".repeat(20)));
      await conn.write(frame.subarray(0, frame.length - 50));
      return null;
    }
    // Ask the server to close, read its close frame, and never answer it.
    await conn.write(clientFrame(0x1, encoder.encode(CLOSE_ME)));
    const after = await readUntil(conn, (_, bytes) => bytes.length > 0, 10_000);
    return after[0] === 0x88 ? null : "no close frame from the server";
  } catch (error) {
    return `raw ${errorKind(error)}`;
  } finally {
    conn.close();
  }
}

// ---- The child: the clients ----

type Command =
  | { cmd: "connect"; count: number }
  | { cmd: "round"; messages: number; size: number; vanish: number }
  | { cmd: "close" };

interface Reply {
  held: number;
  sent: number;
  received: number;
  vanished: Counts;
  closes: Counts;
  errors: Counts;
  peakRss: number;
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  const textDecoder = new TextDecoder();
  for await (const chunk of stream) {
    pending += textDecoder.decode(chunk, { stream: true });
    let at: number;
    while ((at = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, at);
      pending = pending.slice(at + 1);
    }
  }
  if (pending !== "") yield pending;
}

async function runClients(port: number): Promise<void> {
  const url = `ws://127.0.0.1:${port}/`;
  let sockets: Socket[] = [];
  let peakRss = 0;
  const sampler = setInterval(() => peakRss = Math.max(peakRss, Deno.memoryUsage().rss), 50);
  try {
    for await (const line of lines(Deno.stdin.readable)) {
      const command = JSON.parse(line) as Command;
      const reply: Reply = {
        held: 0,
        sent: 0,
        received: 0,
        vanished: {},
        closes: {},
        errors: {},
        peakRss: 0,
      };
      if (command.cmd === "connect") {
        // In batches, so that the listen backlog never overflows.
        for (let done = 0; done < command.count; done += 100) {
          const batch = Math.min(100, command.count - done);
          const results = await Promise.allSettled(
            Array.from({ length: batch }, () => connect(url, { handshakeTimeout: 10_000 })),
          );
          for (const result of results) {
            if (result.status === "fulfilled") sockets.push(result.value);
            else bump(reply.errors, `client connect ${errorKind(result.reason)}`);
          }
        }
      } else if (command.cmd === "round") {
        // The vanishing clients come and go while the held ones talk.
        await Promise.all([
          exchange(sockets, command.messages, command.size, reply),
          vanishMany(port, command.vanish, reply),
        ]);
      } else {
        const infos = await Promise.all(sockets.map((socket) => socket.close(1000, "done")));
        for (const info of infos) bump(reply.closes, String(info.code));
        sockets = [];
      }
      reply.held = sockets.length;
      reply.peakRss = peakRss;
      await writeLine(reply);
    }
  } finally {
    clearInterval(sampler);
    await Promise.all(sockets.map((socket) => socket.close(1001)));
  }
}

async function exchange(
  sockets: readonly Socket[],
  messages: number,
  size: number,
  reply: Reply,
): Promise<void> {
  const payload = "x".repeat(size);
  await Promise.all(sockets.map(async (socket, index) => {
    for (let i = 0; i < messages; i++) {
      const message = `${index}:${i}:${payload}`;
      try {
        await socket.send(message);
        reply.sent++;
        const echo = await socket.receive({ timeout: 10_000 });
        if (echo === message) reply.received++;
        else bump(reply.errors, "client echo mismatch");
      } catch (error) {
        bump(reply.errors, `client ${errorKind(error)}`);
        return;
      }
    }
  }));
}

async function vanishMany(port: number, count: number, reply: Reply): Promise<void> {
  const kinds: VanishKind[] = ["mid-handshake", "mid-frame", "mid-close"];
  // In batches, as for connect: a burst over the listen backlog would
  // only measure SYN retries.
  for (let done = 0; done < count; done += 100) {
    await Promise.all(Array.from({ length: Math.min(100, count - done) }, async (_, i) => {
      const kind = kinds[(done + i) % 3]!;
      const failure = await vanish(port, kind).catch((error) => `raw ${errorKind(error)}`);
      if (failure === null) bump(reply.vanished, kind);
      else bump(reply.errors, `${kind}: ${failure}`);
    }));
  }
}

async function writeLine(value: unknown): Promise<void> {
  const bytes = encoder.encode(JSON.stringify(value) + "\n");
  const writer = Deno.stdout.writable.getWriter();
  try {
    await writer.write(bytes);
  } finally {
    writer.releaseLock();
  }
}

// ---- The parent: the server and the report ----

/** What `--json` prints. */
export interface SoakReport {
  /** The options the run used. */
  options: Options;
  /** Rounds run. */
  rounds: number;
  /** Seconds the run took. */
  seconds: number;
  /** Well-behaved connections held open together. */
  connectionsHeld: number;
  /** The most server sockets alive at once (held plus vanishing). */
  peakServerSockets: number;
  /** Messages sent by the clients and echoes received back. */
  messagesSent: number;
  messagesEchoed: number;
  /** Raw clients that vanished, by where. */
  vanished: Counts;
  /** How the server's sockets ended, by close code. */
  serverCloses: Counts;
  /** How the clients' sockets ended, by close code. */
  clientCloses: Counts;
  /** Everything that went wrong, by kind; empty on a clean run. */
  errors: Counts;
  /** Peak resident set sizes in bytes. */
  peakRss: { server: number; clients: number };
  /** What one idle open connection costs the server, in bytes. */
  bytesPerIdleConnection: { heap: number; rss: number };
  /** The server's heapUsed + external, in bytes. */
  heap: { baseline: number; idle: number; after: number; forcedGc: boolean };
}

const gc = (globalThis as { gc?: () => void }).gc;

async function settle(): Promise<void> {
  // Let closed sockets' promises and timers run, then collect (twice: the
  // first pass may only queue finalizers).
  await new Promise((resolve) => setTimeout(resolve, 100));
  gc?.();
  await new Promise((resolve) => setTimeout(resolve, 20));
  gc?.();
}

function heapNow(): number {
  const usage = Deno.memoryUsage();
  return usage.heapUsed + usage.external;
}

async function fdLimit(): Promise<number> {
  try {
    const output = await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stderr: "null" })
      .output();
    const text = decoder.decode(output.stdout).trim();
    return text === "unlimited" ? Infinity : Number(text) || Infinity;
  } catch {
    return Infinity;
  }
}

async function runServer(options: Options): Promise<SoakReport> {
  const limit = await fdLimit();
  // One descriptor per connection in each process, and some to spare.
  const room = Math.max(0, limit - 64);
  if (options.connections + options.vanish > room) {
    const scaled = Math.max(0, room - options.vanish);
    console.error(
      `!!! ulimit -n is ${limit}: scaling --connections from ${options.connections} to ${scaled}`,
    );
    options = { ...options, connections: scaled };
  }

  const serverCloses: Counts = {};
  const errors: Counts = {};
  let alive = 0;
  let peakServerSockets = 0;
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    // A half-sent request must not hold its socket for the default 10 s.
    limits: { handshakeTimeout: 2_000, closeTimeout: 2_000 },
    onError: (error) => bump(errors, `server handler ${errorKind(error)}`),
  }, async (socket) => {
    alive++;
    peakServerSockets = Math.max(peakServerSockets, alive);
    try {
      for await (const message of socket) {
        if (message === CLOSE_ME) {
          socket.close(4000, "asked to").catch(() => {});
          continue;
        }
        // A vanished peer makes this reject: that ends the handler quietly.
        await socket.send(message);
      }
    } catch {
      // counted by the close code below
    }
    const info = await socket.closed;
    bump(serverCloses, String(info.code));
    alive--;
  });

  let peakRss = 0;
  const sampler = setInterval(() => peakRss = Math.max(peakRss, Deno.memoryUsage().rss), 25);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename ?? new URL(import.meta.url).pathname, "--client"],
    env: { SOAK_PORT: String(server.addr.port) },
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const replies = lines(child.stdout);
  const ask = async (command: Command): Promise<Reply> => {
    await writer.write(encoder.encode(JSON.stringify(command) + "\n"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const next = await Promise.race([
      replies.next(),
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), 120_000)),
    ]).finally(() => clearTimeout(timer));
    if (next === "timeout" || next.done === true) {
      throw new Error(`The client process did not answer ${command.cmd}`);
    }
    const reply = JSON.parse(next.value) as Reply;
    merge(errors, reply.errors);
    return reply;
  };

  const started = Date.now();
  const vanished: Counts = {};
  const clientCloses: Counts = {};
  let sent = 0;
  let echoed = 0;
  let rounds = 0;
  let held = 0;
  let clientPeakRss = 0;
  let bytesPerIdleConnection = { heap: 0, rss: 0 };
  let baseline = 0;
  let idle = 0;
  let after = 0;
  try {
    // Warm up, so that code compiled and caches filled on first use do not
    // count as growth; then take the baseline.
    await ask({ cmd: "connect", count: 10 });
    await ask({ cmd: "round", messages: 2, size: options.size, vanish: 6 });
    await ask({ cmd: "close" });
    await waitFor(() => alive === 0, 10_000);
    for (const kind of Object.keys(serverCloses)) delete serverCloses[kind];
    await settle();
    baseline = heapNow();
    const baselineRss = Deno.memoryUsage().rss;

    held = (await ask({ cmd: "connect", count: options.connections })).held;
    await settle();
    idle = heapNow();
    if (held > 0) {
      bytesPerIdleConnection = {
        heap: Math.round((idle - baseline) / held),
        rss: Math.round((Deno.memoryUsage().rss - baselineRss) / held),
      };
    }
    do {
      rounds++;
      const round = await ask({
        cmd: "round",
        messages: options.messages,
        size: options.size,
        vanish: options.vanish,
      });
      sent += round.sent;
      echoed += round.received;
      merge(vanished, round.vanished);
      clientPeakRss = Math.max(clientPeakRss, round.peakRss);
      if (!options.json) {
        console.log(
          `round ${rounds}: held ${round.held}, messages ${round.sent + round.received}, ` +
            `vanished ${options.vanish}, server rss ${mib(Deno.memoryUsage().rss)}`,
        );
      }
    } while (Date.now() - started < options.duration * 1000);
    const closing = await ask({ cmd: "close" });
    merge(clientCloses, closing.closes);
    clientPeakRss = Math.max(clientPeakRss, closing.peakRss);
    if (!await waitFor(() => alive === 0, 10_000)) bump(errors, "server sockets left open");
    await settle();
    after = heapNow();
  } catch (error) {
    bump(errors, `soak ${errorKind(error)}: ${error instanceof Error ? error.message : error}`);
  } finally {
    clearInterval(sampler);
    await writer.close().catch(() => {});
    await replies.return(undefined);
    const status = await child.status;
    if (!status.success) bump(errors, `client process exit ${status.code}`);
    await server.shutdown();
  }

  // Every held connection closes with 1000 and every mid-frame or mid-close
  // vanisher ends in 1006 (no closing handshake); mid-handshake ones never
  // reach the handler. Anything else is an error.
  const expected: Counts = {};
  if (held > 0) expected["1000"] = held;
  const abnormal = (vanished["mid-frame"] ?? 0) + (vanished["mid-close"] ?? 0);
  if (abnormal > 0) expected["1006"] = abnormal;
  for (const code of new Set([...Object.keys(expected), ...Object.keys(serverCloses)])) {
    const difference = (serverCloses[code] ?? 0) - (expected[code] ?? 0);
    if (difference !== 0) {
      bump(errors, `server close ${code} (expected ${expected[code] ?? 0})`, difference);
    }
  }
  if ((clientCloses["1000"] ?? 0) !== held) bump(errors, "client closes other than 1000");
  if (echoed !== sent) bump(errors, "messages not echoed", sent - echoed);

  return {
    options,
    rounds,
    seconds: (Date.now() - started) / 1000,
    connectionsHeld: held,
    peakServerSockets,
    messagesSent: sent,
    messagesEchoed: echoed,
    vanished,
    serverCloses,
    clientCloses,
    errors,
    peakRss: { server: peakRss, clients: clientPeakRss },
    bytesPerIdleConnection,
    heap: { baseline, idle, after, forcedGc: gc !== undefined },
  };
}

async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function list(counts: Counts, empty: string): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? empty : entries.map(([kind, n]) => `${kind} ×${n}`).join(", ");
}

function print(report: SoakReport): void {
  const { heap } = report;
  const growth = heap.after - heap.baseline;
  console.log(
    [
      `soak: ${report.rounds} round(s) in ${report.seconds.toFixed(1)} s`,
      `connections held:          ${report.connectionsHeld} ` +
      `(peak ${report.peakServerSockets} server sockets at once)`,
      `messages exchanged:        ${report.messagesSent + report.messagesEchoed} ` +
      `(${report.messagesSent} sent, ${report.messagesEchoed} echoed)`,
      `vanished:                  ${list(report.vanished, "none")}`,
      `server closes by code:     ${list(report.serverCloses, "none")}`,
      `errors by kind:            ${list(report.errors, "none")}`,
      `peak RSS:                  server ${mib(report.peakRss.server)}, ` +
      `clients ${mib(report.peakRss.clients)}`,
      `bytes per idle connection: ${kib(report.bytesPerIdleConnection.heap)} heap+external, ` +
      `${kib(report.bytesPerIdleConnection.rss)} RSS (server side)`,
      `server heap+external:      baseline ${mib(heap.baseline)}, idle ${mib(heap.idle)}, ` +
      `after closing ${mib(heap.after)} (${growth >= 0 ? "+" : ""}${kib(growth)})` +
      (heap.forcedGc ? "" : " [no forced GC: run with --v8-flags=--expose-gc]"),
    ].join("\n"),
  );
}

if (import.meta.main) {
  if (Deno.args[0] === "--client") {
    await runClients(Number(Deno.env.get("SOAK_PORT")));
  } else {
    let options: Options | null;
    try {
      options = parseOptions(Deno.args);
    } catch (error) {
      console.error(error instanceof Error ? error.message : error);
      console.error(USAGE);
      Deno.exit(2);
    }
    if (options === null) {
      console.log(USAGE);
    } else {
      if (!options.json) {
        console.log(
          `soak: ${options.connections} connections, ${options.messages} messages of ` +
            `${options.size} bytes each per round, ${options.vanish} vanishing per round, ` +
            `${options.duration} s`,
        );
      }
      const report = await runServer(options);
      if (options.json) console.log(JSON.stringify(report));
      else print(report);
      if (Object.keys(report.errors).length > 0) Deno.exitCode = 1;
    }
  }
}
