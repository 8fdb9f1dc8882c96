/**
 * The queue of whole messages between a transport and the application,
 * shared by both socket implementations: backpressure past a high-water
 * mark, views of large buffers copied before they pin them, and the async
 * iterator over it.
 *
 * @module
 */

import { emptied, takeFirst } from "./_array.ts";
import { allocateKept, concatBytes, copyBytes, SLAB_SIZE } from "./_bytes.ts";
import { MAX_DELAY } from "./limits.ts";
import {
  ABNORMAL,
  type CloseInfo,
  ConnectionClosedError,
  type MessageData,
  type ReceiveOptions,
} from "./socket.ts";

// A reader that stops taking messages pauses reading (TCP backpressure)
// once this much is queued; each message also counts a fixed overhead so
// that a flood of empty messages is bounded too.
const INBOX_HIGH_WATER = 1 << 20;
const MESSAGE_OVERHEAD = 64;

type Waiter = (item: MessageData | null) => void;

// A view smaller than this part of its buffer holds memory the size limits
// do not see; see unpinned().
const PIN_RATIO = 8;
// What the queued messages of one inbox may hold that way before they are
// copied.
const PIN_BUDGET = 1 << 20;
// Pieces of a message shorter than this are joined in runs of PIECES_RUN.
const SMALL_PIECE = 1024;
const PIECES_RUN = 64;

// The buffer bytes `item` holds beyond itself, when it holds many more:
// 0 for text, for a view that fills most of its buffer, and for a piece
// of a shared slab (at most 16 KiB, and filled by many).
function pinned(item: MessageData): number {
  if (typeof item === "string") return 0;
  const size = item.buffer.byteLength;
  return size > SLAB_SIZE && item.byteLength * PIN_RATIO < size ? size : 0;
}

// `bytes`, or a copy of them when they are a small view of a large buffer:
// kept, such a view holds the whole buffer.
function unpinned(bytes: Uint8Array): Uint8Array {
  if (pinned(bytes) === 0) return bytes;
  const copy = allocateKept(bytes.byteLength);
  copyBytes(copy, 0, bytes, 0, bytes.byteLength);
  return copy;
}

/**
 * The pieces of the message in progress, kept so that they cost about
 * their own size however the peer chops the message. A small view of a
 * large buffer is copied: kept, it would hold all of that buffer (1-byte
 * fragments between large pongs each held a 256 KiB read buffer). Runs of
 * small pieces are joined: an array or a string each cost about 80 bytes
 * per byte of a frame sent a byte at a time.
 *
 * @example
 * ```ts
 * import { MessageParts } from "./inbox.ts";
 * const parts = new MessageParts();
 * parts.push(new Uint8Array(1 << 20).subarray(0, 1)); // copied, not kept as a view
 * const message = parts.end(new Uint8Array([2])) as Uint8Array;
 * if (!(message.length === 2 && message.buffer.byteLength < 1 << 20)) throw new Error("Example failed");
 * ```
 */
export class MessageParts {
  #parts: MessageData[] = [];
  // How many small pieces end #parts, not joined yet.
  #smallRun = 0;

  /** How many pieces are kept (a joined run counts once). */
  get length(): number {
    return this.#parts.length;
  }

  /** Whether the pieces kept are of a text message. */
  get holdsText(): boolean {
    return typeof this.#parts[0] === "string";
  }

  /** Bytes kept of a binary message; 0 for text, or when nothing is kept. */
  get binaryLength(): number {
    let held = 0;
    for (const part of this.#parts) {
      if (typeof part === "string") return 0;
      held += part.length;
    }
    return held;
  }

