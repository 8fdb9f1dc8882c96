/**
 * A bounded, incremental HTTP/1.1 message-head parser (RFC 9112), and the
 * body decoding a client needs to read a refused handshake's response. It
 * serves `handshake.ts` only: the opening handshake is the one HTTP message
 * each side of a WebSocket reads.
 *
 * Strict where RFC 9112 allows a recipient to be: lines end in CRLF only
 * (§2.2), field names are tokens with no whitespace before the colon (§5.1),
 * no obs-fold (§5.2), and only HTTP/1.1 or a later HTTP/1.x (RFC 6455 §4.1
 * asks for 1.1). Bounded: the head's bytes and field count are limited and
 * checked as bytes arrive, so a hostile peer cannot make it buffer more.
 *
 * @module
 */

import type { Headers } from "./events.ts";

const CR = 0x0d;
const LF = 0x0a;
// Shared by every empty result: with no elements, nobody can change it.
const EMPTY = new Uint8Array(0);

/** RFC 9110 §5.6.2: `token = 1*tchar`. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5: field-vchar, SP and HTAB, obs-text allowed; no CTLs. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** RFC 9112 §3.2: a request-target has no whitespace or controls. */
const REQUEST_TARGET = /^[\x21-\x7e]+$/;
/** RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ). */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * A malformed or oversized HTTP message, with the status a server answers
 * it with: 400 for bad syntax, 431 for a head over its limits, 505 for an
 * HTTP version other than 1.1 or a later 1.x.
 *
 * @example Reading the status
 * ```ts
 * import { HttpError } from "./http1.ts";
 * const error = new HttpError(431, "Header block over 16384 bytes");
 * if (error.status !== 431) throw new Error("Example failed");
 * ```
 */
export class HttpError extends Error {
  /** The HTTP status that answers this error. */
  readonly status: number;
  /** Pieces of a body decoded before the error, to be delivered before it. */
  readonly bodyPieces: readonly Uint8Array[];

  /**
   * Make the error.
   *
   * @param status The HTTP status to answer with.
   * @param message What was wrong, in a sentence.
   * @param bodyPieces Body decoded before the error.
   */
  constructor(status: number, message: string, bodyPieces: readonly Uint8Array[] = []) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.bodyPieces = bodyPieces;
  }
}

/** The limits of one message head (see `Limits` in `limits.ts`). */
export interface HeadLimits {
  /** Bytes of the head: start line, field lines and the blank line ending it. */
  maxHeaderBytes: number;
  /** Field lines in the head. */
  maxHeaderCount: number;
}

/** A complete message head, split from the bytes that followed it. */
export interface HeadBytes {
  /** The head, from the start line to the blank line ending it, inclusive. */
  readonly head: Uint8Array;
  /** The bytes after the head in the chunk that completed it: a view into it. */
  readonly rest: Uint8Array;
}

/**
 * Collects bytes until the blank line that ends a message head. Each byte
 * is looked at once: the search for the end resumes where it stopped, and a
 * bare LF or an excess of bytes or field lines fails at once.
 *
 * @example A head arriving in two pieces, with two more bytes behind it
 * ```ts
 * import { HeadReader } from "./http1.ts";
 * const reader = new HeadReader({ maxHeaderBytes: 1024, maxHeaderCount: 10 });
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nab");
 * if (reader.push(bytes.subarray(0, 10)) !== null) throw new Error("Example failed");
 * const done = reader.push(bytes.subarray(10));
 * if (!(done !== null && done.head.length === 27 && done.rest.length === 2)) throw new Error("Example failed");
 * ```
 */
export class HeadReader {
  readonly #limits: HeadLimits;
  // Bytes of an incomplete head, allocated only when a head spans chunks.
  #buffer = EMPTY;
  #length = 0;
  // Where the search for LF resumes, and where the current line starts.
  #scanned = 0;
  #lineStart = 0;
  #fieldLines = 0;
  #done = false;
  readonly #startLine: ((line: string) => unknown) | null;

  /**
   * Make a reader.
   *
   * @param limits The bounds on the head's size and field count.
   * @param kind What the head starts with, checked as soon as that line is
   *   complete: a peer that does not speak HTTP at all is then refused at
   *   its first line, not after 16 KiB or a timeout. Unchecked unless given.
   */
  constructor(limits: HeadLimits, kind?: "request" | "response") {
    this.#limits = limits;
    this.#startLine = kind === undefined
      ? null
      : kind === "request"
      ? parseRequestLine
      : parseStatusLine;
  }

