// A WebSocket load client for bench/echo.ts, on Node's `net` with frames
// built before the clock starts: masking and parsing are the least a client
// can do, so the server under test, not this process, is the bottleneck.
// (`npm:ws` or Deno's `WebSocket` as the client cost more CPU per message
// than the servers being compared.)
//
//   node bench/node/load_client.mjs --port N [--conns 1] [--size 32]
//     [--depth 1] [--warmup 1] [--duration 3] [--text] [--deflate]
//     [--idle [--hello]]
//
// Each connection keeps `depth` messages in flight: every echo received
// sends one more (all the echoes of one read are answered with one write).
// Prints `{"event":"measuring"}` when the measured window opens and one
// JSON line of results at the end. With --idle it opens the connections,
// prints `{"event":"ready"}`, and holds them until stdin closes; with
// --hello too, each connection first sends one message and waits for its
// echo, so that what a server keeps after a message is measured.
//
// Traffic goes only to 127.0.0.1, and every run stops by itself.

import net from "node:net";
import crypto from "node:crypto";
import zlib from "node:zlib";

function parseArgs(argv) {
  const args = {
    port: 0,
    host: "127.0.0.1",
    conns: 1,
    size: 32,
    depth: 1,
    warmup: 1,
    duration: 3,
    text: false,
    deflate: false,
    idle: false,
    hello: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i].replace(/^--/, "");
    if (["text", "deflate", "idle", "hello"].includes(flag)) args[flag] = true;
    else if (flag in args) args[flag] = flag === "host" ? argv[++i] : Number(argv[++i]);
    else throw new TypeError(`Unknown argument ${argv[i]}`);
  }
  if (!args.port) throw new TypeError("--port is required");
  return args;
}

const args = parseArgs(process.argv.slice(2));

/** JSON-ish chat text: compressible, as permessage-deflate traffic usually is. */
function payloadOf(size, text) {
  if (!text) return crypto.randomBytes(size);
  let out = "";
  let i = 0;
  while (out.length < size) {
    out += `{"type":"message","id":${i},"room":"lobby","body":"hello number ${i++}"},`;
  }
  return Buffer.from(out.slice(0, size), "latin1");
}

/** One masked client frame (RFC 6455 §5.2, §5.3) with a fresh key. */
function frameOf(opcode, payload, rsv1) {
  const n = payload.length;
  const lengthBytes = n <= 125 ? 0 : n <= 0xffff ? 2 : 8;
  const header = Buffer.alloc(2 + lengthBytes + 4);
  header[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (lengthBytes === 0) header[1] = 0x80 | n;
  else if (lengthBytes === 2) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(n, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(n), 2);
  }
  const key = crypto.randomBytes(4);
  key.copy(header, 2 + lengthBytes);
  const body = Buffer.from(payload);
  for (let i = 0; i < n; i++) body[i] ^= key[i & 3];
  return Buffer.concat([header, body]);
}

