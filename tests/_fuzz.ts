// Generators, mutators, invariant checks and a child-process runner for the fuzz
// tests (tests/fuzz_test.ts, short budget) and the long-run tool
// (tools/fuzz.ts). Every case is a pure function of (target, seed): a
// failure is reproduced with `deno run -A tools/fuzz.ts --target T --seed S
// --count 1 --verbose`.
//
// The invariants checked on every input:
// - no exception other than the module's typed errors escapes;
// - the events are the same however the bytes are chopped (whole, one byte
//   at a time, random pieces);
// - the close code produced is one the RFC allows for that failure: frames
//   are also run through a small independent reference decoder (the oracle
//   below), which gives the exact events of a stream and, when it breaks
//   the protocol, the set of close codes allowed for that failure;
// - the bytes a connection or frame decoder holds stay under its limits
//   plus a small constant;
// - after a protocol error the connection yields no further events;
// - nothing hangs (cases run in a child process the runner kills after
//   --hang-ms and reports as a hang, then resumes at the next seed).
import * as ws from "../mod.ts";
import { PerMessageDeflate, type PerMessageDeflateOptions } from "../permessage_deflate.ts";
import { acceptToken } from "../handshake.ts";
import { mask } from "../mask.ts";
import { concat, prng, randomBytes, utf8, VALID_CLOSE_CODES } from "./_util.ts";

export type Random = () => number;
export type Role = "server" | "client";

export const int = (random: Random, n: number): number => Math.floor(random() * n);
export const chance = (random: Random, p: number): boolean => random() < p;
export function pick<T>(random: Random, items: readonly T[]): T {
  return items[int(random, items.length)]!;
}

export const toHex = (data: Uint8Array): string =>
  Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
export const fromHex = (hex: string): Uint8Array =>
  new Uint8Array((hex.match(/../g) ?? []).map((h) => parseInt(h, 16)));

/** An invariant did not hold; `input` is the offending stream in hex. */
export class FuzzFailure extends Error {
  readonly input: string;
  constructor(message: string, input: Uint8Array | string = "") {
    super(message);
    this.name = "FuzzFailure";
    this.input = typeof input === "string" ? input : toHex(input);
  }
}

function fail(message: string, input: Uint8Array | string = ""): never {
  throw new FuzzFailure(message, input);
}

const show = (value: unknown): string =>
  JSON.stringify(value, (_, v) => typeof v === "bigint" ? `${v}n` : v);

// ------------------------------------------------------------------ frames

/** One frame as a peer writes it, every field literal (malformed allowed). */
export interface FrameSpec {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  maskKey: Uint8Array;
  payload: Uint8Array;
  /** Overrides the length field: the 7-bit value and, for 126/127, the extended bytes. */
  length?: { form: 7 | 16 | 64; value: bigint };
}

/** Encode a frame spec, masking the payload when `masked`. */
export function encodeFrame(spec: FrameSpec): Uint8Array {
  const length = spec.length ??
    {
      form: spec.payload.length <= 125 ? 7 : spec.payload.length <= 0xffff ? 16 : 64,
      value: BigInt(spec.payload.length),
    } as const;
  const head: number[] = [
    (spec.fin ? 0x80 : 0) | ((spec.rsv & 7) << 4) | (spec.opcode & 0x0f),
  ];
  const maskBit = spec.masked ? 0x80 : 0;
  if (length.form === 7) head.push(maskBit | Number(length.value & 0x7fn));
  else if (length.form === 16) {
    const v = Number(length.value & 0xffffn);
    head.push(maskBit | 126, v >>> 8, v & 0xff);
  } else {
    head.push(maskBit | 127);
    for (let shift = 56n; shift >= 0n; shift -= 8n) {
      head.push(Number((length.value >> shift) & 0xffn));
    }
  }
  const body = spec.payload.slice();
  if (spec.masked) {
    head.push(...spec.maskKey);
    for (let i = 0; i < body.length; i++) body[i]! ^= spec.maskKey[i & 3]!;
  }
  return concat(new Uint8Array(head), body);
}

const TEXT_PIECES = [
  "a",
  "hello",
  " ",
  "é",
  "€",
  "😀",
  "𝄞",
  "\u0000",
  "\uFFFD",
  "\u007f",
  "\u0080",
  "\u07ff",
  "\u0800",
  "\uffff",
  "\u{10000}",
  "\u{10ffff}",
  "日本",
];

export function randomText(random: Random, maxPieces: number): string {
  let text = "";
  const n = int(random, maxPieces + 1);
  for (let i = 0; i < n; i++) text += pick(random, TEXT_PIECES);
  return text;
}

/** Sizes: mostly small, sometimes around the 7/16/64-bit length boundaries. */
function payloadSize(random: Random): number {
  const r = random();
  if (r < 0.6) return int(random, 20);
  if (r < 0.85) return int(random, 200);
  if (r < 0.985) return pick(random, [125, 126, 127, 1000, 0xffff - 1]);
  return pick(random, [0xffff, 0x10000, 70_000]);
}

export const INVALID_CLOSE_CODES = [
  0,
  1,
  999,
  1004,
  1005,
  1006,
  1015,
  1016,
  2000,
  2999,
  5000,
  65535,
];
export const BAD_UTF8: readonly number[][] = [
  [0xff],
  [0xfe],
  [0x80],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf0, 0x80, 0x80, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xc3],
  [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
];

/** A valid stream from the peer and the events it must give (in canonical form). */
export interface ValidStream {
  frames: FrameSpec[];
  expected: Canon[];
}

/**
 * A valid conversation from the peer of `role`: text and binary messages,
 * fragmented at random byte offsets (inside code points too), pings and
 * pongs between fragments, and maybe a close (then maybe bytes after it,
 * which must be ignored).
 */
export function validStream(random: Random, role: Role): ValidStream {
  const masked = role === "server";
  const key = () => masked && chance(random, 0.1) ? new Uint8Array(4) : randomBytes(random, 4);
  const frames: FrameSpec[] = [];
  const events: ws.Event[] = [];
  const control = (opcode: number) => {
    const payload = randomBytes(random, chance(random, 0.1) ? 125 : int(random, 12));
    frames.push({ fin: true, rsv: 0, opcode, masked, maskKey: key(), payload });
    events.push(
      opcode === 9 ? new ws.Ping({ payload }) : new ws.Pong({ payload }),
    );
  };
  const items = 1 + int(random, 6);
  for (let item = 0; item < items; item++) {
    const r = random();
    if (r < 0.2) {
      control(chance(random, 0.5) ? 9 : 10);
      continue;
    }
    const text = chance(random, 0.5);
    let data: Uint8Array;
    let message: ws.Event;
    if (text) {
      let s = randomText(random, 12);
      const size = payloadSize(random);
      if (size > 40) s += "x".repeat(size);
      data = utf8(s);
      message = new ws.TextMessage({ data: s });
    } else {
      data = randomBytes(random, payloadSize(random));
      message = new ws.BytesMessage({ data });
    }
    const cuts = [0];
    const fragments = chance(random, 0.5) ? 1 : 1 + int(random, 5);
    for (let i = 1; i < fragments; i++) cuts.push(int(random, data.length + 1));
    cuts.sort((a, b) => a - b);
    cuts.push(data.length);
    for (let i = 0; i + 1 < cuts.length; i++) {
      frames.push({
        fin: i + 2 === cuts.length,
        rsv: 0,
        opcode: i === 0 ? (text ? 1 : 2) : 0,
        masked,
        maskKey: key(),
        payload: data.slice(cuts[i], cuts[i + 1]),
      });
      if (i + 2 < cuts.length && chance(random, 0.3)) control(chance(random, 0.5) ? 9 : 10);
    }
    events.push(message);
  }
  if (chance(random, 0.5)) {
    let payload: Uint8Array = new Uint8Array(0);
    let code = 1005;
    let reason = "";
    if (chance(random, 0.8)) {
      code = pick(random, VALID_CLOSE_CODES);
      reason = randomText(random, 6);
      while (utf8(reason).length > 123) reason = reason.slice(0, -1);
      payload = concat(new Uint8Array([code >> 8, code & 0xff]), utf8(reason));
    }
    frames.push({ fin: true, rsv: 0, opcode: 8, masked, maskKey: key(), payload });
    events.push(new ws.CloseConnection({ code, reason }));
    if (chance(random, 0.3)) {
      frames.push({
        fin: true,
        rsv: 0,
        opcode: 1,
        masked,
        maskKey: key(),
        payload: utf8("after close"),
      });
    }
  }
  return { frames, expected: canon(events) };
}

const LENGTH_EXTREMES_64 = [
  0n,
  1n,
  125n,
  126n,
  0xffffn,
  0x10000n,
  0x10001n,
  2n ** 31n - 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
  64n * 1024n * 1024n,
  64n * 1024n * 1024n + 1n,
];

