/**
 * An incremental buffer for bytes received from the network in arbitrary
 * pieces.
 *
 * @module
 */

import { emptied } from "./_array.ts";
import { copyBytes } from "./_bytes.ts";

const EMPTY = new Uint8Array(0);

/**
 * Received bytes not yet parsed, held as the list of chunks they arrived in
 * with a read offset into the first one. Pushing never copies, and reading
 * copies only the bytes of a request that spans chunks, so feeding a stream
 * one byte at a time stays linear.
 *
 * The buffer keeps references to the chunks passed to {@linkcode push}, and
 * the views that {@linkcode consume} and {@linkcode consumeAtMost} return
 * alias them: whoever pushes a chunk hands its bytes over and must not
 * change them afterwards, and whoever consumes a view owns those bytes and
 * may change them in place (the frame decoder unmasks payloads there).
 *
 * @example Reading a frame header that arrived in two pieces
 * ```ts
 * import { ByteBuffer } from "./byte_buffer.ts";
 * const buffer = new ByteBuffer();
 * buffer.push(new Uint8Array([0x81]));
 * buffer.push(new Uint8Array([0x02, 0x68, 0x69]));
 * if (buffer.byteAt(1) !== 0x02) throw new Error("Example failed");
 * buffer.skip(2);
 * const payload = buffer.consume(2);
 * if (new TextDecoder().decode(payload) !== "hi") throw new Error("Example failed");
 * if (buffer.length !== 0) throw new Error("Example failed");
 * ```
 */
export class ByteBuffer {
  // Chunks before #first are consumed and already replaced by EMPTY; the
  // array is compacted now and then so that a long stream of small chunks
  // costs amortised O(1) per chunk instead of an O(n) Array#shift.
  #chunks: Uint8Array[] = [];
  #first = 0;
  #offset = 0;
  #length = 0;

  /**
   * The number of bytes buffered and not yet consumed.
   *
   * @returns The byte count.
   *
   * @example
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array(3));
   * if (buffer.length !== 3) throw new Error("Example failed");
   * ```
   */
  get length(): number {
    return this.#length;
  }