const payload = payloadOf(args.size, args.text || args.deflate);
let wire = payload;
if (args.deflate) {
  // RFC 7692 §7.2.1: a sync-flushed raw deflate stream without its last
  // four bytes. We offer client_no_context_takeover, so one compressed
  // frame can be sent again and again.
  const flushed = zlib.deflateRawSync(payload, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  wire = flushed.subarray(0, flushed.length - 4);
}
const opcode = args.text || args.deflate ? 0x1 : 0x2;
const FRAME = frameOf(opcode, wire, args.deflate);
// Up to `depth` frames back to back, so that k replies are answered by one
// write of the first k frames (no copy: a view).
const BURST = Buffer.concat(Array.from({ length: args.depth }, () => FRAME));

let measuring = false;
let received = 0;
const rtts = [];
const MAX_SAMPLES = 2_000_000;

function requestOf() {
  const key = crypto.randomBytes(16).toString("base64");
  return [
    "GET / HTTP/1.1",
    `Host: ${args.host}:${args.port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...(args.deflate
      ? ["Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover"]
      : []),
    "",
    "",
  ].join("\r\n");
}

/** Open one connection and resolve once the 101 arrived. */
function open() {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: args.host, port: args.port, noDelay: true });
    const state = {
      socket,
      upgraded: false,
      head: Buffer.alloc(0),
      // Frame parsing across reads: bytes of the current frame still to skip,
      // and a partial header carried over.
      skip: 0,
      partial: null,
      // Send times of the messages in flight, oldest first (a ring).
      sent: new Float64Array(args.depth),
      sentHead: 0,
      sentCount: 0,
      // --hello: called at the first echo, which is not answered.
      onHello: null,
    };
    socket.on("error", reject);
    socket.write(requestOf());
    socket.on("data", (chunk) => {
      if (!state.upgraded) {
        state.head = Buffer.concat([state.head, chunk]);
        const end = state.head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const status = state.head.subarray(0, 12).toString("latin1");
        if (!status.startsWith("HTTP/1.1 101")) {
          reject(new Error(`Handshake refused: ${state.head.subarray(0, end).toString()}`));
          return;
        }
        const deflateAccepted = /sec-websocket-extensions:[^\r]*permessage-deflate/i.test(
          state.head.subarray(0, end).toString("latin1"),
        );
        if (args.deflate && !deflateAccepted) {
          reject(new Error("The server did not accept permessage-deflate"));
          return;
        }
        state.upgraded = true;
        const rest = state.head.subarray(end + 4);
        state.head = null;
        resolve(state);
        if (rest.length > 0) onData(state, rest);
        return;
      }
      onData(state, chunk);
    });
  });
}

/** Count the complete frames in a chunk; answer each with a new message. */
function onData(state, chunk) {
  let at = 0;
  let done = 0;
  if (state.partial !== null) {
    chunk = Buffer.concat([state.partial, chunk]);
    state.partial = null;
  }
  while (at < chunk.length) {
    if (state.skip > 0) {
      const take = Math.min(state.skip, chunk.length - at);
      state.skip -= take;
      at += take;
      if (state.skip === 0) done++;
      continue;
    }
    const avail = chunk.length - at;
    if (avail < 2) {
      state.partial = chunk.subarray(at);
      break;
    }
    const len7 = chunk[at + 1] & 0x7f;
    const headerLength = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
    if (avail < headerLength) {
      state.partial = chunk.subarray(at);
      break;
    }
    const length = len7 === 126
      ? chunk.readUInt16BE(at + 2)
      : len7 === 127
      ? Number(chunk.readBigUInt64BE(at + 2))
      : len7;
    at += headerLength;
    if (length === 0) done++;
    else state.skip = length;
  }
  if (done === 0) return;
  if (state.onHello !== null) {
    const hello = state.onHello;
    state.onHello = null;
    hello();
    return;
  }
  if (stopped) return;
  const now = performance.now();
  for (let i = 0; i < done; i++) {
    if (measuring) {
      received++;
      if (rtts.length < MAX_SAMPLES) rtts.push(now - state.sent[state.sentHead]);
    }
    state.sentHead = (state.sentHead + 1) % args.depth;
    state.sentCount--;
  }
  send(state, done, now);
}

function send(state, count, now) {
  for (let i = 0; i < count; i++) {
    state.sent[(state.sentHead + state.sentCount) % args.depth] = now;
    state.sentCount++;
  }
  state.socket.write(
    count === args.depth ? BURST : BURST.subarray(0, count * FRAME.length),
  );
}

let stopped = false;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function main() {
  const states = [];
  // Open in small groups: a burst of 256 SYNs can overflow a small backlog.
  for (let i = 0; i < args.conns; i += 32) {
    const group = [];
    for (let j = i; j < Math.min(args.conns, i + 32); j++) group.push(open());
    states.push(...await Promise.all(group));
  }
  if (args.idle) {
    if (args.hello) {
      await Promise.all(states.map((state) =>
        new Promise((resolve) => {
          state.onHello = resolve;
          send(state, 1, performance.now());
        })
      ));
    }
    process.stdout.write(JSON.stringify({ event: "ready", conns: states.length }) + "\n");
    // Hold until the orchestrator is done measuring; never longer than 60 s.
    const limit = setTimeout(() => process.exit(0), 60_000);
    process.stdin.resume();
    process.stdin.on("end", () => {
      clearTimeout(limit);
      for (const state of states) state.socket.destroy();
      process.exit(0);
    });
    return;
  }
  const start = performance.now();
  for (const state of states) send(state, args.depth, start);
  await new Promise((resolve) => setTimeout(resolve, args.warmup * 1000));
  measuring = true;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  process.stdout.write(JSON.stringify({ event: "measuring" }) + "\n");
  await new Promise((resolve) => setTimeout(resolve, args.duration * 1000));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stopped = true;
  for (const state of states) state.socket.destroy();
  rtts.sort((a, b) => a - b);
  process.stdout.write(
    JSON.stringify({
      event: "result",
      messages: received,
      seconds,
      msgPerSec: received / seconds,
      mbPerSec: (received * args.size) / seconds / 1e6,
      p50: percentile(rtts, 0.5),
      p99: percentile(rtts, 0.99),
      clientCpu: (cpu.user + cpu.system) / 1e6 / seconds,
    }) + "\n",
  );
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