/** Structured mutations of a frame list. */
export function mutateFrames(random: Random, frames: FrameSpec[], role: Role): string {
  const masked = role === "server";
  const target = () => int(random, Math.max(frames.length, 1));
  const any = (): FrameSpec => ({
    fin: chance(random, 0.8),
    rsv: chance(random, 0.8) ? 0 : int(random, 8),
    opcode: chance(random, 0.7) ? pick(random, [0, 1, 2, 8, 9, 10]) : int(random, 16),
    masked: chance(random, 0.9) ? masked : !masked,
    maskKey: randomBytes(random, 4),
    payload: randomBytes(random, payloadSize(random)),
  });
  if (frames.length === 0) frames.push(any());
  const i = target();
  const frame = frames[i]!;
  const kind = int(random, 13);
  switch (kind) {
    case 0:
      frame.opcode = int(random, 16);
      return `opcode ${frame.opcode} on frame ${i}`;
    case 1:
      frame.rsv = int(random, 8);
      return `rsv ${frame.rsv} on frame ${i}`;
    case 2:
      frame.fin = !frame.fin;
      return `fin flipped on frame ${i}`;
    case 3:
      frame.masked = !frame.masked;
      return `mask flipped on frame ${i}`;
    case 4: {
      const form = pick(random, [7, 16, 64] as const);
      const value = form === 7
        ? BigInt(pick(random, [0, 1, 124, 125, 126, 127, frame.payload.length & 0x7f]))
        : form === 16
        ? BigInt(pick(random, [0, 1, 125, 126, 127, 0xffff, frame.payload.length & 0xffff]))
        : pick(random, [...LENGTH_EXTREMES_64, BigInt(frame.payload.length)]);
      frame.length = { form, value };
      return `length ${form}-bit ${value} on frame ${i}`;
    }
    case 5:
      frames.splice(i, 1);
      return `frame ${i} dropped`;
    case 6:
      frames.splice(i, 0, { ...frame });
      return `frame ${i} duplicated`;
    case 7: {
      const j = target();
      frames[i] = frames[j]!;
      frames[j] = frame;
      return `frames ${i} and ${j} swapped`;
    }
    case 8:
      frames.splice(i, 0, any());
      return `random frame inserted at ${i}`;
    case 9: {
      const bad = pick(random, BAD_UTF8);
      const at = int(random, frame.payload.length + 1);
      frame.payload = concat(
        frame.payload.subarray(0, at),
        new Uint8Array(bad),
        frame.payload.subarray(at),
      );
      return `bad UTF-8 ${toHex(new Uint8Array(bad))} in frame ${i}`;
    }
    case 10: {
      const r = random();
      const code = pick(random, chance(random, 0.5) ? INVALID_CLOSE_CODES : VALID_CLOSE_CODES);
      const reason = r < 0.3 ? new Uint8Array(pick(random, BAD_UTF8)) : utf8(randomText(random, 4));
      const payload = r < 0.15
        ? randomBytes(random, 1)
        : r < 0.2
        ? randomBytes(random, 126)
        : concat(new Uint8Array([code >> 8, code & 0xff]), reason);
      frames.splice(i, 0, {
        fin: true,
        rsv: 0,
        opcode: 8,
        masked,
        maskKey: randomBytes(random, 4),
        payload,
      });
      return `close ${code} inserted at ${i}`;
    }
    case 11:
      frame.payload = randomBytes(random, payloadSize(random));
      return `random payload on frame ${i}`;
    default: {
      frame.payload = randomBytes(random, 126 + int(random, 10));
      frame.opcode = pick(random, [8, 9, 10]);
      return `oversized control frame at ${i}`;
    }
  }
}

/** Byte-level mutations of an encoded stream. */
export function mutateBytes(random: Random, stream: Uint8Array): [Uint8Array, string] {
  const n = stream.length;
  const at = int(random, n + 1);
  switch (int(random, 7)) {
    case 0: {
      const out = stream.slice();
      const flips = 1 + int(random, 4);
      for (let k = 0; k < flips && n > 0; k++) out[int(random, n)]! ^= 1 << int(random, 8);
      return [out, `${flips} bit flips`];
    }
    case 1:
      return [stream.slice(0, at), `truncated at ${at}`];
    case 2: {
      const out = stream.slice();
      if (n > 0) out[Math.min(at, n - 1)] = pick(random, [0x00, 0xff, 0x7f, 0x80, 0x7e, 0xfe]);
      return [out, `byte ${at} set to an extreme`];
    }
    case 3: {
      const extra = randomBytes(random, 1 + int(random, 16));
      return [
        concat(stream.subarray(0, at), extra, stream.subarray(at)),
        `${extra.length} bytes inserted at ${at}`,
      ];
    }
    case 4: {
      const end = Math.min(n, at + 1 + int(random, 16));
      return [concat(stream.subarray(0, at), stream.subarray(end)), `bytes ${at}-${end} deleted`];
    }
    case 5: {
      const end = Math.min(n, at + 1 + int(random, 32));
      return [concat(stream.subarray(0, end), stream.subarray(at)), `bytes ${at}-${end} repeated`];
    }
    default: {
      // Header bytes swept: a frame's first or second byte to a random value.
      const out = stream.slice();
      if (n > 0) out[Math.min(at, n - 1)] = int(random, 256);
      return [out, `byte ${at} randomized`];
    }
  }
}

// --------------------------------------------------------- canonical events

/**
 * An event sequence in a form chopping cannot change: the pieces of a
 * message are joined into one entry placed where the message ends (control
 * frames between its fragments come first), a message cut short by a close
 * is dropped, one left unfinished at the end stays with `end: false`, and
 * the pieces of a rejection's body are joined.
 */
export type Canon = Record<string, unknown> & { type: string };

export function canon(events: readonly ws.Event[]): Canon[] {
  const out: Canon[] = [];
  let open: { text: boolean; data: string; bytes: number[] } | null = null;
  let body: Canon | null = null;
  for (const event of events) {
    if (event instanceof ws.TextMessage || event instanceof ws.BytesMessage) {
      const text = event instanceof ws.TextMessage;
      open ??= { text, data: "", bytes: [] };
      if (open.text !== text) out.push({ type: "MIXED MESSAGE TYPES" });
      if (text) open.data += event.data as string;
      else for (const byte of event.data as Uint8Array) open.bytes.push(byte);
      if (event.messageFinished) {
        out.push(messageEntry(open, true));
        open = null;
      }
      continue;
    }
    if (event instanceof ws.RejectData) {
      if (body === null) {
        body = { type: "RejectData", data: "", finished: false };
        out.push(body);
      }
      body["data"] += toHex(event.data);
      body["finished"] = event.bodyFinished;
      continue;
    }
    body = null;
    if (event instanceof ws.Ping || event instanceof ws.Pong) {
      out.push({ type: event.constructor.name, payload: toHex(event.payload) });
    } else if (event instanceof ws.CloseConnection) {
      open = null;
      out.push({ type: "Close", code: event.code, reason: event.reason });
    } else if (event instanceof ws.Request) {
      out.push({
        type: "Request",
        host: event.host,
        target: event.target,
        subprotocols: [...event.subprotocols],
        extensions: event.extensions.map((e) => typeof e === "string" ? e : e.name),
        extraHeaders: event.extraHeaders.map(([n, v]) => [n, v]),
      });
    } else if (event instanceof ws.AcceptConnection) {
      out.push({
        type: "Accept",
        subprotocol: event.subprotocol,
        extensions: event.extensions.map((e) => e.name),
        extraHeaders: event.extraHeaders.map(([n, v]) => [n, v]),
      });
    } else if (event instanceof ws.RejectConnection) {
      out.push({
        type: "Reject",
        statusCode: event.statusCode,
        headers: event.headers.map(([n, v]) => [n, v]),
        hasBody: event.hasBody,
      });
    } else out.push({ type: `unknown ${String(event)}` });
  }
  if (open !== null) out.push(messageEntry(open, false));
  return out;
}

function messageEntry(open: { text: boolean; data: string; bytes: number[] }, end: boolean): Canon {
  return open.text
    ? { type: "Text", data: open.data, end }
    : { type: "Bytes", data: toHex(new Uint8Array(open.bytes)), end };
}

// ---------------------------------------------------------------- the oracle

/** A strict UTF-8 validator that fails at the first byte no valid text can have. */
export class Utf8Check {
  #need = 0;
  #lower = 0x80;
  #upper = 0xbf;
  #count = 0;
  /** Bytes pushed up to the end of the last complete code point. */
  boundary = 0;