  /** Bytes of an incomplete head held so far. */
  get bufferedLength(): number {
    return this.#length;
  }

  /**
   * Feed the next bytes.
   *
   * @param chunk Bytes received; they are copied where kept.
   * @returns The head and the bytes after it once the head is complete,
   *   else `null`. Both may be views into `chunk`.
   * @throws {HttpError} 400 on a bare LF or a malformed start line (505 for
   *   its HTTP version), 431 over a limit.
   */
  push(chunk: Uint8Array): HeadBytes | null {
    if (this.#done) throw new TypeError("The head is already complete");
    const limit = this.#limits.maxHeaderBytes;
    const before = this.#length;
    let view: Uint8Array;
    if (before === 0) {
      // The common case: the whole head in one chunk, scanned where it lies.
      view = chunk.length > limit ? chunk.subarray(0, limit) : chunk;
    } else {
      const take = Math.min(chunk.length, limit - before);
      this.#reserve(before + take);
      this.#buffer.set(chunk.subarray(0, take), before);
      view = this.#buffer.subarray(0, before + take);
    }

    const end = this.#scan(view);
    if (end >= 0) {
      this.#done = true;
      const head = before === 0 ? view.subarray(0, end) : view.slice(0, end);
      this.#buffer = EMPTY;
      const restStart = end - before;
      // A view: a caller that keeps it copies it. A copy here cost a client
      // fed a megabyte of interim (1xx) heads in one chunk a copy of the
      // rest per head: seconds of CPU and hundreds of MiB.
      return { head, rest: chunk.subarray(restStart) };
    }
    if (before + chunk.length >= limit) {
      throw new HttpError(431, `The header block is over ${limit} bytes`);
    }
    if (before === 0) {
      this.#reserve(view.length);
      this.#buffer.set(view);
    }
    this.#length = view.length;
    return null;
  }

  // Grows the buffer by doubling, never past the limit.
  #reserve(size: number): void {
    if (size <= this.#buffer.length) return;
    let capacity = Math.max(this.#buffer.length, 512);
    while (capacity < size) capacity *= 2;
    const grown = new Uint8Array(Math.min(capacity, this.#limits.maxHeaderBytes));
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }

  // Returns the offset just past the blank line ending the head, or -1.
  #scan(view: Uint8Array): number {
    let from = this.#scanned;
    for (;;) {
      const lf = view.indexOf(LF, from);
      if (lf < 0) {
        this.#scanned = view.length;
        return -1;
      }
      // RFC 9112 §2.2 lets a recipient accept a bare LF; accepting it is how
      // request smuggling between lenient and strict parsers starts.
      if (lf === 0 || view[lf - 1] !== CR) {
        throw new HttpError(400, "A line ends in a bare LF instead of CRLF");
      }
      if (lf - 1 === this.#lineStart) return lf + 1;
      if (this.#lineStart === 0) this.#startLine?.(latin1(view.subarray(0, lf - 1)));
      if (this.#lineStart > 0 && ++this.#fieldLines > this.#limits.maxHeaderCount) {
        throw new HttpError(431, `More than ${this.#limits.maxHeaderCount} header fields`);
      }
      this.#lineStart = lf + 1;
      from = lf + 1;
    }
  }
}

/** A parsed request head (RFC 9112 §3). */
export interface RequestHead {
  /** The method, case-sensitive (RFC 9110 §9.1). */
  readonly method: string;
  /** The request-target, as sent. */
  readonly target: string;
  /** The field lines in order, names as received, values trimmed of OWS. */
  readonly headers: [name: string, value: string][];
}

/** A parsed response head (RFC 9112 §4). */
export interface ResponseHead {
  /** The HTTP version's minor digit: 0 for HTTP/1.0, 1 for HTTP/1.1, and so on. */
  readonly minorVersion: number;
  /** The three-digit status code. */
  readonly statusCode: number;
  /** The reason phrase, possibly empty. */
  readonly reason: string;
  /** The field lines in order, names as received, values trimmed of OWS. */
  readonly headers: [name: string, value: string][];
}

/**
 * Parse a request head that {@linkcode HeadReader} completed.
 *
 * @param head The head's bytes, ending in the blank line.
 * @returns The method, target and fields.
 * @throws {HttpError} 400 on bad syntax, 505 on an HTTP version other than 1.x from 1.1 up.
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "./http1.ts";
 * const head = parseRequestHead(new TextEncoder().encode("GET /a HTTP/1.1\r\nHost:  x \r\n\r\n"));
 * if (!(head.target === "/a" && head.headers[0]?.[1] === "x")) throw new Error("Example failed");
 * ```
 */
export function parseRequestHead(head: Uint8Array): RequestHead {
  const lines = splitLines(head);
  return { ...parseRequestLine(lines[0] ?? ""), headers: parseFields(lines) };
}

function parseRequestLine(line: string): { method: string; target: string } {
  const parts = line.split(" ");
  const [method, target, version] = parts;
  if (
    parts.length !== 3 || method === undefined || target === undefined ||
    version === undefined || !TOKEN.test(method) || !REQUEST_TARGET.test(target)
  ) {
    throw new HttpError(400, "The request line is malformed");
  }
  checkVersion(version);
  return { method, target };
}

/**
 * Parse a response head that {@linkcode HeadReader} completed.
 *
 * @param head The head's bytes, ending in the blank line.
 * @returns The version, status and fields.
 * @throws {HttpError} On bad syntax or an HTTP version other than 1.x. An
 *   HTTP/1.0 response is read (RFC 9110 §6.2: an HTTP/1.1 client reads
 *   one): an old server's refusal still shows its status and body.
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "./http1.ts";
 * const head = parseResponseHead(new TextEncoder().encode("HTTP/1.1 404 Not Found\r\n\r\n"));
 * if (!(head.statusCode === 404 && head.reason === "Not Found")) throw new Error("Example failed");
 * ```
 */
export function parseResponseHead(head: Uint8Array): ResponseHead {
  const lines = splitLines(head);
  return { ...parseStatusLine(lines[0] ?? ""), headers: parseFields(lines) };
}

function parseStatusLine(
  line: string,
): { minorVersion: number; statusCode: number; reason: string } {
  // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ];
  // the second SP is often dropped with an empty reason, so it is optional here.
  const match = /^(\S+) ([0-9]{3})(?: (.*))?$/.exec(line);
  if (match === null || !REASON_PHRASE.test(match[3] ?? "")) {
    throw new HttpError(400, "The status line is malformed");
  }
  const minorVersion = checkVersion(match[1] ?? "", 0);
  return { minorVersion, statusCode: Number(match[2]), reason: match[3] ?? "" };
}

// HTTP/1.x from 1.`leastMinor` up; returns the minor digit.
function checkVersion(version: string, leastMinor = 1): number {
  const match = /^HTTP\/([0-9])\.([0-9])$/.exec(version);
  if (match === null) throw new HttpError(400, `Malformed HTTP version ${JSON.stringify(version)}`);
  const minor = Number(match[2]);
  if (match[1] !== "1" || minor < leastMinor) {
    throw new HttpError(505, `HTTP version ${version.slice(5)} is not supported, only 1.1`);
  }
  return minor;
}

// The head as lines, without the final blank line. HeadReader has already
// made sure every LF follows a CR; a lone CR is caught per line.
function splitLines(head: Uint8Array): string[] {
  const text = latin1(head.subarray(0, head.length - 4));
  const lines = text.split("\r\n");
  for (const line of lines) {
    if (line.includes("\r")) throw new HttpError(400, "A line holds a bare CR");
  }
  return lines;
}

function parseFields(lines: readonly string[]): [string, string][] {
  const fields: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const first = line.charCodeAt(0);
    if (first === 0x20 || first === 0x09) {
      // RFC 9112 §5.2: obs-fold is deprecated; rejecting it is allowed.
      throw new HttpError(400, "A header line starts with whitespace (obsolete line folding)");
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    // RFC 9112 §5.1: whitespace before the colon MUST be rejected with 400.
    if (colon < 0 || !TOKEN.test(name)) {
      throw new HttpError(400, `Malformed header line ${JSON.stringify(line.slice(0, 64))}`);
    }
    const value = sliceTrimmed(line, colon + 1, line.length);
    if (!FIELD_VALUE.test(value)) {
      throw new HttpError(400, `The ${name} header holds a control character`);
    }
    fields.push([name, value]);
  }
  return fields;
}

// `text` from `start` to `end` without the OWS around it, in one slice.
function sliceTrimmed(text: string, start: number, end: number): string {
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

const ASCII = new TextDecoder();

// Bytes to a string one code unit per byte: field values may carry obs-text,
// which no text decoder maps one to one ("latin1" is windows-1252 in
// WHATWG). Heads are nearly always ASCII, where UTF-8 decoding is the same
// and many times faster than building the string by hand.
function latin1(bytes: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return ASCII.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    const slice = bytes.subarray(i, i + 4096);
    text += String.fromCharCode.apply(null, slice as unknown as number[]);
  }
  return text;
}

/**
 * Whether a string is an HTTP token (RFC 9110 §5.6.2).
 *
 * @param value The string to test.
 * @returns `true` for one or more tchar.
 *
 * @example
 * ```ts
 * import { isToken } from "./http1.ts";
 * if (!(isToken("permessage-deflate") && !isToken("a b"))) throw new Error("Example failed");
 * ```
 */
export function isToken(value: string): boolean {
  return TOKEN.test(value);
}

/**
 * Whether a string may be sent as a request-target (RFC 9112 §3.2): visible
 * ASCII, no whitespace.
 *
 * @param value The target to test.
 * @returns `true` when the target is safe to write.
 *
 * @example
 * ```ts
 * import { isRequestTarget } from "./http1.ts";
 * if (!(isRequestTarget("/chat?room=1") && !isRequestTarget("/a b"))) throw new Error("Example failed");
 * ```
 */
export function isRequestTarget(value: string): boolean {
  return REQUEST_TARGET.test(value);
}

// RFC 9110 §7.2: Host = uri-host [ ":" port ], with RFC 3986's host: an IP
// literal in brackets, or a reg-name (possibly empty) of unreserved,
// sub-delims and %-escapes, which an IPv4 address also is.
const HOST =
  /^(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;

/**
 * Whether a string is a valid `Host` field value (RFC 9110 §7.2).
 *
 * @param value The value to test.
 * @returns `true` for `host` or `host:port`.
 *
 * @example
 * ```ts
 * import { isHost } from "./http1.ts";
 * if (!(isHost("example.com:8080") && isHost("[::1]:80") && !isHost("a b/c"))) throw new Error("Example failed");
 * ```
 */
export function isHost(value: string): boolean {
  return HOST.test(value);
}

/**
 * Whether a string may be sent as a header value: no CR, LF or other
 * control character but HTAB (RFC 9110 §5.5), and no character above
 * U+00FF. A value is bytes, one per character, as Fetch's `Headers` have
 * them and as the parser here reads them: U+0080-U+00FF (obs-text) are
 * written as one byte each, and a value beyond that is the caller's to
 * encode (percent-encoding, say).
 *
 * @param value The value to test.
 * @returns `true` when the value is safe to write.
 *
 * @example
 * ```ts
 * import { isFieldValue } from "./http1.ts";
 * if (!(isFieldValue("café") && !isFieldValue("a\r\nX-Evil: 1") && !isFieldValue("日本"))) {
 *   throw new Error("Example failed");
 * }
 * ```
 */
export function isFieldValue(value: string): boolean {
  // deno-lint-ignore no-control-regex -- finding control characters is the point
  return !/[\x00-\x08\x0a-\x1f\x7f\u0100-\uffff]/.test(value);
}

/**
 * Split a comma-separated list (RFC 9110 §5.6.1) into its trimmed, non-empty
 * elements. Commas inside quoted-strings do not split.
 *
 * @param value The field value, or several joined with ", ".
 * @returns The elements, in order.
 * @throws {HttpError} 400 on an unterminated quoted-string.
 *
 * @example An extension offer with a quoted parameter
 * ```ts
 * import { splitList } from "./http1.ts";
 * const elements = splitList('foo; a="1,2", , bar');
 * if (!(elements.length === 2 && elements[0] === 'foo; a="1,2"')) throw new Error("Example failed");
 * ```
 */
export function splitList(value: string): string[] {
  // One element is the common case; an array pushed to from empty gets
  // room for 17.
  if (value.indexOf(",") < 0 && value.indexOf('"') < 0) {
    const only = sliceTrimmed(value, 0, value.length);
    return only === "" ? [] : [only];
  }
  const elements: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c) i++; // quoted-pair: skip the escaped character
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) {
      quoted = true;
    } else if (c === 0x2c) {
      const element = sliceTrimmed(value, start, i);
      if (element !== "") elements.push(element);
      start = i + 1;
    }
  }
  if (quoted) throw new HttpError(400, "A quoted-string is not terminated");
  const last = sliceTrimmed(value, start, value.length);
  if (last !== "") elements.push(last);
  return elements;
}

/** How a response's body is delimited (RFC 9112 §6.3). */
export type BodyFraming =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" }
  | { readonly kind: "close" };

/**
 * Whether a status is a 1xx (interim) one. Not 000 to 099: RFC 9110 §15
 * has a client take a status outside 100 to 599 as a 5xx.
 *
 * @param statusCode The response's status.
 * @returns Whether another response follows this one.
 *
 * @example
 * ```ts
 * import { isInterim } from "./http1.ts";
 * if (!isInterim(100) || isInterim(99) || isInterim(200)) throw new Error("Example failed");
 * ```
 */
export function isInterim(statusCode: number): boolean {
  return statusCode >= 100 && statusCode < 200;
}

/**
 * Whether a response with this status ends at its head: 204 and 304 carry
 * no content (RFC 9110 §6.4.1), whatever their fields say.
 *
 * @param statusCode The response's status.
 * @returns `true` for 204 and 304.
 *
 * @example
 * ```ts
 * import { isBodiless } from "./http1.ts";
 * if (!isBodiless(204) || isBodiless(200)) throw new Error("Example failed");
 * ```
 */
export function isBodiless(statusCode: number): boolean {
  return statusCode === 204 || statusCode === 304;
}

/**
 * How the body of a response is delimited (RFC 9112 §6.3): none for 1xx,
 * 204 and 304; chunked when the last transfer coding is chunked; until the
 * connection closes for any other transfer coding; else by a valid
 * Content-Length, or until the connection closes without one.
 *
 * @param statusCode The response's status.
 * @param headers The response's fields.
 * @returns The framing.
 * @throws {HttpError} On an invalid or conflicting Content-Length (§6.3 item 5).
 *
 * @example
 * ```ts
 * import { responseBodyFraming } from "./http1.ts";
 * const framing = responseBodyFraming(403, [["Content-Length", "9"]]);
 * if (!(framing.kind === "length" && framing.length === 9)) throw new Error("Example failed");
 * ```
 */
export function responseBodyFraming(statusCode: number, headers: Headers): BodyFraming {
  if (isInterim(statusCode) || isBodiless(statusCode)) return { kind: "none" };
  const codings: string[] = [];
  const lengths: string[] = [];
  let hasTransferEncoding = false;
  let hasContentLength = false;
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === "transfer-encoding") {
      hasTransferEncoding = true;
      codings.push(...splitList(value));
    } else if (lower === "content-length") {
      hasContentLength = true;
      lengths.push(...splitList(value));
    }
  }
  if (hasTransferEncoding) {
    const last = codings.at(-1)?.split(";")[0]?.trim().toLowerCase();
    return last === "chunked" ? { kind: "chunked" } : { kind: "close" };
  }
  if (!hasContentLength) return { kind: "close" };
  // RFC 9110 §8.6: a list of identical lengths may be taken as one; an
  // empty field is no length (1*DIGIT), not an absent one.
  const first = lengths[0] ?? "";
  if (!/^[0-9]{1,15}$/.test(first) || lengths.some((length) => length !== first)) {
    throw new HttpError(502, "The Content-Length header is invalid");
  }
  const length = Number(first);
  return length === 0 ? { kind: "none" } : { kind: "length", length };
}

/** Bounds on the framing bytes of a chunked body. */
export interface BodyLimits {
  /** Bytes of one chunk-size line, extensions included: 1024 unless given. */
  maxChunkLineBytes?: number;
  /** Bytes of the trailer section: 16 KiB unless given. */
  maxTrailerBytes?: number;
}

enum Chunked {
  SIZE,
  DATA,
  DATA_END,
  TRAILER,
  DONE,
}

/**
 * Decodes a response body as it arrives, by the framing of
 * {@linkcode responseBodyFraming}. Bytes past the end of the body are
 * ignored.
 *
 * @example A chunked body in two pieces
 * ```ts
 * import { BodyReader } from "./http1.ts";
 * const reader = new BodyReader({ kind: "chunked" });
 * const encode = (text: string) => new TextEncoder().encode(text);
 * const first = reader.push(encode("3\r\nabc\r"));
 * const second = reader.push(encode("\n0\r\n\r\n"));
 * if (!(first.length === 1 && second.length === 0 && reader.done)) throw new Error("Example failed");
 * ```
 */
export class BodyReader {
  readonly #framing: BodyFraming;
  readonly #maxLine: number;
  readonly #maxTrailer: number;
  #remaining: number;
  #done: boolean;
  #state = Chunked.SIZE;
  // The chunk-size or trailer line read so far, as text (ASCII).
  #line = "";
  #sawCr = false;
  #trailerBytes = 0;

