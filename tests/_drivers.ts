// Shared helpers for the tests that drive real sockets over 127.0.0.1:
// bounded waits, hand-built client bytes on bare `Deno.connect` sockets,
// bounded reads, and the count of this process's open descriptors.
import assert from "node:assert/strict";
import { poisonRecycled } from "../_bytes.ts";

// Every test that drives sockets runs with buffers filled with 0xEE as
// they go back for reuse: a buffer given back while still in use (a
// message, a frame being written, bytes the decoder holds) then shows as
// garbage at once, not only when a later frame happens to be made in it.
poisonRecycled(true);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Resolves with `promise`, or rejects with "`what`: nothing within `ms` ms"; the timer is always cleared. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 10 ms for up to `ms`; whether it finally holds. */
export async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await delay(10);
  return condition();
}

/** Write all of `bytes`, however many writes it takes. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

// Descriptors open in this process (Linux), to see that every connection's
// socket was released, on both ends; null where /proc is not there.
export function openDescriptors(): number | null {
  try {
    return [...Deno.readDirSync("/proc/self/fd")].length;
  } catch {
    return null;
  }
}

/** `conn` with its `read` or `write` replaced; everything else passes through. */
export function interpose(
  conn: Deno.Conn,
  methods: Partial<Pick<Deno.Conn, "read" | "write">>,
): Deno.Conn {
  return new Proxy(conn, {
    get(target, key) {
      if (key === "read" || key === "write") {
        const method = methods[key];
        if (method !== undefined) return method;
      }
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

// ---- Hand-built client bytes ----

/** A client's opening handshake for `target` (RFC 6455 §4.1), with a fixed key. */
export function handshakeRequest(port: number, target = "/"): Uint8Array {
  return encoder.encode(
    `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Version: 13\r\n\r\n",
  );
}

/** A final, masked client frame (RFC 6455 §5.2); payloads here stay under 126 bytes. */
export function clientFrame(
  opcode: number,
  payload: Uint8Array,
  key: readonly number[] = [0xa1, 0x3e, 0x77, 0x08],
): Uint8Array {
  assert.ok(payload.length <= 125);
  const frame = new Uint8Array(6 + payload.length);
  frame.set([0x80 | opcode, 0x80 | payload.length, ...key]);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ key[i & 3]!;
  return frame;
}

/** The payload of a close frame: the code, big-endian, then the reason in UTF-8. */
export function closePayload(code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason);
  const payload = new Uint8Array(2 + text.length);
  payload.set([code >> 8, code & 0xff]);
  payload.set(text, 2);
  return payload;
}

// ---- Reading what a server answers ----

/** Read until `enough(bytes)`, the peer's close (or reset), or `ms`. */
export async function readUntil(
  conn: Deno.Conn,
  enough: (bytes: Uint8Array) => boolean,
  ms = 5000,
): Promise<{ bytes: Uint8Array; ended: boolean }> {
  let bytes = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + ms;
  for (let reads = 0; reads < 1000 && Date.now() < deadline; reads++) {
    let n: number | null | "timeout";
    try {
      n = await withTimeout(conn.read(buffer), deadline - Date.now(), "read");
    } catch (error) {
      n = error instanceof Error && error.message.startsWith("read:") ? "timeout" : null;
    }
    if (n === "timeout") return { bytes, ended: false };
    if (n === null) return { bytes, ended: true };
    const grown = new Uint8Array(bytes.length + n);
    grown.set(bytes);
    grown.set(buffer.subarray(0, n), bytes.length);
    bytes = grown;
    if (enough(bytes)) break;
  }
  return { bytes, ended: false };
}

/** The length of the HTTP head at the start of `bytes`, or -1 while it is incomplete. */
export function headLength(bytes: Uint8Array): number {
  const at = decoder.decode(bytes).indexOf("\r\n\r\n");
  return at < 0 ? -1 : at + 4;
}

export const hasHead = (bytes: Uint8Array): boolean => headLength(bytes) >= 0;

/**
 * Send the request and read the whole 101 response head. With
 * `nothingAfter`, also that no byte followed the head yet.
 */
export async function rawOpen(
  port: number,
  target: string,
  { nothingAfter = false } = {},
): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(handshakeRequest(port, target));
  const { bytes } = await readUntil(conn, hasHead);
  assert.match(decoder.decode(bytes), /^HTTP\/1\.1 101 /, `handshake for ${target}`);
  if (nothingAfter) assert.equal(bytes.length, headLength(bytes), "nothing after the 101 yet");
  return conn;
}

// ---- Talking to other implementations ----

/**
 * Text (multi-byte UTF-8, exactly `size` bytes) and binary payloads of
 * 0, 125, 126, 65535, 65536 bytes and 1 MiB: each length form's edges.
 */
export function payloadsOfEverySize(): (string | Uint8Array)[] {
  const out: (string | Uint8Array)[] = [];
  for (const size of [0, 125, 126, 65535, 65536, 1 << 20]) {
    out.push("é".repeat(Math.floor(size / 2)) + "x".repeat(size % 2));
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
    out.push(bytes);
  }
  return out;
}

/** An unbounded queue whose `next()` waits, at most `ms`, for the next item. */
export class Queue<T> {
  #items: T[] = [];
  #waiters: ((item: T) => void)[] = [];

  constructor(readonly ms: number) {}

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(item);
    else this.#items.push(item);
  }

  next(what: string): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    const { promise, resolve } = Promise.withResolvers<T>();
    this.#waiters.push(resolve);
    return withTimeout(promise, this.ms, what).catch((error) => {
      this.#waiters.splice(this.#waiters.indexOf(resolve), 1);
      throw error;
    });
  }

  get size(): number {
    return this.#items.length;
  }
}