  push(byte: number): boolean {
    this.#count++;
    if (this.#need === 0) {
      if (byte <= 0x7f) {
        this.boundary = this.#count;
        return true;
      }
      if (byte >= 0xc2 && byte <= 0xdf) this.#need = 1;
      else if (byte >= 0xe0 && byte <= 0xef) {
        this.#need = 2;
        if (byte === 0xe0) this.#lower = 0xa0;
        if (byte === 0xed) this.#upper = 0x9f;
      } else if (byte >= 0xf0 && byte <= 0xf4) {
        this.#need = 3;
        if (byte === 0xf0) this.#lower = 0x90;
        if (byte === 0xf4) this.#upper = 0x8f;
      } else return false;
      return true;
    }
    if (byte < this.#lower || byte > this.#upper) return false;
    this.#lower = 0x80;
    this.#upper = 0xbf;
    if (--this.#need === 0) this.boundary = this.#count;
    return true;
  }

  get complete(): boolean {
    return this.#need === 0;
  }
}

export interface FrameLimits {
  maxFrameSize: number;
  maxMessageSize: number;
  maxFragments: number;
}

/** What the oracle expects of a stream fed whole. */
export interface OracleResult {
  /** The events; a failure's close is last, with code 0 and reason "(failure)". */
  events: Canon[];
  /** When the stream breaks the protocol: the close codes allowed for that failure. */
  errorCodes: number[] | null;
}

// ignoreBOM: a leading U+FEFF is text like any other (RFC 6455 §5.6 knows no
// BOM); the default would strip it, and so expect a different message.
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

function isValidCode(code: number): boolean {
  return VALID_CLOSE_CODES.includes(code) || (code >= 3000 && code <= 4999);
}

/**
 * A reference decoder, written from RFC 6455 independently of the engine
 * and as plainly as possible: the frames of a whole stream, in order, with
 * the message rules, up to the first violation (§5.2-§5.6, §7.4).
 */
export function referenceDecode(stream: Uint8Array, role: Role, limits: FrameLimits): OracleResult {
  const events: ws.Event[] = [];
  const done = (errorCodes: number[] | null): OracleResult => {
    if (errorCodes !== null) events.push(new ws.CloseConnection({ code: 0, reason: "(failure)" }));
    return { events: canon(events), errorCodes };
  };
  let at = 0;
  let message: {
    text: boolean;
    size: number;
    fragments: number;
    utf8: Utf8Check;
    bytes: number[];
    emitted: number;
  } | null = null;
  for (;;) {
    if (stream.length - at < 2) return done(null);
    const b0 = stream[at]!;
    const b1 = stream[at + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const rsv = (b0 >> 4) & 7;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    const len7 = b1 & 0x7f;
    const control = opcode >= 8;
    if ((opcode > 2 && opcode < 8) || opcode > 10) return done([1002]);
    if (control && (!fin || len7 > 125)) return done([1002]);
    let headerLength = 2;
    let length = BigInt(len7);
    if (len7 === 126) {
      if (stream.length - at < 4) return done(null);
      length = BigInt((stream[at + 2]! << 8) | stream[at + 3]!);
      headerLength = 4;
    } else if (len7 === 127) {
      if (stream.length - at < 10) return done(null);
      length = 0n;
      for (let i = 0; i < 8; i++) length = (length << 8n) | BigInt(stream[at + 2 + i]!);
      headerLength = 10;
    }
    // Every header violation found once the length is known; which one an
    // implementation reports first is its choice.
    const codes = new Set<number>();
    if (len7 === 126 && length < 126n) codes.add(1002);
    if (len7 === 127 && (length >= 2n ** 63n || length < 0x10000n)) codes.add(1002);
    if (rsv !== 0) codes.add(1002);
    if (masked !== (role === "server")) codes.add(1002);
    if (length > BigInt(limits.maxFrameSize)) codes.add(1009);
    if (codes.size > 0) return done([...codes]);
    const key = stream.subarray(at + headerLength, at + headerLength + 4);
    if (masked) {
      if (key.length < 4) return done(null);
      headerLength += 4;
    }
    const start = at + headerLength;
    const available = Math.min(Number(length), stream.length - start);
    const payload = stream.slice(start, start + available);
    if (masked) { for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!; }
    const whole = available === Number(length);
    if (control) {
      if (!whole) return done(null);
      if (opcode === 9) events.push(new ws.Ping({ payload }));
      else if (opcode === 10) events.push(new ws.Pong({ payload }));
      else {
        if (payload.length === 0) {
          events.push(new ws.CloseConnection({ code: 1005 }));
          return done(null);
        }
        if (payload.length === 1) return done([1002]);
        const code = (payload[0]! << 8) | payload[1]!;
        if (!isValidCode(code)) return done([1002]);
        const check = new Utf8Check();
        for (const byte of payload.subarray(2)) if (!check.push(byte)) return done([1007]);
        if (!check.complete) return done([1007]);
        events.push(
          new ws.CloseConnection({ code, reason: utf8Decoder.decode(payload.subarray(2)) }),
        );
        return done(null);
      }
      at = start + available;
      continue;
    }
    // A data frame: nothing happens until a payload byte arrives (or it is empty).
    if (available === 0 && length > 0n) return done(null);
    if (message === null) {
      if (opcode === 0) return done([1002]);
      message = {
        text: opcode === 1,
        size: 0,
        fragments: 0,
        utf8: new Utf8Check(),
        bytes: [],
        emitted: 0,
      };
    } else if (opcode !== 0) return done([1002]);
    if (++message.fragments > limits.maxFragments) return done([1009]);
    // The bytes within the size limit are judged before the limit: a text
    // message whose first bytes are already invalid fails with 1007.
    const room = limits.maxMessageSize - message.size;
    message.size += available;
    if (message.text) {
      for (const byte of payload.subarray(0, room)) {
        if (!message.utf8.push(byte)) return done([1007]);
      }
    }
    if (message.size > limits.maxMessageSize) return done([1009]);
    const last = whole && fin;
    if (message.text) {
      if (last && !message.utf8.complete) return done([1007]);
      message.bytes.push(...payload);
      const boundary = message.utf8.boundary;
      const piece = utf8Decoder.decode(
        new Uint8Array(message.bytes.slice(message.emitted, boundary)),
      );
      message.emitted = boundary;
      events.push(new ws.TextMessage({ data: piece, frameFinished: whole, messageFinished: last }));
    } else {
      events.push(
        new ws.BytesMessage({ data: payload, frameFinished: whole, messageFinished: last }),
      );
    }
    if (last) message = null;
    if (!whole) return done(null);
    at = start + available;
  }
}

/** The codes of the close frames a lenient walk over the stream finds. */
export function closeCodesIn(stream: Uint8Array): number[] {
  const codes: number[] = [];
  let at = 0;
  while (stream.length - at >= 2) {
    const masked = (stream[at + 1]! & 0x80) !== 0;
    let length = stream[at + 1]! & 0x7f;
    let header = 2;
    if (length === 126) {
      length = ((stream[at + 2] ?? 0) << 8) | (stream[at + 3] ?? 0);
      header = 4;
    } else if (length === 127) {
      length = 0;
      for (let i = 0; i < 8; i++) length = length * 256 + (stream[at + 2 + i] ?? 0);
      header = 10;
    }
    const key = stream.subarray(at + header, at + header + 4);
    if (masked) header += 4;
    if ((stream[at]! & 0x0f) === 8) {
      if (length === 0) codes.push(1005);
      if (length >= 2 && stream.length >= at + header + 2) {
        const a = stream[at + header]! ^ (masked ? key[0] ?? 0 : 0);
        const b = stream[at + header + 1]! ^ (masked ? key[1] ?? 0 : 0);
        codes.push((a << 8) | b);
      }
    }
    at += header + length;
  }
  return codes;
}

// ------------------------------------------------------------- the harness

const PROTOCOL_CODES = [1002, 1007, 1009];

/** What one way of feeding a stream gave. */
interface Outcome {
  events: ws.Event[];
  /** A typed error that escaped, described; `null` when none did. */
  error: string | null;
}

function describeError(error: unknown, input: Uint8Array): string {
  if (error instanceof ws.RemoteProtocolError) {
    const hint = error.eventHint;
    const what = hint === null
      ? "null"
      : hint instanceof ws.RejectConnection
      ? `Reject ${hint.statusCode}`
      : `Close ${hint.code}`;
    return `RemoteProtocolError(${what}): ${error.message}`;
  }
  if (error instanceof ws.LocalProtocolError) return `LocalProtocolError: ${error.message}`;
  const text = error instanceof Error
    ? `${error.name}: ${error.message}\n${error.stack}`
    : String(error);
  fail(`untyped exception escaped: ${text}`, input);
}

interface Receiver {
  receiveData(data: Uint8Array | null): void;
  events(): Iterable<ws.Event>;
  nextEvent(): ws.Event | null;
  peekEvent(): ws.Event | null;
  readonly state: ws.ConnectionState;
}

/**
 * Feed chunks (fresh copies) to a connection, adding its events to
 * `events` and telling `onEvent`. After every other chunk each event is
 * peeked at before it is taken, as the drivers do: chopping then also
 * checks that peeking changes nothing.
 */
function receiveAll(
  conn: Receiver,
  chunks: readonly Uint8Array[],
  events: ws.Event[],
  onEvent?: (e: ws.Event) => void,
): void {
  for (const [i, chunk] of chunks.entries()) {
    conn.receiveData(chunk.slice());
    let event;
    while ((event = i % 2 === 1 ? conn.peekEvent() : conn.nextEvent()) !== null) {
      if (i % 2 === 1 && conn.nextEvent() !== event) fail("a peeked event was not the next", chunk);
      events.push(event);
      onEvent?.(event);
    }
  }
}

/** Feed chunks (fresh copies) to a connection, collecting events; stops at a thrown error. */
function feedAll(
  conn: Receiver,
  chunks: readonly Uint8Array[],
  input: Uint8Array,
  onEvent?: (e: ws.Event) => void,
): Outcome {
  const events: ws.Event[] = [];
  try {
    receiveAll(conn, chunks, events, onEvent);
  } catch (error) {
    return { events, error: describeError(error, input) };
  }
  return { events, error: null };
}

/**
 * The chop styles of `_util.ts` (whole, byte by byte, three random splits),
 * copied to keep byte by byte to streams up to 1 KiB and to make the random
 * pieces larger for large streams: the fuzz budget goes to more inputs.
 */
export function chops(stream: Uint8Array, seed: number): [string, Uint8Array[]][] {
  const styles: [string, Uint8Array[]][] = [["whole", [stream]]];
  if (stream.length <= 1024) {
    const single: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i++) single.push(stream.subarray(i, i + 1));
    styles.push(["byte by byte", single]);
  }
  const maxPiece = stream.length <= 4096 ? 64 : 4096;
  for (let round = 0; round < 3; round++) {
    const random = prng(seed * 7919 + round);
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < stream.length;) {
      const size = 1 + Math.floor(random() * Math.min(maxPiece, stream.length - at));
      pieces.push(stream.subarray(at, at + size));
      at += size;
    }
    styles.push([`random split ${round}`, pieces]);
  }
  return styles;
}

function sameOutcomes(
  outcomes: [string, Outcome][],
  input: Uint8Array,
  note: string,
  ignoreFailureReasons = false,
): Canon[] {
  // The reason of a failure's close is the engine's own sentence; where two
  // checks can both fire (corrupt DEFLATE output that is also bad UTF-8),
  // which one fires first may depend on chopping and only the code counts.
  const form = (events: ws.Event[]) =>
    canon(events).map((entry) =>
      ignoreFailureReasons && entry.type === "Close" &&
        PROTOCOL_CODES.includes(entry["code"] as number)
        ? { ...entry, reason: "(failure)" }
        : entry
    );
  const [firstName, first] = outcomes[0]!;
  const reference = show({ events: form(first.events), error: first.error });
  for (const [name, outcome] of outcomes.slice(1)) {
    const got = show({ events: form(outcome.events), error: outcome.error });
    if (got !== reference) {
      fail(
        `chopping changed the outcome (${note}):\n  ${firstName}: ${reference}\n  ${name}: ${got}`,
        input,
      );
    }
  }
  return canon(first.events);
}

/**
 * After a close (a frame or a protocol error), more bytes give no events;
 * end of stream gives at most the 1006 close wsproto also gives.
 */
function checkQuietAfterClose(conn: Receiver, input: Uint8Array, random: Random): void {
  const more = [
    encodeFrame({
      fin: true,
      rsv: 0,
      opcode: 1,
      masked: true,
      maskKey: new Uint8Array(4),
      payload: utf8("more"),
    }),
    randomBytes(random, 1 + int(random, 64)),
  ];
  for (const chunk of more) {
    try {
      conn.receiveData(chunk);
    } catch (error) {
      if (conn.state === ws.ConnectionState.CLOSED && error instanceof ws.LocalProtocolError) {
        continue;
      }
      fail(`data after the close threw: ${describeError(error, input)}`, input);
    }
    const events = [...conn.events()];
    if (events.length > 0) fail(`data after the close gave events: ${show(canon(events))}`, input);
  }
  conn.receiveData(null);
  const last = [...conn.events()];
  if (
    last.length > 1 ||
    (last.length === 1 && !(last[0] instanceof ws.CloseConnection && last[0].code === 1006))
  ) {
    fail(`end of stream after the close gave ${show(canon(last))}`, input);
  }
}

/** The largest number of bytes a frame decoder may hold once drained: a header and a control payload. */
export const DECODER_SLACK = 14 + 125;

/** Feed a frame decoder and check it never holds more than a header and a control frame. */
function checkDecoderBound(
  role: Role,
  chunks: readonly Uint8Array[],
  limits: Partial<ws.Limits>,
  input: Uint8Array,
): void {
  const decoder = new ws.FrameDecoder(
    role === "server" ? ws.ConnectionType.SERVER : ws.ConnectionType.CLIENT,
    {
      maxFrameSize: limits.maxFrameSize ?? ws.DEFAULT_LIMITS.maxFrameSize,
    },
  );
  try {
    for (const chunk of chunks) {
      decoder.receiveBytes(chunk.slice());
      while (decoder.processBuffer() !== null) { /* drain */ }
      if (decoder.bufferedAmount > DECODER_SLACK) {
        fail(`the frame decoder holds ${decoder.bufferedAmount} bytes after draining`, input);
      }
    }
  } catch (error) {
    if (error instanceof FuzzFailure) throw error;
    if (
      !(error instanceof ws.RemoteProtocolError && error.eventHint instanceof ws.CloseConnection)
    ) {
      describeError(error, input);
      fail(`the frame decoder threw ${describeError(error, input)}`, input);
    }
    if (!PROTOCOL_CODES.includes(error.eventHint.code)) {
      fail(`the frame decoder failed with close code ${error.eventHint.code}`, input);
    }
  }
}

function roleType(role: Role): ws.ConnectionType {
  return role === "server" ? ws.ConnectionType.SERVER : ws.ConnectionType.CLIENT;
}

function randomLimits(random: Random): Partial<ws.Limits> {
  if (chance(random, 0.7)) return {};
  return {
    maxFrameSize: int(random, 300),
    maxMessageSize: int(random, 600),
    maxFragments: int(random, 8),
  };
}

function frameLimits(limits: Partial<ws.Limits>): FrameLimits {
  return {
    maxFrameSize: limits.maxFrameSize ?? ws.DEFAULT_LIMITS.maxFrameSize,
    maxMessageSize: limits.maxMessageSize ?? ws.DEFAULT_LIMITS.maxMessageSize,
    maxFragments: limits.maxFragments ?? ws.DEFAULT_LIMITS.maxFragments,
  };
}

/**
 * The invariants on one frame stream after the upgrade: chop-invariance,
 * typed errors only, agreement with the oracle (events and allowed close
 * codes), quiet after a close, bounded decoder memory.
 */
export function checkFrameStream(
  stream: Uint8Array,
  role: Role,
  limits: Partial<ws.Limits>,
  seed: number,
  expected: Canon[] | null,
): void {
  const random = prng(seed ^ 0x5bd1e995);
  const make = () => new ws.Connection(roleType(role), { limits });
  const outcomes: [string, Outcome][] = [];
  let wholeConn: ws.Connection | null = null;
  for (const [name, chunks] of chops(stream, seed)) {
    const conn = make();
    outcomes.push([name, feedAll(conn, chunks, stream)]);
    wholeConn ??= conn;
  }
  const got = sameOutcomes(outcomes, stream, `${role}, limits ${show(limits)}`);
  const whole = outcomes[0]![1];
  if (whole.error !== null) fail(`a typed error escaped a Connection: ${whole.error}`, stream);
  if (expected !== null && show(got) !== show(expected)) {
    fail(
      `a valid stream gave the wrong events:\n  expected ${show(expected)}\n  got      ${
        show(got)
      }`,
      stream,
    );
  }
  const oracle = referenceDecode(stream, role, frameLimits(limits));
  const compared = got.slice();
  const last = compared.at(-1);
  if (oracle.errorCodes !== null) {
    if (last?.type !== "Close" || !oracle.errorCodes.includes(last["code"] as number)) {
      fail(
        `the stream breaks the protocol (allowed close codes ${oracle.errorCodes}) but the events were ${
          show(got)
        }`,
        stream,
      );
    }
    compared[compared.length - 1] = { type: "Close", code: 0, reason: "(failure)" };
  }
  if (show(compared) !== show(oracle.events)) {
    fail(
      `the events differ from the reference decoder's:\n  reference ${
        show(oracle.events)
      }\n  engine    ${show(got)}`,
      stream,
    );
  }
  // Every close is either the peer's own (a valid code) or a failure's code.
  for (const entry of got) {
    if (entry.type === "Close" && !isValidCode(entry["code"] as number) && entry["code"] !== 1005) {
      fail(`close code ${entry["code"]} is not allowed`, stream);
    }
  }
  if (last?.type === "Close") checkQuietAfterClose(wholeConn!, stream, random);
  else {
    // End of stream before a close: exactly one 1006.
    wholeConn!.receiveData(null);
    const end = canon([...wholeConn!.events()]);
    if (show(end) !== show([{ type: "Close", code: 1006, reason: "" }])) {
      fail(`end of stream gave ${show(end)}`, stream);
    }
  }
  checkDecoderBound(role, chops(stream, seed).at(-1)![1], limits, stream);
}

/** Encode frames, then apply byte mutations. */
export function buildFrameCase(
  random: Random,
  role: Role,
): { stream: Uint8Array; expected: Canon[] | null; notes: string[] } {
  const valid = validStream(random, role);
  const notes: string[] = [];
  let mutated = false;
  if (chance(random, 0.85)) {
    const n = 1 + int(random, 3);
    for (let i = 0; i < n; i++) notes.push(mutateFrames(random, valid.frames, role));
    mutated = true;
  }
  let stream = concat(...valid.frames.map(encodeFrame));
  if (chance(random, 0.4)) {
    const n = 1 + int(random, 2);
    for (let i = 0; i < n; i++) {
      const [out, note] = mutateBytes(random, stream);
      stream = out;
      notes.push(note);
    }
    mutated = true;
  }
  return { stream, expected: mutated ? null : valid.expected, notes };
}

function framesTarget(role: Role) {
  return (seed: number): void => {
    const random = prng(seed);
    const limits = randomLimits(random);
    const { stream, expected, notes } = buildFrameCase(random, role);
    try {
      checkFrameStream(stream, role, expected === null ? limits : {}, seed, expected);
    } catch (error) {
      if (error instanceof FuzzFailure) {
        throw new FuzzFailure(
          `${error.message}\n  mutations: ${notes.join("; ") || "none"}`,
          error.input,
        );
      }
      throw error;
    }
  };
}

// ------------------------------------------------------ permessage-deflate

function randomDeflateOptions(random: Random): PerMessageDeflateOptions {
  const options: PerMessageDeflateOptions = {};
  if (chance(random, 0.3)) options.clientNoContextTakeover = true;
  if (chance(random, 0.3)) options.serverNoContextTakeover = true;
  if (chance(random, 0.3)) options.clientMaxWindowBits = 8 + int(random, 8);
  if (chance(random, 0.3)) options.serverMaxWindowBits = 8 + int(random, 8);
  options.threshold = pick(random, [0, 0, 8, 32]);
  if (chance(random, 0.3)) options.memoryLevel = 1 + int(random, 9);
  if (chance(random, 0.2)) options.compressionLevel = int(random, 10);
  return options;
}

/** A negotiated pair: `local` for the connection under test, `peer` for the sender. */
function negotiate(
  role: Role,
  localOptions: PerMessageDeflateOptions,
  peerOptions: PerMessageDeflateOptions,
) {
  const local = new PerMessageDeflate(localOptions);
  const peer = new PerMessageDeflate(peerOptions);
  const [client, server] = role === "client" ? [local, peer] : [peer, local];
  const answer = server.accept(client.offer());
  if (answer === null) return null;
  client.finalize(answer);
  return { local, peer };
}

/** A copy of a masked frame, masked with `key` instead of the key it has. */
function remask(frame: Uint8Array, key: Uint8Array): Uint8Array {
  const out = frame.slice();
  const len7 = out[1]! & 0x7f;
  const at = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
  const payload = out.subarray(at + 4);
  mask(payload, out.subarray(at, at + 4)); // unmask with the old key
  mask(payload, key);
  out.set(key, at);
  return out;
}

/** A stored DEFLATE block (RFC 1951 §3.2.4), final or not. */
export function storedBlock(data: Uint8Array, final: boolean): Uint8Array {
  const n = data.length;
  return concat(
    new Uint8Array([final ? 1 : 0, n & 0xff, n >> 8, ~n & 0xff, (~n >> 8) & 0xff]),
    data,
  );
}

/**
 * A permessage-deflate case: options for the connection under test
 * (`local`) and its peer that negotiate, limits, and the peer's stream,
 * valid (then `events` is what it says) or broken (`mutated`); `random`
 * goes on where the case left it.
 */
export interface DeflateCase {
  random: Random;
  stream: Uint8Array;
  localOptions: PerMessageDeflateOptions;
  peerOptions: PerMessageDeflateOptions;
  limits: Partial<ws.Limits>;
  events: ws.Event[];
  notes: string[];
  mutated: boolean;
}

/** The permessage-deflate case of `seed` for a connection of `role`. */
export function buildDeflateCase(seed: number, role: Role): DeflateCase {
  const random = prng(seed);
  let localOptions = randomDeflateOptions(random);
  let peerOptions = randomDeflateOptions(random);
  if (negotiate(role, localOptions, peerOptions) === null) {
    localOptions = { threshold: 0 };
    peerOptions = { threshold: 0 };
  }
  if (chance(random, 0.3)) localOptions.maxMessageSize = int(random, 2000);
  const limits: Partial<ws.Limits> = chance(random, 0.2)
    ? { maxMessageSize: int(random, 2000) }
    : {};
  const { peer } = negotiate(role, localOptions, peerOptions)!;
  const masked = role === "server";
  const peerType = role === "server" ? ws.ConnectionType.CLIENT : ws.ConnectionType.SERVER;
  const encoder = new ws.FrameEncoder(peerType, { extensions: [peer] });
  // The encoder masks with random keys; re-masked with seeded ones, every
  // case is the same bytes each time its seed runs.
  const keys = prng(seed ^ 0x6b657973);
  const seeded = (frame: Uint8Array) => masked ? remask(frame, randomBytes(keys, 4)) : frame;
  const parts: Uint8Array[] = [];
  const events: ws.Event[] = [];
  const handBuilt = chance(random, 0.3);
  const items = 1 + int(random, 5);
  for (let item = 0; item < items; item++) {
    if (chance(random, 0.15)) {
      const payload = randomBytes(random, int(random, 20));
      parts.push(seeded(encoder.encodeControl(ws.Opcode.PING, payload)));
      events.push(new ws.Ping({ payload }));
      continue;
    }
    const text = chance(random, 0.5);
    const size = chance(random, 0.03) ? 3000 + int(random, 70_000) : int(random, 300);
    const compressible = chance(random, 0.6);
    let data: Uint8Array;
    let string = "";
    if (text) {
      string = randomText(random, 10);
      let length = utf8(string).length;
      while (length < size) {
        const more = compressible ? "abcabcabd " : randomText(random, 10);
        string += more;
        length += utf8(more).length;
      }
      data = utf8(string);
    } else {
      data = compressible ? new Uint8Array(size).fill(int(random, 256)) : randomBytes(random, size);
    }
    events.push(text ? new ws.TextMessage({ data: string }) : new ws.BytesMessage({ data }));
    if (handBuilt) {
      // Stored blocks, the last one maybe with BFINAL (RFC 7692 §7.2.3.4).
      const blocks: Uint8Array[] = [];
      let at = 0;
      do {
        const take = Math.min(data.length - at, int(random, 400));
        const end = at + take >= data.length;
        blocks.push(storedBlock(data.subarray(at, at + take), end && chance(random, 0.5)));
        at += take;
      } while (at < data.length);
      // A message that does not end in a final block ends in the header
      // bits of an empty stored block, whose LEN and NLEN are the tail the
      // receiver appends (RFC 7692 §7.2.1).
      if ((blocks.at(-1)![0]! & 1) === 0) blocks.push(new Uint8Array([0]));
      const body = concat(...blocks);
      const cut = chance(random, 0.5) ? body.length : int(random, body.length + 1);
      parts.push(
        encodeFrame({
          fin: cut === body.length,
          rsv: 4,
          opcode: text ? 1 : 2,
          masked,
          maskKey: randomBytes(random, 4),
          payload: body.subarray(0, cut),
        }),
      );
      if (cut < body.length) {
        parts.push(
          encodeFrame({
            fin: true,
            rsv: 0,
            opcode: 0,
            masked,
            maskKey: randomBytes(random, 4),
            payload: body.subarray(cut),
          }),
        );
      }
      continue;
    }
    const pieces = chance(random, 0.6) ? 1 : 2 + int(random, 3);
    if (text) {
      const chars = Array.from(string);
      const cuts = [
        0,
        ...Array.from({ length: pieces - 1 }, () => int(random, chars.length + 1)).sort((a, b) =>
          a - b
        ),
        chars.length,
      ];
      for (let i = 0; i + 1 < cuts.length; i++) {
        parts.push(seeded(
          encoder.encodeData(chars.slice(cuts[i], cuts[i + 1]).join(""), i + 2 === cuts.length),
        ));
      }
    } else {
      const cuts = [
        0,
        ...Array.from({ length: pieces - 1 }, () => int(random, data.length + 1)).sort((a, b) =>
          a - b
        ),
        data.length,
      ];
      for (let i = 0; i + 1 < cuts.length; i++) {
        parts.push(
          seeded(encoder.encodeData(data.slice(cuts[i], cuts[i + 1]), i + 2 === cuts.length)),
        );
      }
    }
  }
  if (chance(random, 0.3)) {
    parts.push(seeded(encoder.encodeClose(1000, "bye")));
    events.push(new ws.CloseConnection({ code: 1000, reason: "bye" }));
  }
  let stream = concat(...parts);
  const notes: string[] = [];
  let mutated = localOptions.maxMessageSize !== undefined || limits.maxMessageSize !== undefined;
  if (chance(random, 0.5)) {
    mutated = true;
    const r = random();
    if (r < 0.4) {
      const [out, note] = mutateBytes(random, stream);
      stream = out;
      notes.push(note);
    } else {
      // A compressed frame of garbage, or of a block type sweep, or a
      // compressed control or continuation frame.
      const garbage = r < 0.7
        ? randomBytes(random, 1 + int(random, 40))
        : concat(new Uint8Array([int(random, 8)]), randomBytes(random, int(random, 8)));
      const frame = encodeFrame({
        fin: chance(random, 0.8),
        rsv: chance(random, 0.8) ? 4 : int(random, 8),
        opcode: pick(random, [0, 1, 2, 2, 8, 9]),
        masked,
        maskKey: randomBytes(random, 4),
        payload: garbage,
      });
      const at = chance(random, 0.5) ? stream.length : int(random, stream.length + 1);
      stream = concat(stream.subarray(0, at), frame, stream.subarray(at));
      notes.push(`compressed garbage ${toHex(frame)} at ${at}`);
    }
  }
  return { random, stream, localOptions, peerOptions, limits, events, notes, mutated };
}

function deflateTarget(role: Role) {
  return (seed: number): void => {
    const { random, stream, localOptions, peerOptions, limits, events, notes, mutated } =
      buildDeflateCase(seed, role);
    const allowed = [...PROTOCOL_CODES, ...closeCodesIn(stream)];
    const outcomes: [string, Outcome][] = [];
    let wholeConn: ws.Connection | null = null;
    for (const [name, chunks] of chops(stream, seed)) {
      const { local } = negotiate(role, localOptions, peerOptions)!;
      const conn = new ws.Connection(roleType(role), { extensions: [local], limits });
      outcomes.push([name, feedAll(conn, chunks, stream)]);
      wholeConn ??= conn;
    }
    const context = `deflate ${role}, local ${show(localOptions)}, peer ${
      show(peerOptions)
    }, limits ${show(limits)}, ${notes.join("; ") || "unmutated"}`;
    try {
      const got = sameOutcomes(outcomes, stream, context, true);
      const whole = outcomes[0]![1];
      if (whole.error !== null) fail(`a typed error escaped a Connection: ${whole.error}`, stream);
      if (!mutated && show(got) !== show(canon(events))) {
        fail(
          `a valid compressed stream gave the wrong events:\n  expected ${
            show(canon(events)).slice(0, 2000)
          }\n  got      ${show(got).slice(0, 2000)}`,
          stream,
        );
      }
      const last = got.at(-1);
      for (const entry of got) {
        if (entry.type === "Close" && !allowed.includes(entry["code"] as number)) {
          fail(`close code ${entry["code"]} is not allowed here (${allowed})`, stream);
        }
      }
      if (last?.type === "Close") checkQuietAfterClose(wholeConn!, stream, random);
    } catch (error) {
      if (error instanceof FuzzFailure) {
        throw new FuzzFailure(`${error.message}\n  ${context}`, error.input);
      }
      throw error;
    }
  };
}

// ---------------------------------------------------------------- handshake

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

function randomToken(random: Random, max = 12): string {
  let s = "";
  const n = 1 + int(random, max);
  for (let i = 0; i < n; i++) s += TOKEN_CHARS[int(random, TOKEN_CHARS.length)];
  return s;
}

/** A string of any bytes 0-255 (one code unit each), for header soup. */
function randomLatin1(random: Random, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) {
    s += String.fromCharCode(chance(random, 0.8) ? 0x20 + int(random, 0x5f) : int(random, 256));
  }
  return s;
}