  /**
   * Keep a piece that does not end the message.
   *
   * @param data The piece.
   */
  push(data: MessageData): void {
    const parts = this.#parts;
    parts.push(typeof data === "string" ? data : unpinned(data));
    if (data.length >= SMALL_PIECE) {
      this.#smallRun = 0;
      return;
    }
    if (++this.#smallRun < PIECES_RUN) return;
    parts.push(join(parts.splice(parts.length - PIECES_RUN)));
    this.#smallRun = 0;
  }

  /**
   * The whole message, with its last piece; nothing is kept after.
   *
   * @param data The last piece.
   * @returns The message.
   */
  end(data: MessageData): MessageData {
    if (this.#parts.length === 0) return data;
    this.#parts.push(data);
    const message = join(this.#parts);
    this.clear();
    return message;
  }

  /**
   * Copy the binary pieces kept to the front of `target`, which then holds
   * them as one piece.
   *
   * @param target Room for them and for what is to come.
   */
  moveTo(target: Uint8Array): void {
    let at = 0;
    for (const part of this.#parts as Uint8Array[]) {
      target.set(part, at);
      at += part.length;
    }
    this.#parts = [target.subarray(0, at)];
    this.#smallRun = 0;
  }

  /** Drop what is kept. */
  clear(): void {
    this.#parts = [];
    this.#smallRun = 0;
  }
}

// Pieces of one message as one: text joined, bytes in a slab when small
// (as small reads are copied: a fresh array per message split across reads
// was a third of the buffer allocations on 16 x 1 KiB pipelined 16 deep).
function join(parts: MessageData[]): MessageData {
  return typeof parts[0] === "string"
    ? parts.join("")
    : concatBytes(parts as Uint8Array[], allocateKept);
}

/**
 * The queue of whole messages between a transport and the application,
 * shared by the socket implementations.
 */
export class Inbox {
  #items: MessageData[] = [];
  #head = 0;
  #size = 0;
  #waiters: Waiter[] = [];
  #end: CloseInfo | null = null;
  #drained: PromiseWithResolvers<void> | null = null;
  #taken = 0;
  // Bytes of the buffers that queued views hold beyond themselves.
  #pinned = 0;

  /** Whether a reader waits for the next message. */
  get waiting(): boolean {
    return this.#waiters.length > 0;
  }

  /** How many messages were taken from the queue so far (a progress counter). */
  get taken(): number {
    return this.#taken;
  }

  /** Whether the reader fell behind: the transport should stop reading. */
  get full(): boolean {
    return this.#size >= INBOX_HIGH_WATER;
  }

  /** Bytes queued (with a per-message overhead). */
  get size(): number {
    return this.#size;
  }

  /**
   * Resolves once the reader took enough to resume reading, or the inbox ended.
   *
   * @returns A promise.
   */
  drained(): Promise<void> {
    if (!this.full || this.#end !== null) return Promise.resolve();
    this.#drained ??= Promise.withResolvers<void>();
    return this.#drained.promise;
  }

  /**
   * Queue a message, or hand it straight to a waiting reader; once the
   * inbox ended, drop it.
   *
   * @param item The message.
   */
  push(item: MessageData): void {
    // Nothing reads an ended inbox: a transport still delivering after the
    // end (Deno's WebSocket past our close timeout) must not fill it.
    if (this.#end !== null) return;
    const waiter = takeFirst(this.#waiters);
    if (waiter !== undefined) {
      waiter(item);
      return;
    }
    // A queued message that is a small view of a large buffer holds all of
    // it, and the size limit counts only the message: past a budget of such
    // buffers, messages are copied (3,000 one-byte messages, each between
    // large pongs, held 783 MB of read buffers while the inbox counted 195
    // KB). Under it, pipelined messages stay views of their read.
    let pin = pinned(item);
    if (pin > 0 && this.#pinned + pin > PIN_BUDGET) {
      item = unpinned(item as Uint8Array);
      pin = 0;
    }
    this.#pinned += pin;
    this.#items.push(item);
    this.#size += item.length + MESSAGE_OVERHEAD;
  }

  /**
   * No more messages will come; readers get the queued ones, then the end.
   *
   * @param info How the connection ended.
   */
  end(info: CloseInfo): void {
    if (this.#end !== null) return;
    this.#end = info;
    for (const waiter of this.#waiters.splice(0)) waiter(null);
    this.#drained?.resolve();
    this.#drained = null;
  }

  /** Whether the inbox ended: no message will be queued after those it holds. */
  get ended(): boolean {
    return this.#end !== null;
  }

  /**
   * The first queued message, taken from the queue, or `undefined` when
   * none is queued.
   *
   * @returns The message.
   */
  take(): MessageData | undefined {
    return this.#shift();
  }

  /**
   * Hand the next message to `waiter` when it comes (`null` if the inbox
   * ends first). Waiters are served in order; call only when
   * {@linkcode take} found nothing and the inbox has not ended.
   *
   * @param waiter Called once.
   */
  wait(waiter: Waiter): void {
    this.#waiters.push(waiter);
  }

  /**
   * Stop waiting: `waiter`, if still waiting, will not be called, and the
   * next message goes to the next waiter or the queue.
   *
   * @param waiter A waiter given to {@linkcode wait}.
   */
  unwait(waiter: Waiter): void {
    const at = this.#waiters.indexOf(waiter);
    if (at >= 0) this.#waiters.splice(at, 1);
  }

  /**
   * The next message, as `Socket.receive()` gives it.
   *
   * @param options Timeout and signal.
   * @param before Called once the options are found sound, before the
   *   queue is looked at (a pending server socket accepts).
   * @returns A promise of the message.
   */
  receive(options: ReceiveOptions = {}, before?: () => void): Promise<MessageData> {
    const refused = refuseReceiveOptions(options);
    if (refused !== null) return refused;
    before?.();
    const { timeout, signal } = options;
    const item = this.#shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.#end !== null) return Promise.reject(new ConnectionClosedError(this.#end));
    // A rejection, not a throw: callers chain .catch() on the promise.
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<MessageData>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = (received) => {
        settle();
        if (received === null) reject(new ConnectionClosedError(this.#end ?? ABNORMAL));
        else resolve(received);
      };
      const drop = (): void => {
        this.unwait(waiter);
        settle();
      };
      const onAbort = (): void => {
        drop();
        reject(signal?.reason);
      };
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
      // Past the longest timer, as good as forever (Deno would fire at once).
      if (timeout !== undefined && timeout <= MAX_DELAY) {
        timer = setTimeout(() => {
          drop();
          reject(new DOMException(`No message within ${timeout} ms`, "TimeoutError"));
        }, Math.max(0, timeout)); // Deno warns of a negative delay on stderr
      }
    });
  }

  #shift(): MessageData | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = "";
    this.#taken++;
    // Compact now and then, so a long queue is not shifted one by one.
    if (this.#head === this.#items.length) {
      this.#items = emptied(this.#items);
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#size -= item.length + MESSAGE_OVERHEAD;
    // Only a queue that holds pinned buffers pays to look (most never do).
    if (this.#pinned > 0) this.#pinned -= pinned(item);
    if (this.#drained !== null && this.#size < INBOX_HIGH_WATER / 2) {
      this.#drained.resolve();
      this.#drained = null;
    }
    return item;
  }
}

// A rejection for receive options that cannot be honoured (a `NaN`
// timeout), else `null`: checked before a pending handshake is accepted.
function refuseReceiveOptions(options?: ReceiveOptions): Promise<never> | null {
  const timeout = options?.timeout;
  if (timeout === undefined || !Number.isNaN(timeout)) return null;
  return Promise.reject(new RangeError("The receive timeout must be a number, got NaN"));
}

/**
 * An async iterator over an inbox's messages, ending when the inbox ends.
 *
 * @param inbox The inbox.
 * @param before Called before each read (a pending server socket accepts).
 * @returns The iterator.
 */
export function iterateInbox(
  inbox: Inbox,
  before: () => void,
): AsyncIterator<MessageData, undefined> {
  type Result = IteratorResult<MessageData, undefined>;
  const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
  // The last message handed out, emptied when the next is asked for: a
  // `for await` waiting for its next message holds the result it got last,
  // and with it a message the loop is done with. 256 connections' 64 KiB
  // texts held that way survived every scavenge (12 MB), and V8 ran a full
  // collection every 60 ms to free them.
  let handedOut: { done: false; value: MessageData | undefined } | null = null;
  const result = (item: MessageData | null): Result => {
    if (item === null) return done;
    handedOut = { done: false, value: item };
    return handedOut as Result;
  };
  // A loop waits for one message at a time: its waiter and the promise's
  // executor are made once per iterator, not once per message (two
  // closures and their contexts, ~100 B of garbage per message).
  let resolveNext: ((result: Result) => void) | null = null;
  const waiter: Waiter = (item) => {
    const resolve = resolveNext!;
    resolveNext = null;
    resolve(result(item));
  };
  const park = (resolve: (result: Result) => void): void => {
    resolveNext = resolve;
    inbox.wait(waiter);
  };
  // Calls made before the last answer came (no loop makes them) wait with
  // closures of their own, kept here so that return() can answer them.
  const extraWaiters = new Map<Waiter, (result: Result) => void>();
  let returned = false;
  return {
    next: () => {
      if (handedOut !== null) {
        handedOut.value = undefined;
        handedOut = null;
      }
      if (returned) return Promise.resolve(done);
      before();
      const item = inbox.take();
      if (item !== undefined) return Promise.resolve(result(item));
      if (inbox.ended) return Promise.resolve(done);
      if (resolveNext !== null) {
        return new Promise<Result>((resolve) => {
          const extra: Waiter = (item) => {
            extraWaiters.delete(extra);
            resolve(result(item));
          };
          extraWaiters.set(extra, resolve);
          inbox.wait(extra);
        });
      }
      return new Promise<Result>(park);
    },
    // Ends the iteration: calls still waiting are answered `done` at once,
    // and a message that comes later stays for receive() or a new loop
    // (a waiter left behind took it, and it was lost).
    return: () => {
      returned = true;
      if (resolveNext !== null) {
        inbox.unwait(waiter);
        waiter(null);
      }
      for (const [extra, resolve] of extraWaiters) {
        inbox.unwait(extra);
        resolve(done);
      }
      extraWaiters.clear();
      return Promise.resolve(done);
    },
  };
}
