/**
 * The engines for permessage-deflate, compared: fflate and pako, each used
 * the way a synchronous extension would use it, next to our
 * `PerMessageDeflate` on pako. Every iteration starts from a fresh stream
 * (as with no context takeover), at zlib's default level 6. The last group
 * keeps context over a stream of chat messages, as a server's compressor
 * does for a connection, at the window sizes and memory levels that trade
 * the memory it holds against time and ratio; the names show both.
 *
 * Run: deno bench -A bench/deflate_bench.ts
 *
 * @module
 */

import * as pako from "pako";
import * as fflate from "fflate";
import { PerMessageDeflate, type PerMessageDeflateOptions } from "../permessage_deflate.ts";
import { NO_RSV, Opcode } from "../frame.ts";
import { pointZStream, prng } from "../tests/_util.ts";

const TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
const RSV1 = { rsv1: true, rsv2: false, rsv3: false };

/** JSON-ish chat traffic: what permessage-deflate is usually asked to shrink. */
function text(size: number): Uint8Array {
  const random = prng(1);
  const words = ["user", "message", "room", "id", "true", "false", "hello", "the", "websocket"];
  let out = "";
  while (out.length < size) {
    const word = words[Math.floor(random() * words.length)];
    out += `{"type":"${word}","id":${Math.floor(random() * 1e6)},"body":"${word} ${word}s"},`;
  }
  return new TextEncoder().encode(out.slice(0, size));
}

function noise(size: number): Uint8Array {
  const random = prng(2);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(random() * 256);
  return out;
}

const scratch = new Uint8Array(64 * 1024);

/** pako's zlib API with a sync flush: the output ends in 00 00 ff ff. */
function pakoDeflate(data: Uint8Array): Uint8Array {
  const strm = new pako.ZStream();
  pako.zlibDeflateInit2(strm, 6, 8, -15, 8, pako.Z_DEFAULT_STRATEGY);
  strm.input = data;
  strm.next_in = 0;
  strm.avail_in = data.length;
  const chunks: Uint8Array[] = [];
  do {
    strm.output = scratch;
    strm.next_out = 0;
    strm.avail_out = scratch.length;
    pako.zlibDeflate(strm, pako.Z_SYNC_FLUSH);
    chunks.push(scratch.slice(0, strm.next_out));
  } while (strm.avail_out === 0);
  return join(chunks);
}

/** pako's zlib API, output collected 64 KiB at a time (bounded). */
function pakoInflate(data: Uint8Array): Uint8Array {
  const strm = new pako.ZStream();
  pako.zlibInflateInit2(strm, -15);
  const chunks: Uint8Array[] = [];
  for (const input of [data, TAIL]) {
    strm.input = input;
    strm.next_in = 0;
    strm.avail_in = input.length;
    do {
      strm.output = scratch;
      strm.next_out = 0;
      strm.avail_out = scratch.length;
      pako.zlibInflate(strm, pako.Z_SYNC_FLUSH);
      chunks.push(scratch.slice(0, strm.next_out));
    } while (strm.avail_out === 0);
  }
  return join(chunks);
}

/**
 * fflate has no sync flush (its `flush()` holds back a partial byte), so
 * its closest fit is a one-shot stream ending in a BFINAL block.
 */
function fflateDeflate(data: Uint8Array): Uint8Array {
  return fflate.deflateSync(data, { level: 6 });
}

/** fflate's streaming inflater; output arrives in one piece per push. */
function fflateInflate(data: Uint8Array): Uint8Array {
  const chunks: Uint8Array[] = [];
  const inflater = new fflate.Inflate((chunk) => chunks.push(chunk));
  inflater.push(data);
  inflater.push(TAIL);
  return join(chunks);
}

function ourDeflate(data: Uint8Array): Uint8Array {
  const ext = new PerMessageDeflate({ threshold: 0, serverNoContextTakeover: true });
  ext.accept("permessage-deflate");
  return ext.frameOutbound(Opcode.BINARY, NO_RSV, data, true).data;
}

function ourInflate(data: Uint8Array): Uint8Array {
  const ext = new PerMessageDeflate({ maxMessageSize: 1 << 30 });
  ext.accept("permessage-deflate");
  ext.frameInboundHeader(Opcode.BINARY, RSV1, data.length);
  const head = ext.frameInboundPayloadData(data);
  const tail = ext.frameInboundComplete(true);
  return tail === null ? head : join([head, tail]);
}

// A server's inbound side under client_no_context_takeover: one stream for
// many messages, reset after each, as a long-lived connection runs it.
const resetEach = new pako.ZStream();
pako.zlibInflateInit2(resetEach, -15);

/** pako's zlib API on one stream, with pako's own reset after each message. */
function pakoInflateReset(data: Uint8Array): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const input of [data, TAIL]) {
    pointZStream(resetEach, input, scratch);
    pako.zlibInflate(resetEach, pako.Z_SYNC_FLUSH);
    chunks.push(scratch.slice(0, resetEach.next_out));
  }
  pako.zlibInflateReset(resetEach);
  return join(chunks);
}

const serverSide = new PerMessageDeflate({ maxMessageSize: 1 << 30 });
serverSide.accept("permessage-deflate; client_no_context_takeover");

/** One extension for many messages, its inflater reset after each. */
function ourInflateReset(data: Uint8Array): Uint8Array {
  serverSide.frameInboundHeader(Opcode.BINARY, RSV1, data.length);
  const head = serverSide.frameInboundPayloadData(data);
  const tail = serverSide.frameInboundComplete(true);
  return tail === null ? head : join([head, tail]);
}