function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** Mutations of an HTTP head given as lines; the body or frames behind it are kept. */
function mutateHead(random: Random, lines: string[], isRequest: boolean): string {
  const i = lines.length > 1 ? 1 + int(random, lines.length - 1) : 0;
  switch (int(random, 12)) {
    case 0: {
      const line = `${chance(random, 0.8) ? randomToken(random) : randomLatin1(random, 8)}: ${
        randomLatin1(random, int(random, 30))
      }`;
      lines.splice(1 + int(random, lines.length), 0, line);
      return "random header added";
    }
    case 1:
      lines.splice(i, 0, lines[i]!);
      return `header ${i} repeated`;
    case 2:
      if (lines.length > 1) lines.splice(i, 1);
      return `header ${i} removed`;
    case 3: {
      const rest = lines.slice(1);
      for (let k = rest.length - 1; k > 0; k--) {
        const j = int(random, k + 1);
        [rest[k], rest[j]] = [rest[j]!, rest[k]!];
      }
      lines.splice(1, rest.length, ...rest);
      return "headers shuffled";
    }
    case 4:
      lines[i] = chance(random, 0.5) ? lines[i]!.toUpperCase() : lines[i]!.toLowerCase();
      return `case of line ${i} changed`;
    case 5: {
      const size = pick(random, [1000, 8000, 16_000, 16_384, 20_000, 70_000]);
      lines.splice(1, 0, `X-Huge: ${"h".repeat(size)}`);
      return `huge line of ${size}`;
    }
    case 6: {
      const k = int(random, lines.length);
      const at = int(random, lines[k]!.length + 1);
      lines[k] = lines[k]!.slice(0, at) + "\u0000" + lines[k]!.slice(at);
      return `NUL in line ${k} at ${at}`;
    }
    case 7: {
      const n = pick(random, [10, 50, 98, 99, 100, 101, 150]);
      for (let k = 0; k < n; k++) lines.splice(1, 0, `X-H${k}: ${k}`);
      return `${n} headers added`;
    }
    case 8: {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      const variants = [
        ` ${line}`,
        `\t${line}`,
        colon > 0 ? `${line.slice(0, colon)} ${line.slice(colon)}` : line,
        `${line} \t `,
        `${line}\r`,
      ];
      lines[i] = pick(random, variants);
      return `whitespace around line ${i}`;
    }
    case 9: {
      const starts = isRequest
        ? [
          "GET / HTTP/1.0",
          "GET / HTTP/2.0",
          "POST / HTTP/1.1",
          "get / HTTP/1.1",
          "GET  / HTTP/1.1",
          "GET /a b HTTP/1.1",
          "GET * HTTP/1.1",
          "GET http://x/ HTTP/1.1",
          "GET / HTTP/1.1 ",
          "GET / HTTP/1.10",
          "GET / HTTP/1.2",
          "GET",
          "",
          "GET /\u00ff HTTP/1.1",
        ]
        : [
          "HTTP/1.1 101",
          "HTTP/1.0 101 Switching Protocols",
          "HTTP/2 101 x",
          "HTTP/1.1 1011 x",
          "HTTP/1.1 200 OK",
          "HTTP/1.1 000 x",
          "HTTP/1.1 099 x",
          "HTTP/1.1 199 x",
          "http/1.1 101 x",
          "HTTP/1.1 101 Sw\u0001",
          "HTTP/1.1  101 x",
          "",
        ];
      lines[0] = pick(random, starts);
      return `start line ${JSON.stringify(lines[0])}`;
    }
    case 10: {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      const value = pick(random, [
        "",
        ",",
        '"',
        '"a,b"',
        "a, , b",
        randomLatin1(random, 10),
        "websocket, h2c",
        "13, 8",
        "permessage-deflate; x",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "chat, chat",
      ]);
      if (colon > 0) lines[i] = `${line.slice(0, colon)}: ${value}`;
      return `value of line ${i} set to ${JSON.stringify(value)}`;
    }
    default: {
      const k = int(random, lines.length);
      lines[k] = randomLatin1(random, int(random, 40));
      return `line ${k} replaced by soup`;
    }
  }
}