  /**
   * Append a chunk. The buffer keeps a reference to `chunk` without copying
   * it, so the caller must not change it afterwards. Empty chunks are
   * ignored.
   *
   * @param chunk The bytes received.
   * @returns Nothing.
   *
   * @example
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array([1, 2]));
   * buffer.push(new Uint8Array([3]));
   * if (buffer.length !== 3) throw new Error("Example failed");
   * ```
   */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /**
   * Read one byte without consuming it.
   *
   * @param index The position from the start of the unconsumed bytes, an
   * integer with `0 <= index < length`.
   * @returns The byte at that position.
   * @throws {RangeError} If `index` is outside the buffered bytes.
   *
   * @example Peeking at a frame's second header byte
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array([0x81, 0x85]));
   * if ((buffer.byteAt(1) & 0x80) === 0) throw new Error("Example failed"); // the MASK bit
   * if (buffer.length !== 2) throw new Error("Example failed");
   * ```
   */
  byteAt(index: number): number {
    if (!(index >= 0 && index < this.#length)) {
      throw new RangeError(`Index ${index} is outside the ${this.#length} buffered bytes`);
    }
    let at = this.#offset + index;
    const chunks = this.#chunks;
    let i = this.#first;
    let chunk = chunks[i]!;
    while (at >= chunk.length) {
      at -= chunk.length;
      chunk = chunks[++i]!;
    }
    return chunk[at]!;
  }

  /**
   * Remove and return exactly `n` bytes. When they lie within one chunk the
   * result is a view of that chunk (no copy); otherwise they are copied once
   * into a new array.
   *
   * @param n How many bytes to take, at most {@linkcode length}.
   * @returns The `n` bytes; the caller owns them and may change them in place.
   * @throws {RangeError} If fewer than `n` bytes are buffered.
   *
   * @example
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array([1, 2, 3]));
   * buffer.push(new Uint8Array([4, 5]));
   * if (buffer.consume(2).join() !== "1,2") throw new Error("Example failed");
   * if (buffer.consume(2).join() !== "3,4") throw new Error("Example failed"); // spans two chunks: copied
   * if (buffer.length !== 1) throw new Error("Example failed");
   * ```
   */
  consume(n: number): Uint8Array {
    if (!(n >= 0 && n <= this.#length)) {
      throw new RangeError(`Cannot consume ${n} bytes: ${this.#length} are buffered`);
    }
    if (n === 0) return new Uint8Array(0);
    const head = this.#chunks[this.#first]!;
    const offset = this.#offset;
    if (offset + n <= head.length) {
      const view = head.subarray(offset, offset + n);
      this.#advanceWithinHead(n, head.length);
      return view;
    }
    const out = new Uint8Array(n);
    let written = 0;
    while (written < n) {
      // Re-read the list each time: dropping a chunk may compact it.
      const chunk = this.#chunks[this.#first]!;
      const take = Math.min(chunk.length - this.#offset, n - written);
      const from = this.#offset;
      copyBytes(out, written, chunk, from, take);
      written += take;
      this.#advanceWithinHead(take, chunk.length);
    }
    return out;
  }

  /**
   * Remove and return up to `n` bytes: all of them if fewer are buffered.
   * Like {@linkcode consume}, the result is a view when the bytes lie within
   * one chunk and a single copy otherwise. The frame decoder uses it to hand
   * up the part of a large payload that has arrived so far.
   *
   * @param n The most bytes to take.
   * @returns Between 0 and `n` bytes; the caller owns them.
   *
   * @example
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array([1, 2, 3]));
   * if (buffer.consumeAtMost(10).length !== 3) throw new Error("Example failed");
   * if (buffer.consumeAtMost(10).length !== 0) throw new Error("Example failed");
   * ```
   */
  consumeAtMost(n: number): Uint8Array {
    return this.consume(Math.max(0, Math.min(n, this.#length)));
  }

  /**
   * Discard `n` bytes without returning them.
   *
   * @param n How many bytes to drop, at most {@linkcode length}.
   * @returns Nothing.
   * @throws {RangeError} If fewer than `n` bytes are buffered.
   *
   * @example Skipping a two-byte frame header
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array([0x82, 0x01, 0x2a]));
   * buffer.skip(2);
   * if (buffer.byteAt(0) !== 0x2a) throw new Error("Example failed");
   * ```
   */
  skip(n: number): void {
    if (!(n >= 0 && n <= this.#length)) {
      throw new RangeError(`Cannot skip ${n} bytes: ${this.#length} are buffered`);
    }
    let left = n;
    while (left > 0) {
      const chunk = this.#chunks[this.#first]!;
      const take = Math.min(chunk.length - this.#offset, left);
      left -= take;
      this.#advanceWithinHead(take, chunk.length);
    }
  }

  /**
   * Discard everything buffered and drop the references to the chunks.
   *
   * @returns Nothing.
   *
   * @example
   * ```ts
   * import { ByteBuffer } from "./byte_buffer.ts";
   * const buffer = new ByteBuffer();
   * buffer.push(new Uint8Array(8));
   * buffer.clear();
   * if (buffer.length !== 0) throw new Error("Example failed");
   * ```
   */
  clear(): void {
    this.#chunks = [];
    this.#first = 0;
    this.#offset = 0;
    this.#length = 0;
  }

  /** Consume `n` bytes of the head chunk, `n <= headLength - offset`, dropping it when used up. */
  #advanceWithinHead(n: number, headLength: number): void {
    this.#length -= n;
    this.#offset += n;
    if (this.#offset < headLength) return;
    this.#offset = 0;
    if (this.#length === 0) {
      // The common case of a parser keeping up: start again with an empty
      // list rather than a long one full of dropped slots.
      this.#chunks = emptied(this.#chunks);
      this.#first = 0;
      return;
    }
    // Let the consumed chunk be collected now, not at the next compaction.
    this.#chunks[this.#first++] = EMPTY;
    if (this.#first >= 1024 && this.#first * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
  }
}