  /**
   * Make a reader.
   *
   * @param framing How the body is delimited.
   * @param limits Bounds on a chunked body's framing.
   */
  constructor(framing: BodyFraming, limits: BodyLimits = {}) {
    this.#framing = framing;
    this.#maxLine = limits.maxChunkLineBytes ?? 1024;
    this.#maxTrailer = limits.maxTrailerBytes ?? 16 * 1024;
    this.#remaining = framing.kind === "length" ? framing.length : 0;
    this.#done = framing.kind === "none";
  }

  /** Whether the whole body has arrived. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * Feed received bytes, or `null` at the end of the stream.
   *
   * @param chunk The bytes, or `null` when the stream ended.
   * @returns Pieces of the body decoded from them (copies), possibly none.
   * @throws {HttpError} On a malformed chunked body, or a stream that ended early.
   */
  push(chunk: Uint8Array | null): Uint8Array[] {
    if (this.#done) return [];
    if (chunk === null) {
      if (this.#framing.kind !== "close") {
        throw new HttpError(400, "The connection closed before the end of the body");
      }
      this.#done = true;
      return [];
    }
    switch (this.#framing.kind) {
      case "close":
        return chunk.length === 0 ? [] : [chunk.slice()];
      case "length": {
        const take = Math.min(this.#remaining, chunk.length);
        this.#remaining -= take;
        if (this.#remaining === 0) this.#done = true;
        return take === 0 ? [] : [chunk.slice(0, take)];
      }
      case "chunked":
        return this.#chunked(chunk);
      default:
        return [];
    }
  }

  #chunked(chunk: Uint8Array): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    try {
      this.#readChunked(chunk, pieces);
    } catch (error) {
      // The pieces decoded before the error are handed out with it, so a
      // body fed whole fails after the same data as one fed in pieces.
      if (error instanceof HttpError) throw new HttpError(error.status, error.message, pieces);
      throw error;
    }
    return pieces;
  }

  #readChunked(chunk: Uint8Array, pieces: Uint8Array[]): void {
    let i = 0;
    while (i < chunk.length && this.#state !== Chunked.DONE) {
      if (this.#state === Chunked.DATA) {
        const take = Math.min(this.#remaining, chunk.length - i);
        pieces.push(chunk.slice(i, i + take));
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = Chunked.DATA_END;
        continue;
      }
      const line = this.#readLine(chunk, i);
      i = line.next;
      if (line.text === null) continue;
      if (this.#state === Chunked.SIZE) {
        this.#startChunk(line.text);
      } else if (this.#state === Chunked.DATA_END) {
        if (line.text !== "") throw new HttpError(400, "A chunk is longer than its size");
        this.#state = Chunked.SIZE;
      } else if (line.text === "") {
        this.#state = Chunked.DONE;
        this.#done = true;
      }
    }
  }

  // RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF.
  #startChunk(line: string): void {
    const match = /^0*([0-9A-Fa-f]{1,12})?[ \t]*(?:;.*)?$/.exec(line);
    if (match === null || !/^[0-9A-Fa-f]/.test(line)) {
      throw new HttpError(400, "A chunk-size line is malformed");
    }
    this.#remaining = parseInt(match[1] ?? "0", 16);
    this.#state = this.#remaining === 0 ? Chunked.TRAILER : Chunked.DATA;
  }

  // Reads up to the end of a line; `text` is the whole line once its CRLF arrived.
  #readLine(chunk: Uint8Array, from: number): { text: string | null; next: number } {
    const limit = this.#state === Chunked.TRAILER ? this.#maxTrailer : this.#maxLine;
    for (let i = from; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.#sawCr) {
        if (byte !== LF) throw new HttpError(400, "A bare CR in the chunked framing");
        this.#sawCr = false;
        const text = this.#line;
        this.#line = "";
        return { text, next: i + 1 };
      }
      if (byte === CR) {
        this.#sawCr = true;
        continue;
      }
      if (byte === LF) throw new HttpError(400, "A bare LF in the chunked framing");
      this.#line += String.fromCharCode(byte);
      const used = this.#state === Chunked.TRAILER ? ++this.#trailerBytes : this.#line.length;
      if (used > limit) {
        throw new HttpError(400, "The chunked framing has a line over its limit");
      }
    }
    return { text: null, next: chunk.length };
  }
}