/** Join head lines; separators may be broken (missing CRLF, bare LF or CR). */
function joinHead(random: Random, lines: string[], notes: string[]): Uint8Array {
  let text = "";
  const broken = chance(random, 0.15);
  for (let k = 0; k < lines.length; k++) {
    let sep = "\r\n";
    if (broken && chance(random, 0.3)) {
      sep = pick(random, ["\n", "\r", "", "\r\r\n", "\n\r"]);
      notes.push(`line ${k} ends in ${JSON.stringify(sep)}`);
    }
    text += lines[k] + sep;
  }
  const end = broken && chance(random, 0.3) ? pick(random, ["", "\n", "\r", "\r\n\r\n"]) : "\r\n";
  if (end !== "\r\n") notes.push(`head ends in ${JSON.stringify(end)}`);
  return latin1Bytes(text + end);
}

function handshakeLimits(random: Random): Partial<ws.Limits> {
  if (chance(random, 0.75)) return {};
  return { maxHeaderBytes: 50 + int(random, 2000), maxHeaderCount: int(random, 12) };
}

const REQUEST_STATUSES = [400, 405, 426, 431, 505];

/**
 * A server handshake case: limits, and a client's request (valid, or broken
 * in its head or bytes, `notes` says how) maybe followed by frames (`valid`,
 * when they were made valid); `deflate` says whether the server accepts
 * permessage-deflate, and `random` goes on where the case left it.
 */
