/**
 * Every limit the module enforces, with its default, in one place. A
 * WebSocket endpoint faces the open internet: each limit bounds the memory
 * or time one hostile peer can take.
 *
 * @module
 */

/** The limits of one connection; every option that takes them accepts `Partial<Limits>`. */
export interface Limits {
  /** Bytes of the handshake's HTTP header block (request line and headers): 16 KiB. Over it: 431. */
  maxHeaderBytes: number;
  /** Header fields in the handshake: 100. Over it: 431. */
  maxHeaderCount: number;
  /** Payload bytes of one frame: 64 MiB. Over it: close 1009. */
  maxFrameSize: number;
  /** Bytes of one message after decompression: 64 MiB. Over it: close 1009. */
  maxMessageSize: number;
  /** Frames in one fragmented message: 131072. Over it: close 1009. */
  maxFragments: number;
  /** Drivers only: milliseconds for the opening handshake to complete (0 waits forever): 10 s. */
  handshakeTimeout: number;
  /** Drivers only: milliseconds to wait for the peer's close, from our last write, before dropping TCP (0 does not wait): 5 s. */
  closeTimeout: number;
}

/**
 * The defaults of {@linkcode Limits}.
 *
 * @example Raising one limit
 * ```ts
 * import { DEFAULT_LIMITS } from "./limits.ts";
 * const limits = { ...DEFAULT_LIMITS, maxMessageSize: 1 << 30 };
 * if (limits.maxFrameSize !== 64 * 1024 * 1024) throw new Error("Example failed");
 * ```
 */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
  maxFrameSize: 64 * 1024 * 1024,
  maxMessageSize: 64 * 1024 * 1024,
  maxFragments: 1 << 17,
  handshakeTimeout: 10_000,
  closeTimeout: 5_000,
});

/**
 * The longest delay a timer can wait: 2^31 - 1 ms, about 24.8 days. Deno
 * (as browsers) fires a longer timeout, `Infinity` included, after 1 ms.
 */
export const MAX_DELAY = 2 ** 31 - 1;

/**
 * Check a delay in milliseconds: an integer from 0 to {@linkcode MAX_DELAY}.
 *
 * @param name The option, for the error.
 * @param value Its value.
 * @param fallback What a missing (`undefined`) value stands for, if it may be missing.
 * @returns The value, or the fallback.
 * @throws {RangeError} When it is not such an integer.
 *
 * @example
 * ```ts
 * import { checkDelay } from "./limits.ts";
 * if (checkDelay("closeTimeout", 500) !== 500) throw new Error("Example failed");
 * ```
 */
export function checkDelay(name: string, value: number | undefined, fallback?: number): number {
  // Only a missing option takes the default: null is checked, and refused.
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_DELAY) {
    throw new RangeError(
      `${name} must be an integer number of milliseconds from 0 to ${MAX_DELAY}, got ${
        typeof value === "number" ? value : `the ${typeof value} ${describe(value)}`
      }`,
    );
  }
  return value;
}

// A value of any type as text for an error: JSON.stringify throws for a
// BigInt, and a template for a Symbol.
function describe(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  return JSON.stringify(value) ?? String(value);
}

// Limits that came out of resolveLimits(): every connection of a server
// resolves the server's limits again (socket, handshake, engine), and a
// copy each time was a share of a handshake's garbage.
const RESOLVED = new WeakSet<object>([DEFAULT_LIMITS]);

/**
 * Merge options over the defaults, rejecting values that are not
 * non-negative integers (and timeouts over {@linkcode MAX_DELAY}). The
 * result is frozen; passing it again returns it as it is.
 *
 * @param options The limits to change.
 * @returns A complete set of limits.
 *
 * @example
 * ```ts
 * import { resolveLimits } from "./limits.ts";
 * const limits = resolveLimits({ maxFragments: 4 });
 * if (limits.maxFragments !== 4 || resolveLimits(limits) !== limits) throw new Error("Example failed");
 * ```
 */
export function resolveLimits(options: Partial<Limits> = DEFAULT_LIMITS): Readonly<Limits> {
  if (RESOLVED.has(options)) return options as Readonly<Limits>;
  const limits: Limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof Limits)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (key === "handshakeTimeout" || key === "closeTimeout") checkDelay(`Limit ${key}`, value);
    else if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Limit ${key} must be a non-negative integer, got ${value}`);
    }
    limits[key] = value;
  }
  RESOLVED.add(Object.freeze(limits));
  return limits;
}
