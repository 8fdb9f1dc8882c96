// Shared helpers for the tests: a seeded PRNG, ways to chop a byte stream,
// and a normal form of event sequences that chopping must not change.
import assert from "node:assert/strict";
import type * as pako from "pako";
import * as ws from "../mod.ts";

/** A small seeded PRNG (mulberry32), so random tests are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(random: () => number, length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatAll(parts);
}

/** The index of the first element where `a` and `b` differ; the shorter length when one is a prefix. */
export function firstDifference(a: ArrayLike<unknown>, b: ArrayLike<unknown>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/**
 * Fail unless `actual` holds the bytes of `expected`, naming the first
 * difference: `assert.deepEqual` diffs large arrays for minutes.
 */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected);
  if (at === expected.length && actual.length === expected.length) return;
  throw new assert.AssertionError({
    message:
      `${what}: ${actual.length} bytes against ${expected.length}, first difference at ${at}`,
  });
}

/** `concat` for a list of parts of any length (no spread into arguments). */
export function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export const bytes = (...values: number[]): Uint8Array<ArrayBuffer> => new Uint8Array(values);
export const utf8 = (text: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(text);
/** UTF-8 bytes as text, with U+FFFD for what is not valid UTF-8. */
export const fromUtf8 = (data: Uint8Array): string => new TextDecoder().decode(data);

/** Close codes a peer may send (RFC 6455 §7.4.1, §7.4.2), the edges of each range. */
export const VALID_CLOSE_CODES = [
  1000,
  1001,
  1002,
  1003,
  1007,
  1008,
  1009,
  1010,
  1011,
  1012,
  1013,
  1014,
  3000,
  3999,
  4000,
  4999,
];

/**
 * The ways every test stream is fed: whole, one byte at a time, and in
 * seeded random pieces. Each chunk is a fresh copy, since the connection
 * takes ownership of (and unmasks in place) what it is given.
 */
export function chopStyles(stream: Uint8Array, seed = 1): [string, Uint8Array[]][] {
  const styles: [string, Uint8Array[]][] = [["whole", [stream.slice()]]];
  const single: Uint8Array[] = [];
  if (stream.length <= 1 << 16) {
    for (let i = 0; i < stream.length; i++) single.push(stream.slice(i, i + 1));
    styles.push(["byte by byte", single]);
  }
  for (let round = 0; round < 3; round++) {
    const random = prng(seed * 7919 + round);
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < stream.length;) {
      const size = 1 + Math.floor(random() * Math.min(64, stream.length - at));
      pieces.push(stream.slice(at, at + size));
      at += size;
    }
    styles.push([`random split ${round}`, pieces]);
  }
  return styles;
}

/**
 * The ways a byte stream may be chopped: whole, byte by byte, and for each
 * seed random pieces of 1 to `maxPiece` bytes. "whole" is `stream` itself,
 * the pieces are copies of its bytes.
 */
export function choppingsBy(
  stream: Uint8Array,
  seeds: readonly number[],
  maxPiece: number,
): [string, Uint8Array[]][] {
  const ways: [string, Uint8Array[]][] = [
    ["whole", [stream]],
    ["byte by byte", Array.from(stream, (_, i) => stream.slice(i, i + 1))],
  ];
  for (const seed of seeds) {
    const next = prng(seed);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < stream.length;) {
      const size = 1 + Math.floor(next() * maxPiece);
      pieces.push(stream.slice(i, i + size));
      i += size;
    }
    ways.push([`random pieces (seed ${seed})`, pieces]);
  }
  return ways;
}

/** A plain-data view of an event, for deep equality. */
export type Plain =
  | { type: "text"; data: string; end: boolean }
  | { type: "bytes"; data: number[]; end: boolean }
  | { type: "ping" | "pong"; payload: number[] }
  | { type: "close"; code: number; reason: string }
  | { type: string; [key: string]: unknown };

/**
 * Events in a normal form that chopping cannot change: consecutive pieces
 * of one message are merged, so only message boundaries remain, and a
 * message left unfinished by a close is dropped.
 */
export function normalize(events: readonly ws.Event[]): Plain[] {
  const out: Plain[] = [];
  let open: { type: "text"; data: string; end: boolean } | {
    type: "bytes";
    data: number[];
    end: boolean;
  } | null = null;
  for (const event of events) {
    if (event instanceof ws.TextMessage || event instanceof ws.BytesMessage) {
      const isText = event instanceof ws.TextMessage;
      if (open === null || open.type !== (isText ? "text" : "bytes")) {
        open = isText
          ? { type: "text", data: "", end: false }
          : { type: "bytes", data: [], end: false };
        out.push(open);
      }
      if (open.type === "text") open.data += event.data as string;
      else for (const byte of event.data as Uint8Array) open.data.push(byte);
      if (event.messageFinished) {
        open.end = true;
        open = null;
      }
      continue;
    }
    open = null;
    if (event instanceof ws.Ping) out.push({ type: "ping", payload: [...event.payload] });
    else if (event instanceof ws.Pong) out.push({ type: "pong", payload: [...event.payload] });
    else if (event instanceof ws.CloseConnection) {
      // A message cut short by the close never existed for the application;
      // how much of it streamed out before the close depends on chopping.
      const last = out.at(-1);
      if (
        last !== undefined && (last.type === "text" || last.type === "bytes") &&
        last["end"] === false
      ) {
        out.pop();
      }
      out.push({ type: "close", code: event.code, reason: event.reason });
    } else out.push({ type: event.constructor.name, ...event });
  }
  return out;
}

/** Feed chunks to a connection, collecting every event after each chunk. */
export function feed(
  conn: { receiveData(data: Uint8Array | null): void; events(): Iterable<ws.Event> },
  chunks: readonly Uint8Array[],
  endOfStream = false,
): ws.Event[] {
  const events: ws.Event[] = [];
  for (const chunk of chunks) {
    conn.receiveData(chunk);
    events.push(...conn.events());
  }
  if (endOfStream) {
    conn.receiveData(null);
    events.push(...conn.events());
  }
  return events;
}

/**
 * Build one frame by hand, as a peer would, including malformed ones:
 * every field is taken literally.
 */
export function rawFrame(options: {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  payload?: Uint8Array;
  maskKey?: Uint8Array | null;
  lengthForm?: 7 | 16 | 64;
  declaredLength?: number;
}): Uint8Array {
  const payload = options.payload ?? new Uint8Array(0);
  const length = options.declaredLength ?? payload.length;
  const form = options.lengthForm ?? (length <= 125 ? 7 : length <= 0xffff ? 16 : 64);
  const key = options.maskKey === undefined ? bytes(0x37, 0xfa, 0x21, 0x3d) : options.maskKey;
  const head = [((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | options.opcode];
  const maskBit = key === null ? 0 : 0x80;
  if (form === 7) head.push(maskBit | length);
  else if (form === 16) head.push(maskBit | 126, length >>> 8, length & 0xff);
  else {
    const high = Math.floor(length / 2 ** 32);
    head.push(maskBit | 127, high >>> 24, (high >>> 16) & 0xff, (high >>> 8) & 0xff, high & 0xff);
    head.push(length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
  }
  const body = payload.slice();
  if (key !== null) {
    head.push(...key);
    for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  }
  return concat(new Uint8Array(head), body);
}

/** Point a pako stream at all of `input` and all of `output`; returns `output`. */
export function pointZStream(
  strm: pako.ZStream,
  input: Uint8Array,
  output: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> {
  strm.input = input;
  strm.next_in = 0;
  strm.avail_in = input.length;
  strm.output = output;
  strm.next_out = 0;
  strm.avail_out = output.length;
  return output;
}