export interface ServerHandshakeCase {
  random: Random;
  limits: Partial<ws.Limits>;
  stream: Uint8Array;
  notes: string[];
  valid: ValidStream | null;
  deflate: boolean;
}

/** The server handshake case of `seed`. */
export function buildServerHandshakeCase(seed: number): ServerHandshakeCase {
  const random = prng(seed);
  const limits = handshakeLimits(random);
  const lines = [
    `GET ${pick(random, ["/", "/chat", "/a?b=c", "ws://host/x"])} HTTP/1.1`,
    `Host: ${pick(random, ["example.com", "localhost:8080", "[::1]:1"])}`,
    "Upgrade: websocket",
    `Connection: ${pick(random, ["Upgrade", "keep-alive, Upgrade", "upgrade"])}`,
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
  ];
  if (chance(random, 0.4)) lines.push("Sec-WebSocket-Protocol: chat, superchat");
  if (chance(random, 0.4)) {
    lines.push(
      `Sec-WebSocket-Extensions: ${
        pick(random, [
          "permessage-deflate",
          "permessage-deflate; client_max_window_bits",
          "x-foo, permessage-deflate; server_no_context_takeover",
        ])
      }`,
    );
  }
  if (chance(random, 0.3)) lines.push("Origin: http://example.com");
  for (let k = lines.length - 1; k > 2; k--) {
    const j = 1 + int(random, k);
    [lines[k], lines[j]] = [lines[j]!, lines[k]!];
  }
  const notes: string[] = [];
  const mutations = chance(random, 0.15) ? 0 : 1 + int(random, 3);
  for (let k = 0; k < mutations; k++) notes.push(mutateHead(random, lines, true));
  let stream = joinHead(random, lines, notes);
  const valid = chance(random, 0.5) ? validStream(random, "server") : null;
  if (valid !== null) stream = concat(stream, ...valid.frames.map(encodeFrame));
  if (chance(random, 0.2)) {
    const [out, note] = mutateBytes(random, stream);
    stream = out;
    notes.push(note);
  }
  const deflate = chance(random, 0.5);
  return { random, limits, stream, notes, valid, deflate };
}

