// Byte helpers shared by the layers; private to the module (the leading
// underscore keeps it out of the public API).

const EMPTY = new Uint8Array(0);
const fresh = (size: number): Uint8Array => new Uint8Array(size);

// Small arrays are cut from a shared slab: one allocation serves many
// frames, and frames made one after another sit side by side, so a driver
// writing them together joins them without copying (see concatBytes).
/** The size of the slabs small arrays are cut from. */
export const SLAB_SIZE = 16 * 1024;
const SLAB_MAX = 2 * 1024;

/** How much of a slab is cut, and (for a frame slab) how much of that came back. */
interface Tally {
  used: number;
  returned: number;
}

/** A slab small arrays are cut from. */
class Slab {
  constructor(
    readonly buffer: ArrayBufferLike = new ArrayBuffer(SLAB_SIZE),
    readonly tally: Tally = { used: 0, returned: 0 },
  ) {}

  cut(size: number): Uint8Array {
    const view = new Uint8Array(this.buffer, this.tally.used, size);
    this.tally.used += size;
    return view;
  }
}

// Frames come from slabs of their own, which are used again once every byte
// cut from them came back (see recycle): a pipelined echo otherwise made a
// fresh 16 KiB slab per 15 KiB of replies, and those external bytes pushed
// V8 into a full collection every few dozen milliseconds. Bytes someone
// keeps (allocateKept) never come back, so they have slabs apart.
// A frame slab's tally is found from its buffer through a WeakMap whose
// values hold no path back to their keys. With the slab itself as the value
// (it holds its buffer) every slab in the map outlived the young
// generation: with kept slabs in it a 1 KiB echo went 1.7 -> 2.4 µs/msg in
// memory, and an engine used without this module's drivers (which never
// gives frames back) ran 25-29 full collections per 600k messages, not 0-2.
// Made on first use: importing the module allocates nothing.
let frameSlab: Slab | null = null;
let keptSlab: Slab | null = null;
const frameTallies = new WeakMap<ArrayBufferLike, Tally>();
// Frame slabs whose bytes all came back, to be cut again.
const freeSlabs: ArrayBufferLike[] = [];
const FREE_SLABS = 64;

function nextFrameSlab(): Slab {
  const buffer = freeSlabs.pop();
  if (buffer !== undefined) return new Slab(buffer, frameTallies.get(buffer)!);
  const slab = new Slab();
  frameTallies.set(slab.buffer, slab.tally);
  return slab;
}

// Larger arrays come from spare buffers that drivers hand back once written
// (see recycle): a 64 KiB echo otherwise allocated, zeroed and later
// collected a 64 KiB frame per reply, and those external bytes are what
// drove V8's full collections (16 x 64 KiB echo: 157 -> 110 µs of server
// CPU per message together with the read-size fix). Up to 1 MiB and a
// header: at 256 KiB, the frame echoing a 256 KiB message (10 bytes more)
// was never pooled (4 x 256 KiB echo: 196-237 -> 164-178 µs per message).
// A buffer serves sizes down to half its own, and the pool holds 16 MiB.
const SPARE_MAX = 1024 * 1024 + 4096;
// Room for a busy server's buffers in flight: with 1 MiB, a 256 x 64 KiB
// echo found the pool empty for 44% of its frames and ran 12-16 full
// collections a second; with 16 MiB, for 0.1%, and 0.5-1.5. A pool that
// shrinks as load falls (up to twice the bytes lent out) missed as often
// as 1 MiB did: what is lent swings, and the pool has to cover the swing.
// So what a burst leaves here stays, up to this much, until used again.
const SPARES_BYTES = 16 * 1024 * 1024;
const SPARES_COUNT = 256;
// allocate() looks for a fitting spare among the newest this many only:
// behind 250 spares that did not fit, a miss cost 2.4 µs, 1.2 with this
// bound, 1.0 with the pool empty. A fitting one further back is left to
// age out (see recycle).
const SPARES_SCANNED = 32;
// Pooled buffers are made in whole KiB, so that sizes a few bytes apart
// serve one another: the frame that echoes a message is 4 bytes shorter
// than the peer's (no mask key), and the read sized for the next message
// (raw_socket.ts) takes the buffer that echo was written from.
const SPARE_STEP = 1024;
const spares: ArrayBuffer[] = [];
let sparesBytes = 0;
// The buffers allocate() handed out whole and not yet back: only these may
// be recycled, so a slab, a caller's own buffer or a copy made elsewhere
// never enters the pool.
const lent = new WeakSet<ArrayBufferLike>();