function join(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const SIZES: [string, number, number][] = [
  ["125 B", 125, 2000],
  ["16 KiB", 16 * 1024, 200],
  ["1 MiB", 1024 * 1024, 10],
];

{
  const data = text(125);
  const wire = pakoDeflate(data).subarray(0, -4);
  for (const decode of [pakoInflateReset, ourInflateReset]) {
    for (let i = 0; i < 3; i++) {
      if (!same(decode(wire), data)) throw new Error(`${decode.name} failed`);
    }
  }
  const group = "inflate text 125 B, one stream reset per message";
  for (
    const [engine, fn] of [["pako, zlib API, zlibInflateReset", pakoInflateReset], [
      "PerMessageDeflate, client_no_context_takeover",
      ourInflateReset,
    ]] as const
  ) {
    Deno.bench({
      name: `${group}: ${engine}`,
      group,
      baseline: fn === pakoInflateReset,
      n: 20_000,
      warmup: 2_000,
      fn: () => void fn(wire),
    });
  }
}

for (const [label, size, n] of SIZES) {
  for (const [kind, data] of [["text", text(size)], ["random", noise(size)]] as const) {
    const wire = pakoDeflate(data).subarray(0, -4); // as sent: tail stripped
    for (const decode of [pakoInflate, fflateInflate, ourInflate]) {
      if (!same(decode(wire), data)) throw new Error(`${decode.name} failed on ${kind} ${label}`);
    }
    if (!same(fflate.inflateSync(fflateDeflate(data)), data)) throw new Error("fflate round trip");
    if (!same(ourInflate(ourDeflate(data)), data)) throw new Error("our round trip");

    const warmup = Math.max(2, n / 10);
    const deflates: [string, (d: Uint8Array) => Uint8Array][] = [
      ["pako, zlib API, sync flush", pakoDeflate],
      ["fflate deflateSync (BFINAL)", fflateDeflate],
      ["PerMessageDeflate.frameOutbound", ourDeflate],
    ];
    for (const [engine, fn] of deflates) {
      Deno.bench({
        name: `deflate ${kind} ${label}: ${engine}`,
        group: `deflate ${kind} ${label}`,
        baseline: fn === pakoDeflate,
        n,
        warmup,
        fn: () => void fn(data),
      });
    }
    const inflates: [string, (d: Uint8Array) => Uint8Array][] = [
      ["pako, zlib API, 64 KiB chunks", pakoInflate],
      ["fflate Inflate stream", fflateInflate],
      ["PerMessageDeflate inbound hooks", ourInflate],
    ];
    for (const [engine, fn] of inflates) {
      Deno.bench({
        name: `inflate ${kind} ${label}: ${engine}`,
        group: `inflate ${kind} ${label}`,
        baseline: fn === pakoInflate,
        n,
        warmup,
        fn: () => void fn(wire),
      });
    }
  }
}

// Chat messages that differ from each other (ids, users, words), 40 to
// 300 bytes: a repeated message compresses to a back-reference and flatters
// every setting alike.
function chatMessages(count: number): Uint8Array[] {
  const random = prng(3);
  const words = ("the of and to in is that it for on was with as by at you this have from or " +
    "one had word but not what all were we when your can said there use an each which she do " +
    "how their if will up other about out many then them these so some her would make like")
    .split(" ");
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const encoder = new TextEncoder();
  return Array.from({ length: count }, (_, i) => {
    const body = Array.from({ length: 3 + Math.floor(random() * 40) }, () => pick(words));
    return encoder.encode(JSON.stringify({
      type: "message",
      id: 100_000 + i,
      room: pick(["lobby", "dev", "random"]),
      user: `user${Math.floor(random() * 500)}`,
      body: body.join(" "),
    }));
  });
}

{
  const messages = chatMessages(2000);
  const input = messages.reduce((n, message) => n + message.length, 0);
  const group = "deflate chat messages, context kept: compressor memory";
  const settings: [string, PerMessageDeflateOptions][] = [
    ["defaults", {}],
    ["memoryLevel 5", { memoryLevel: 5 }],
    ["serverMaxWindowBits 12, memoryLevel 5", { serverMaxWindowBits: 12, memoryLevel: 5 }],
    ["serverMaxWindowBits 10, memoryLevel 1", { serverMaxWindowBits: 10, memoryLevel: 1 }],
  ];
  for (const [label, options] of settings) {
    const server = (): PerMessageDeflate => {
      const ext = new PerMessageDeflate({ ...options, threshold: 0 });
      ext.accept("permessage-deflate");
      return ext;
    };
    const once = server();
    let output = 0;
    for (const message of messages) {
      output += once.frameOutbound(Opcode.TEXT, NO_RSV, message, true).data.length;
    }
    // What the compressor holds (pako's window, hash chains, hash table and
    // symbol buffer): 4 * 2^w + 2^(memoryLevel + 9) bytes.
    const held = 4 * 2 ** (options.serverMaxWindowBits ?? 15) +
      2 ** ((options.memoryLevel ?? 8) + 9);
    const ext = server();
    let next = 0;
    Deno.bench({
      name: `${group}: ${label} (holds ${held / 1024} KiB, sends ${
        (100 * output / input).toFixed(1)
      }% of ${(input / messages.length).toFixed(0)} B)`,
      group,
      baseline: label === "defaults",
      n: 20_000,
      warmup: 2_000,
      fn: () => {
        ext.frameOutbound(Opcode.TEXT, NO_RSV, messages[next]!, true);
        next = (next + 1) % messages.length;
      },
    });
  }
}