function serverHandshakeTarget(seed: number): void {
  const { limits, stream, notes, valid, deflate } = buildServerHandshakeCase(seed);
  const context = `server handshake, limits ${show(limits)}, ${notes.join("; ") || "unmutated"}`;
  try {
    const outcomes: [string, Outcome][] = [];
    let wholeConn: ws.WSConnection | null = null;
    let wholeError: unknown = null;
    for (const [name, chunks] of chops(stream, seed)) {
      const conn = new ws.WSConnection(ws.ConnectionType.SERVER, { limits });
      let thrown: unknown = null;
      const outcome = feedAllCatching(conn, chunks, stream, (event) => {
        if (!(event instanceof ws.Request)) return;
        const accept = new ws.AcceptConnection({
          subprotocol: event.subprotocols[0] ?? null,
          extensions: deflate ? [new PerMessageDeflate()] : [],
        });
        try {
          conn.send(accept);
        } catch (error) {
          fail(
            `accepting a Request the engine passed threw: ${describeError(error, stream)}`,
            stream,
          );
        }
      }, (error) => thrown = error);
      outcomes.push([name, outcome]);
      if (wholeConn === null) {
        wholeConn = conn;
        wholeError = thrown;
      }
    }
    sameOutcomes(outcomes, stream, context);
    const conn = wholeConn!;
    if (wholeError !== null) {
      const error = wholeError;
      if (
        !(error instanceof ws.RemoteProtocolError) ||
        !(error.eventHint instanceof ws.RejectConnection)
      ) {
        fail(
          `a bad request must raise RemoteProtocolError with a RejectConnection, got ${
            describeError(error, stream)
          }`,
          stream,
        );
      }
      const status = error.eventHint.statusCode;
      if (!REQUEST_STATUSES.includes(status)) {
        fail(`a bad request was answered with ${status}`, stream);
      }
      // More data is refused with the same error and gives no events.
      try {
        conn.receiveData(utf8("GET / HTTP/1.1\r\n\r\n"));
      } catch (again) {
        if (again !== error) {
          fail(
            `data after a bad request threw something else: ${describeError(again, stream)}`,
            stream,
          );
        }
      }
      if ([...conn.events()].length > 0) fail("data after a bad request gave events", stream);
      const answer = new TextDecoder("latin1").decode(conn.send(error.eventHint));
      if (!answer.startsWith(`HTTP/1.1 ${status} `)) {
        fail(`the rejection was written as ${JSON.stringify(answer.slice(0, 40))}`, stream);
      }
      conn.receiveData(utf8("more"));
      if ([...conn.events()].length > 0) fail("data after the rejection gave events", stream);
    } else if (notes.length === 0) {
      const events = outcomes[0]![1].events;
      if (!(events[0] instanceof ws.Request)) {
        fail(`a valid request gave ${show(canon(events))}`, stream);
      }
      if (valid !== null && !deflate && show(canon(events.slice(1))) !== show(valid.expected)) {
        fail(
          `frames after a valid request gave ${show(canon(events.slice(1)))}, expected ${
            show(valid.expected)
          }`,
          stream,
        );
      }
    }
  } catch (error) {
    if (error instanceof FuzzFailure) {
      throw new FuzzFailure(`${error.message}\n  ${context}`, error.input);
    }
    throw error;
  }
}

/** Like feedAll, but hands the thrown error (already checked to be typed) to `onError`. */
function feedAllCatching(
  conn: Receiver,
  chunks: readonly Uint8Array[],
  input: Uint8Array,
  onEvent: (e: ws.Event) => void,
  onError: (error: unknown) => void,
): Outcome {
  const events: ws.Event[] = [];
  try {
    receiveAll(conn, chunks, events, onEvent);
  } catch (error) {
    if (error instanceof FuzzFailure) throw error;
    const described = describeError(error, input);
    onError(error);
    // Events queued before the error are still there to take.
    try {
      events.push(...conn.events());
    } catch (again) {
      if (again !== error) describeError(again, input);
    }
    return { events, error: described };
  }
  return { events, error: null };
}

/** Runs `body` with crypto.getRandomValues seeded, so a client's key is reproducible. */
/** Run `body` with `crypto.getRandomValues` drawing from `seed`: a client's key is then the seed's. */
export function withSeededRandom<T>(seed: number, body: () => T): T {
  const original = crypto.getRandomValues;
  const random = prng(seed);
  crypto.getRandomValues = (<A extends ArrayBufferView | null>(array: A): A => {
    if (array !== null) {
      const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = int(random, 256);
    }
    return array;
  }) as typeof crypto.getRandomValues;
  try {
    return body();
  } finally {
    crypto.getRandomValues = original;
  }
}

/**
 * A client handshake case: limits, what the client offers, a `start()`
 * that makes its engine and request (the key drawn from the seed, see
 * withSeededRandom), and the server's response (a 101 maybe followed by
 * frames, or a refusal with a body; broken as `notes` says); `eof` says
 * whether the stream then ends, and `random` goes on where the case left it.
 */
export interface ClientHandshakeCase {
  random: Random;
  limits: Partial<ws.Limits>;
  offerDeflate: boolean;
  subprotocols: string[];
  start: () => { conn: ws.WSConnection; request: Uint8Array };
  stream: Uint8Array;
  notes: string[];
  valid: ValidStream | null;
  accepted: boolean;
  eof: boolean;
}

