/**
 * The codec without I/O: frames decoded per second (through `Connection`,
 * the whole receive path, and through `FrameDecoder` alone), MB/s for large
 * frames, frames encoded per second, and what text validation costs per
 * message. Each group's baseline is a naive hand-rolled codec (concatenate
 * what arrives, `DataView` header, byte-loop unmasking, a copy per
 * payload), so the output reads as ratios. Handshakes: bench/handshake_bench.ts.
 *
 * Run: deno bench bench/codec_bench.ts
 *
 * @module
 */

import { Connection } from "../connection.ts";
import { NO_RSV, Opcode } from "../frame.ts";
import { FrameDecoder } from "../frame_decoder.ts";
import { encodeFrame } from "../frame_encoder.ts";
import { ConnectionType } from "../state.ts";
import { clientFrames } from "./_frames.ts";

/** The naive receiver: one growing buffer, a copy per payload. */
class NaiveDecoder {
  #buffer = new Uint8Array(0);

  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    this.#buffer = joined;
  }

  next(): { opcode: number; payload: Uint8Array } | null {
    const b = this.#buffer;
    if (b.length < 2) return null;
    const view = new DataView(b.buffer, b.byteOffset, b.length);
    let length = b[1]! & 0x7f;
    let at = 2;
    if (length === 126) {
      if (b.length < 4) return null;
      length = view.getUint16(2);
      at = 4;
    } else if (length === 127) {
      if (b.length < 10) return null;
      length = Number(view.getBigUint64(2));
      at = 10;
    }
    const masked = (b[1]! & 0x80) !== 0;
    const keyAt = at;
    if (masked) at += 4;
    if (b.length < at + length) return null;
    const payload = b.slice(at, at + length);
    if (masked) { for (let i = 0; i < length; i++) payload[i]! ^= b[keyAt + (i & 3)]!; }
    this.#buffer = b.subarray(at + length);
    return { opcode: b[0]! & 0x0f, payload };
  }
}

/** The naive sender: header by `DataView`, payload copied, masked by a byte loop. */
function naiveEncode(opcode: number, payload: Uint8Array, masked: boolean): Uint8Array {
  const n = payload.length;
  const extra = n <= 125 ? 0 : n <= 0xffff ? 2 : 8;
  const header = 2 + extra + (masked ? 4 : 0);
  const out = new Uint8Array(header + n);
  const view = new DataView(out.buffer);
  out[0] = 0x80 | opcode;
  out[1] = (masked ? 0x80 : 0) | (extra === 0 ? n : extra === 2 ? 126 : 127);
  if (extra === 2) view.setUint16(2, n);
  else if (extra === 8) view.setBigUint64(2, BigInt(n));
  out.set(payload, header);
  if (masked) {
    const key = crypto.getRandomValues(new Uint8Array(4));
    out.set(key, header - 4);
    for (let i = 0; i < n; i++) out[header + i]! ^= key[i & 3]!;
  }
  return out;
}

const COUNT = 1000;
let sink = 0;

// Frames per second: 1000 binary frames an iteration. Binary payloads can
// be fed again without a copy: unmasking the same bytes again only toggles
// them, which no check looks at.
for (const size of [2, 125, 1024]) {
  const { stream, frames } = clientFrames(Opcode.BINARY, size, COUNT);
  const group = `decode ${COUNT} × ${size} B binary frames`;
  const naive = new NaiveDecoder();
  const server = new Connection(ConnectionType.SERVER);
  const decoder = new FrameDecoder(ConnectionType.SERVER);
  Deno.bench({
    name: `naive decoder, one chunk (${group})`,
    group,
    baseline: true,
    fn() {
      naive.push(stream);
      for (let f = naive.next(); f !== null; f = naive.next()) sink ^= f.payload.length;
    },
  });
  Deno.bench({
    name: `Connection, one chunk (${group})`,
    group,
    fn() {
      server.receiveData(stream);
      for (const event of server.events()) sink ^= event.constructor.length;
    },
  });
  Deno.bench({
    name: `Connection, one chunk per frame (${group})`,
    group,
    fn() {
      for (const frame of frames) {
        server.receiveData(frame);
        for (const event of server.events()) sink ^= event.constructor.length;
      }
    },
  });
  Deno.bench({
    name: `FrameDecoder alone, one chunk (${group})`,
    group,
    fn() {
      decoder.receiveBytes(stream);
      for (let f = decoder.processBuffer(); f !== null; f = decoder.processBuffer()) {
        sink ^= f.payload.length;
      }
    },
  });
}