/**
 * An array of `size` bytes that no one else holds, with unspecified
 * contents: callers write every byte. Up to 2 KiB it is a view into a
 * shared slab, so its `buffer` holds other bytes too: use the view, not its
 * buffer. Larger ones may be a buffer given back with {@linkcode recycle}.
 *
 * @param size The length in bytes.
 * @returns The array.
 */
export function allocate(size: number): Uint8Array {
  if (size > SLAB_MAX) {
    const spare = takeSpare(size);
    if (spare !== null) return new Uint8Array(spare, 0, size);
    if (size > SPARE_MAX) return new Uint8Array(size);
    const fresh = new Uint8Array(
      new ArrayBuffer(Math.ceil(size / SPARE_STEP) * SPARE_STEP),
      0,
      size,
    );
    lent.add(fresh.buffer);
    return fresh;
  }
  if (frameSlab === null || frameSlab.tally.used + size > SLAB_SIZE) frameSlab = nextFrameSlab();
  return frameSlab.cut(size);
}

/**
 * A buffer of at least `size` bytes (and at most twice that) from the pool
 * that {@linkcode recycle} fills, lent as {@linkcode allocate} lends those
 * past 2 KiB; `null` when the pool has none that fits: it never allocates.
 *
 * @param size The least length in bytes.
 * @returns The whole buffer, with unspecified contents, or `null`.
 */
export function takeSpare(size: number): ArrayBuffer | null {
  const oldest = Math.max(0, spares.length - SPARES_SCANNED);
  for (let i = spares.length - 1; i >= oldest; i--) {
    const spare = spares[i]!;
    // Not more than twice the size: a small frame must not pin a big buffer.
    if (spare.byteLength >= size && spare.byteLength <= 2 * size) {
      spares[i] = spares[spares.length - 1]!;
      spares.pop();
      sparesBytes -= spare.byteLength;
      lent.add(spare);
      return spare;
    }
  }
  return null;
}

/**
 * An array of `size` bytes for a caller that keeps it (a message handed to
 * the application): cut from a slab up to 2 KiB, as in
 * {@linkcode allocate}, but never a spare from the pool, which may be up to
 * twice the size asked for and is meant to go back once written.
 *
 * @param size The length in bytes.
 * @returns The array, with unspecified contents: callers write every byte.
 */
export function allocateKept(size: number): Uint8Array {
  if (size > SLAB_MAX) return new Uint8Array(size);
  if (keptSlab === null || keptSlab.tally.used + size > SLAB_SIZE) keptSlab = new Slab();
  return keptSlab.cut(size);
}

/**
 * Give back an array from {@linkcode allocate} that nothing references any
 * more (a frame once written), so that a later one reuses its memory: a
 * large one whole, small ones (or adjacent ones joined into one view) by
 * their bytes, the slab being reused once all of it is back. Anything else
 * is ignored. The pool keeps at most 256 buffers and 16 MiB, dropping its
 * oldest to make room.
 *
 * @param bytes The array; it must not be used after this call, and given
 *   back once only.
 */
export function recycle(bytes: Uint8Array): void {
  const buffer = bytes.buffer;
  const tally = frameTallies.get(buffer);
  if (tally !== undefined) {
    tally.returned += bytes.length;
    if (tally.returned < tally.used) return;
    // Every view cut from it is dead: start it over.
    tally.used = 0;
    tally.returned = 0;
    if (poisoning) new Uint8Array(buffer).fill(POISON);
    if (buffer !== frameSlab?.buffer && freeSlabs.length < FREE_SLABS) freeSlabs.push(buffer);
    return;
  }
  if (!lent.has(buffer) || !(buffer instanceof ArrayBuffer)) return;
  lent.delete(buffer);
  if (poisoning) new Uint8Array(buffer).fill(POISON);
  // A full pool makes room by dropping from its old end: sizes a burst
  // left behind that no frame asks for any more must not keep new ones out
  // (taking from the pool moves its newest into the gap, so the order is
  // only roughly by age).
  while (spares.length >= SPARES_COUNT || sparesBytes + buffer.byteLength > SPARES_BYTES) {
    sparesBytes -= spares.shift()!.byteLength;
  }
  spares.push(buffer);
  sparesBytes += buffer.byteLength;
}