/** The client handshake case of `seed`. */
export function buildClientHandshakeCase(seed: number): ClientHandshakeCase {
  const random = prng(seed);
  const limits = handshakeLimits(random);
  const offerDeflate = chance(random, 0.5);
  const subprotocols = chance(random, 0.5) ? ["chat", "v2"] : [];
  const start = () => {
    const conn = new ws.WSConnection(ws.ConnectionType.CLIENT, { limits });
    const request = withSeededRandom(seed, () =>
      conn.send(
        new ws.Request({
          host: "example.com",
          target: "/chat",
          subprotocols,
          extensions: offerDeflate ? [new PerMessageDeflate()] : [],
        }),
      ));
    return { conn, request };
  };
  const key = /Sec-WebSocket-Key: (\S+)/.exec(new TextDecoder().decode(start().request))![1]!;
  const notes: string[] = [];
  const accepted = chance(random, 0.6);
  let lines: string[];
  let body: Uint8Array = new Uint8Array(0);
  let valid: ValidStream | null = null;
  if (accepted) {
    lines = [
      "HTTP/1.1 101 Switching Protocols",
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Accept: ${acceptToken(key)}`,
    ];
    if (subprotocols.length > 0 && chance(random, 0.7)) {
      lines.push(`Sec-WebSocket-Protocol: ${pick(random, subprotocols)}`);
    }
    if (offerDeflate && chance(random, 0.7)) {
      lines.push(
        `Sec-WebSocket-Extensions: ${
          pick(random, [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
          ])
        }`,
      );
    }
    if (chance(random, 0.6)) {
      valid = validStream(random, "client");
      body = concat(...valid.frames.map(encodeFrame));
    }
  } else {
    const status = pick(random, [200, 302, 400, 403, 404, 500, 503]);
    lines = [`HTTP/1.1 ${status} Whatever`, "Content-Type: text/plain"];
    const content = randomBytes(random, int(random, 300));
    const framing = int(random, 4);
    if (framing === 0) {
      lines.push(`Content-Length: ${content.length}`);
      body = content;
    } else if (framing === 1) {
      lines.push("Transfer-Encoding: chunked");
      const parts: Uint8Array[] = [];
      let at = 0;
      while (at < content.length) {
        const n = Math.min(content.length - at, 1 + int(random, 100));
        parts.push(
          utf8(`${n.toString(16)}${chance(random, 0.2) ? ";ext=1" : ""}\r\n`),
          content.subarray(at, at + n),
          utf8("\r\n"),
        );
        at += n;
      }
      parts.push(utf8(chance(random, 0.2) ? "0\r\nX-Trailer: 1\r\n\r\n" : "0\r\n\r\n"));
      body = concat(...parts);
    } else if (framing === 2) {
      body = content; // until the connection closes
    } else {
      lines.push("Content-Length: 0");
    }
  }
  const mutations = chance(random, 0.2) ? 0 : 1 + int(random, 3);
  for (let k = 0; k < mutations; k++) notes.push(mutateHead(random, lines, false));
  let stream = concat(joinHead(random, lines, notes), body);
  if (chance(random, 0.1)) {
    stream = concat(utf8("HTTP/1.1 100 Continue\r\n\r\n"), stream);
    notes.push("after a 100 Continue");
  }
  if (chance(random, 0.2)) {
    const [out, note] = mutateBytes(random, stream);
    stream = out;
    notes.push(note);
  }
  const eof = chance(random, 0.5);
  return { random, limits, offerDeflate, subprotocols, start, stream, notes, valid, accepted, eof };
}

function clientHandshakeTarget(seed: number): void {
  const { limits, start, stream, notes, valid, accepted, eof } = buildClientHandshakeCase(seed);
  const context = `client handshake, limits ${show(limits)}, ${notes.join("; ") || "unmutated"}${
    eof ? ", then end of stream" : ""
  }`;
  try {
    const outcomes: [string, Outcome][] = [];
    let whole: { conn: ws.WSConnection; error: unknown } | null = null;
    for (const [name, chunks] of chops(stream, seed)) {
      const { conn } = start();
      let thrown: unknown = null;
      const outcome = feedAllCatching(conn, chunks, stream, () => {}, (error) => thrown = error);
      if (eof && thrown === null) {
        try {
          conn.receiveData(null);
          outcome.events.push(...conn.events());
        } catch (error) {
          outcome.error = describeError(error, stream);
          thrown = error;
        }
      }
      outcomes.push([name, outcome]);
      whole ??= { conn, error: thrown };
    }
    const got = sameOutcomes(outcomes, stream, context);
    const { conn, error } = whole!;
    if (error !== null) {
      if (!(error instanceof ws.RemoteProtocolError) || error.eventHint !== null) {
        fail(
          `a bad response must raise RemoteProtocolError without a hint, got ${
            describeError(error, stream)
          }`,
          stream,
        );
      }
      if (conn.state !== ws.ConnectionState.CLOSED) {
        fail(`after a bad response the state is ${conn.state}`, stream);
      }
      conn.receiveData(utf8("HTTP/1.1 101 Switching Protocols\r\n\r\n"));
      if ([...conn.events()].length > 0) fail("data after a bad response gave events", stream);
    } else if (notes.length === 0) {
      if (accepted && got[0]?.type !== "Accept") fail(`a valid 101 gave ${show(got)}`, stream);
      if (!accepted && got[0]?.type !== "Reject") {
        fail(`a valid rejection gave ${show(got)}`, stream);
      }
      if (
        valid !== null && show(got.slice(1, 1 + valid.expected.length)) !== show(valid.expected)
      ) {
        fail(
          `frames after a valid 101 gave ${show(got.slice(1))}, expected ${show(valid.expected)}`,
          stream,
        );
      }
    }
  } catch (failure) {
    if (failure instanceof FuzzFailure) {
      throw new FuzzFailure(`${failure.message}\n  ${context}`, failure.input);
    }
    throw failure;
  }
}

// ------------------------------------------------------------------ targets

/** Every fuzz target: a case is a pure function of its seed. */
export const TARGETS: Readonly<Record<string, (seed: number) => void>> = {
  "frames-server": framesTarget("server"),
  "frames-client": framesTarget("client"),
  "deflate-server": deflateTarget("server"),
  "deflate-client": deflateTarget("client"),
  "handshake-server": serverHandshakeTarget,
  "handshake-client": clientHandshakeTarget,
};

/** One failure: the target and seed reproduce it. */
export interface Failure {
  target: string;
  seed: number;
  message: string;
  input: string;
}

/** Run one case; a failure is returned, never thrown. */
export function runCase(target: string, seed: number): Failure | null {
  const run = TARGETS[target];
  if (run === undefined) throw new TypeError(`Unknown fuzz target ${target}`);
  try {
    run(seed);
    return null;
  } catch (error) {
    if (error instanceof FuzzFailure) {
      return { target, seed, message: error.message, input: error.input };
    }
    const text = error instanceof Error
      ? `${error.name}: ${error.message}\n${error.stack}`
      : String(error);
    return {
      target,
      seed,
      message: `the harness threw (an engine bug or a harness bug): ${text}`,
      input: "",
    };
  }
}

// ------------------------------------------------------------------ runner

/** Options of {@linkcode runFuzz}. */
export interface RunOptions {
  targets: readonly string[];
  /** The first seed; case i of a target uses seed firstSeed + i. */
  firstSeed: number;
  /** Cases per target; with `seconds`, whichever ends first. */
  count?: number;
  /** Seconds per target. */
  seconds?: number;
  /** A case that runs longer than this is reported as a hang and killed. */
  hangMs: number;
  /** Called for every failure as it is found. */
  onFailure?: (failure: Failure) => void;
}

export interface RunResult {
  iterations: Record<string, number>;
  failures: Failure[];
}

const CHILD = new URL(import.meta.url);
const CONFIG = new URL("../deno.json", import.meta.url);

/**
 * Run the targets in a child process (a hung case can be killed there, and
 * a worker's busy loop cannot), restarting after a hang at the next seed.
 */
export async function runFuzz(options: RunOptions): Promise<RunResult> {
  const result: RunResult = { iterations: {}, failures: [] };
  for (const target of options.targets) {
    const deadline = options.seconds === undefined ? Infinity : Date.now() + options.seconds * 1000;
    let next = options.firstSeed;
    const end = options.count === undefined ? Infinity : options.firstSeed + options.count;
    result.iterations[target] = 0;
    while (next < end && Date.now() < deadline) {
      const left = Math.min(end - next, 1e9);
      const seconds = Number.isFinite(deadline)
        ? Math.max(0.05, (deadline - Date.now()) / 1000)
        : 1e9;
      const run = await runChild(target, next, left, seconds, options.hangMs, (failure) => {
        result.failures.push(failure);
        options.onFailure?.(failure);
      });
      result.iterations[target]! += run.done;
      if (run.hung === null) break;
      const hang: Failure = {
        target,
        seed: run.hung,
        message: `the case ran for more than ${options.hangMs} ms (a hang) and was killed`,
        input: "",
      };
      result.failures.push(hang);
      options.onFailure?.(hang);
      result.iterations[target]! += 1;
      next = run.hung + 1;
    }
  }
  return result;
}

async function runChild(
  target: string,
  firstSeed: number,
  count: number,
  seconds: number,
  hangMs: number,
  onFailure: (failure: Failure) => void,
): Promise<{ done: number; hung: number | null }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--config=${CONFIG.pathname}`,
      CHILD.pathname,
      target,
      String(firstSeed),
      String(count),
      String(seconds),
    ],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  let current: number | null = null;
  let done = 0;
  let lastProgress = Date.now();
  let hung = false;
  const watchdog = setInterval(() => {
    if (Date.now() - lastProgress > hangMs && current !== null) {
      hung = true;
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
  }, Math.min(250, hangMs / 4));
  let finished = false;
  try {
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(new LineStream());
    for await (const line of lines) {
      lastProgress = Date.now();
      if (line.startsWith("S ")) current = Number(line.slice(2));
      else if (line.startsWith("F ")) onFailure(JSON.parse(line.slice(2)));
      else if (line.startsWith("D ")) {
        done = Number(line.slice(2));
        finished = true;
      } else if (line.startsWith("E ")) {
        current = null;
        done++;
      }
    }
    await child.status;
  } finally {
    clearInterval(watchdog);
  }
  if (hung && current !== null) return { done, hung: current };
  if (!finished) {
    throw new Error(`The fuzz child for ${target} died at seed ${current} without reporting`);
  }
  return { done, hung: null };
}

class LineStream extends TransformStream<string, string> {
  constructor() {
    let rest = "";
    super({
      transform(chunk, controller) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const part of parts) controller.enqueue(part);
      },
      flush(controller) {
        if (rest !== "") controller.enqueue(rest);
      },
    });
  }
}

// The child: `deno run -A tests/_fuzz.ts TARGET FIRST_SEED COUNT SECONDS`.
// Prints "S seed" before each case, "E" after it, "F json" per failure and
// "D count" at the end.
if (import.meta.main) {
  const [target = "", first = "0", count = "1", seconds = "1e9"] = Deno.args;
  const deadline = Date.now() + Number(seconds) * 1000;
  const encoder = new TextEncoder();
  const write = (text: string) => {
    const bytes = encoder.encode(text);
    for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
  };
  let done = 0;
  for (let seed = Number(first); done < Number(count) && Date.now() < deadline; seed++) {
    write(`S ${seed}\n`);
    const failure = runCase(target, seed);
    if (failure !== null) write(`F ${JSON.stringify(failure)}\n`);
    write("E\n");
    done++;
  }
  write(`D ${done}\n`);
}