// MB/s for large frames: whole, and in the 64 KiB reads a socket gives.
for (const [label, size] of [["64 KiB", 64 << 10], ["16 MiB", 16 << 20]] as const) {
  const { stream } = clientFrames(Opcode.BINARY, size, 1);
  const reads: Uint8Array[] = [];
  for (let at = 0; at < stream.length; at += 64 << 10) {
    reads.push(stream.subarray(at, at + (64 << 10)));
  }
  const group = `decode one ${label} binary frame`;
  const runs = size >= 1 << 20 ? { n: 30, warmup: 3 } : {};
  const naive = new NaiveDecoder();
  const server = new Connection(ConnectionType.SERVER);
  Deno.bench({
    name: `naive decoder, in 64 KiB reads (${group})`,
    group,
    baseline: true,
    ...runs,
    fn() {
      for (const read of reads) naive.push(read);
      sink ^= naive.next()!.payload.length;
    },
  });
  Deno.bench({
    name: `Connection, whole (${group})`,
    group,
    ...runs,
    fn() {
      server.receiveData(stream);
      for (const event of server.events()) sink ^= event.constructor.length;
    },
  });
  Deno.bench({
    name: `Connection, in 64 KiB reads (${group})`,
    group,
    ...runs,
    fn() {
      for (const read of reads) {
        server.receiveData(read);
        for (const event of server.events()) sink ^= event.constructor.length;
      }
    },
  });
}

// The cost of text validation per message: the same frames as TEXT and as
// BINARY. Each iteration decodes a fresh copy (text must unmask to valid
// UTF-8), so both sides pay the same copy.
for (const size of [125, 1024, 16 << 10]) {
  const text = clientFrames(Opcode.TEXT, size, 100).stream;
  const binary = clientFrames(Opcode.BINARY, size, 100).stream;
  const group = `100 messages of ${size} B: text against binary`;
  const server = new Connection(ConnectionType.SERVER);
  Deno.bench({
    name: `binary, no validation (${group})`,
    group,
    baseline: true,
    fn() {
      server.receiveData(binary.slice());
      for (const event of server.events()) sink ^= event.constructor.length;
    },
  });
  Deno.bench({
    name: `text, validated to a string (${group})`,
    group,
    fn() {
      server.receiveData(text.slice());
      for (const event of server.events()) sink ^= event.constructor.length;
    },
  });
}

// Frames encoded per second, server (unmasked) and client (masked).
for (const size of [125, 1024, 64 << 10]) {
  const payload = new Uint8Array(size).fill(0x61);
  for (const masked of [false, true]) {
    const group = `encode a ${size} B ${masked ? "masked" : "unmasked"} frame`;
    Deno.bench({
      name: `naive encoder (${group})`,
      group,
      baseline: true,
      fn() {
        sink ^= naiveEncode(Opcode.BINARY, payload, masked).length;
      },
    });
    Deno.bench({
      name: `encodeFrame (${group})`,
      group,
      fn() {
        sink ^= encodeFrame(Opcode.BINARY, payload, true, NO_RSV, masked).length;
      },
    });
  }
}

globalThis.addEventListener("unload", () => {
  if (sink === 0.5) throw new Error("unreachable: keeps the results alive");
});