// A reserved opcode with RSV bits set, as a frame's first byte: bytes read
// from a buffer after it went back fail the connection.
const POISON = 0xee;
let poisoning = false;

/**
 * For tests: fill every buffer with 0xEE as it goes back for reuse, so that
 * a use after its return shows at once, not only when a later frame
 * happens to be made in it.
 *
 * @param on Whether to fill them.
 */
export function poisonRecycled(on: boolean): void {
  poisoning = on;
}

/**
 * Whether `bytes` is a view into a slab that {@linkcode allocate} cuts
 * frames from, whose buffer other frames share: holding it holds them all.
 *
 * @param bytes The array.
 * @returns `true` for a slab view.
 */
export function inSlab(bytes: Uint8Array): boolean {
  return frameTallies.has(bytes.buffer);
}

// Up to this many bytes a loop copies faster than `set`, which needs a
// `subarray` view of the source first (and that view is 100 bytes of
// garbage: a tenth of what a small echo otherwise allocates).
const SMALL_COPY = 64;

/**
 * Copy `length` bytes of `source` from `start` into `target` at `at`.
 *
 * @param target Where the bytes go.
 * @param at The offset in `target`.
 * @param source Where they come from.
 * @param start The offset in `source`.
 * @param length How many bytes.
 */
export function copyBytes(
  target: Uint8Array,
  at: number,
  source: Uint8Array,
  start: number,
  length: number,
): void {
  if (length <= SMALL_COPY) {
    for (let i = 0; i < length; i++) target[at + i] = source[start + i]!;
  } else {
    target.set(source.subarray(start, start + length), at);
  }
}

/**
 * Join byte arrays into one. When at most one of them holds bytes, or they
 * are adjacent views of one buffer, the result shares their memory (no
 * copy), so callers must not rely on getting a copy.
 *
 * @param chunks The arrays, in order.
 * @param allocator Makes the array a copy goes into: by default a fresh
 *   one; {@linkcode allocate} for bytes that are written and given back
 *   (frames: see {@linkcode joinFrames}), {@linkcode allocateKept} for
 *   bytes someone keeps. In Deno each fresh array is a buffer allocation:
 *   ~1.4 µs here for a few bytes, 4.5 µs at 16 KiB, 10 µs at 64 KiB.
 * @returns The joined bytes.
 */
export function concatBytes(
  chunks: readonly Uint8Array[],
  allocator: (size: number) => Uint8Array = fresh,
): Uint8Array {
  return join(chunks, allocator, false);
}

/**
 * Join frames from {@linkcode allocate} for one write, as
 * {@linkcode concatBytes} does into {@linkcode allocate}. When they are
 * copied, the frames go back at once (see {@linkcode recycle}): only the
 * copy is written, and their slabs can then be used again.
 *
 * @param frames The frames, in order; not to be used after this call.
 * @returns The joined bytes, to be given back once written.
 */
export function joinFrames(frames: readonly Uint8Array[]): Uint8Array {
  return join(frames, allocate, true);
}

function join(
  chunks: readonly Uint8Array[],
  allocator: (size: number) => Uint8Array,
  recycleCopied: boolean,
): Uint8Array {
  let length = 0;
  let filled = 0;
  let first: Uint8Array = EMPTY;
  let last: Uint8Array = EMPTY;
  let adjacent = true;
  for (const chunk of chunks) {
    if (chunk.length === 0) continue;
    if (filled === 0) first = chunk;
    else if (chunk.buffer !== last.buffer || chunk.byteOffset !== last.byteOffset + last.length) {
      adjacent = false;
    }
    length += chunk.length;
    last = chunk;
    filled++;
  }
  if (filled <= 1) return last;
  if (adjacent) return new Uint8Array(first.buffer, first.byteOffset, length);
  const out = allocator(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
    if (recycleCopied) recycle(chunk);
  }
  return out;
}

/**
 * RFC 4648 §4 base64, padded: the runtime's encoder where it has one (Deno
 * does), one string where a loop concatenated four characters at a time.
 *
 * @param bytes The bytes.
 * @returns Their base64.
 */
export function base64(bytes: Uint8Array): string {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
