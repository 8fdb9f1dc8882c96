import assert from "node:assert/strict";
import {
  type BodyFraming,
  BodyReader,
  HeadReader,
  HttpError,
  parseRequestHead,
  parseResponseHead,
  responseBodyFraming,
  splitList,
} from "../http1.ts";
import { choppingsBy, fromUtf8 as decode, utf8 as encode } from "./_util.ts";

const LIMITS = { maxHeaderBytes: 16 * 1024, maxHeaderCount: 100 };

// The ways a byte stream may be chopped: whole, byte by byte, random pieces.
const choppings = (bytes: Uint8Array, seed = 1) => choppingsBy(bytes, [seed], 17);

// The head, and every byte after it: the rest of the completing piece and the pieces after.
function readHead(pieces: Uint8Array[], limits = LIMITS) {
  const reader = new HeadReader(limits);
  for (const [i, piece] of pieces.entries()) {
    const done = reader.push(piece);
    if (done === null) continue;
    const after = [done.rest, ...pieces.slice(i + 1)].flatMap((bytes) => [...bytes]);
    return { head: done.head, rest: new Uint8Array(after) };
  }
  return null;
}

function httpError(fn: () => unknown, status: number, pattern?: RegExp): void {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof HttpError, `expected HttpError, got ${error}`);
    assert.equal(error.status, status, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

const HEAD = "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n";

Deno.test("HeadReader finds the same head and rest however the bytes are chopped", () => {
  const bytes = encode(HEAD + "\x01\x02\x03");
  for (const [how, pieces] of choppings(bytes)) {
    const done = readHead(pieces);
    assert.ok(done !== null, how);
    assert.equal(decode(done.head), HEAD, how);
    assert.deepEqual([...done.rest], [1, 2, 3], how);
  }
});

Deno.test("HeadReader hands back the rest as a view, not a copy", () => {
  // A copy per head cost a client fed a megabyte of interim (1xx) heads in
  // one chunk a copy of the rest per head: seconds of CPU. Its caller
  // copies what it keeps (see the Handshake tests).
  const bytes = encode(HEAD + "xy");
  const done = new HeadReader(LIMITS).push(bytes);
  assert.equal(decode(done!.rest), "xy");
  assert.equal(done!.rest.buffer, bytes.buffer);
});

Deno.test("HeadReader rejects a bare LF as soon as it arrives", () => {
  const reader = new HeadReader(LIMITS);
  httpError(() => reader.push(encode("GET / HTTP/1.1\nHost")), 400, /bare LF/);
  httpError(() => readHead([encode("GET / HTTP/1.1\r"), encode("\r\n\n")]), 400, /bare LF/);
});

Deno.test("HeadReader refuses a start line that is not HTTP once that line is complete", () => {
  // A peer speaking another protocol (SSH, SMTP) waited out the timeout or
  // 16 KiB before; one that does not end its line still does.
  const request = new HeadReader(LIMITS, "request");
  httpError(() => request.push(encode("SSH-2.0-OpenSSH_9.6\r\n")), 400, /request line/);
  const response = new HeadReader(LIMITS, "response");
  assert.equal(response.push(encode("220 mail.example ESMTP")), null);
  httpError(() => response.push(encode("\r\n")), 400, /status line/);
  httpError(() => new HeadReader(LIMITS, "response").push(encode("HTTP/2.0 200 OK\r\n")), 505);
  // Good start lines pass, and the reader waits for the rest of the head.
  assert.equal(new HeadReader(LIMITS, "request").push(encode("GET / HTTP/1.1\r\nHost")), null);
  assert.equal(new HeadReader(LIMITS, "response").push(encode("HTTP/1.1 101 OK\r\nX")), null);
  // Without a kind, only the whole head is judged (by its parser).
  assert.equal(new HeadReader(LIMITS).push(encode("SSH-2.0-OpenSSH_9.6\r\n")), null);
});

Deno.test("HeadReader accepts a head of exactly maxHeaderBytes and refuses one byte more", () => {
  const filler = (size: number) => {
    const base = "GET / HTTP/1.1\r\nX: \r\n\r\n";
    return base.replace("X: ", "X: " + "a".repeat(size - base.length));
  };
  const limits = { maxHeaderBytes: 200, maxHeaderCount: 10 };
  const exact = encode(filler(200));
  assert.equal(exact.length, 200);
  for (const [how, pieces] of choppings(exact)) {
    assert.equal(readHead(pieces, limits)?.head.length, 200, how);
  }
  for (const [how, pieces] of choppings(encode(filler(201)))) {
    httpError(() => readHead(pieces, limits), 431, new RegExp(`200 bytes.*|${how}`));
  }
});

Deno.test("HeadReader fails at the limit without waiting for the end of the head", () => {
  const reader = new HeadReader({ maxHeaderBytes: 100, maxHeaderCount: 10 });
  assert.equal(reader.push(encode("GET / HTTP/1.1\r\n" + "a".repeat(80))), null);
  // Bytes 97..100 do not end the head, so the head cannot fit any more.
  httpError(() => reader.push(encode("bbbb")), 431);
  // A single huge chunk fails without being copied whole.
  const huge = new Uint8Array(10_000_000).fill(0x61);
  httpError(() => new HeadReader(LIMITS).push(huge), 431);
});

Deno.test("HeadReader accepts maxHeaderCount fields and refuses one more", () => {
  const head = (count: number) => encode(`GET / HTTP/1.1\r\n${"X: y\r\n".repeat(count)}\r\n`);
  const limits = { maxHeaderBytes: 16 * 1024, maxHeaderCount: 5 };
  for (const [how, pieces] of choppings(head(5))) {
    assert.notEqual(readHead(pieces, limits), null, how);
  }
  for (const [how, pieces] of choppings(head(6))) {
    httpError(() => readHead(pieces, limits), 431, new RegExp(`5 header fields|${how}`));
  }
  // The sixth field line fails before the blank line arrives.
  httpError(() => new HeadReader(limits).push(head(6).subarray(0, 16 + 6 * 6)), 431);
});

Deno.test("parseRequestHead keeps names as received and trims values of OWS", () => {
  const head = parseRequestHead(
    encode("GET /a?b=1 HTTP/1.1\r\nHost:\t example.com \t\r\nX-Empty:\r\nx-lower: A  B\r\n\r\n"),
  );
  assert.equal(head.method, "GET");
  assert.equal(head.target, "/a?b=1");
  assert.deepEqual(head.headers, [["Host", "example.com"], ["X-Empty", ""], ["x-lower", "A  B"]]);
});

Deno.test("parseRequestHead accepts HTTP/1.1 and later 1.x and refuses other versions", () => {
  const parse = (version: string) => parseRequestHead(encode(`GET / ${version}\r\n\r\n`));
  assert.equal(parse("HTTP/1.1").method, "GET");
  assert.equal(parse("HTTP/1.2").method, "GET");
  httpError(() => parse("HTTP/1.0"), 505);
  httpError(() => parse("HTTP/2.0"), 505);
  httpError(() => parse("HTTP/1.10"), 400);
  httpError(() => parse("http/1.1"), 400);
});

Deno.test("parseRequestHead refuses malformed lines with 400", () => {
  const cases: [string, string][] = [
    ["obsolete line folding", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"],
    ["a tab before the first field", "GET / HTTP/1.1\r\n\tX: a\r\n\r\n"],
    ["whitespace before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"],
    ["an empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n"],
    ["no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n"],
    ["a name that is not a token", "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"],
    ["a control character in a value", "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"],
    ["a bare CR", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"],
    ["two spaces in the request line", "GET  / HTTP/1.1\r\n\r\n"],
    ["a missing version", "GET /\r\n\r\n"],
    ["an empty request line", "\r\n\r\n"],
    ["a method that is not a token", "G(T / HTTP/1.1\r\n\r\n"],
  ];
  for (const [what, text] of cases) {
    const done = new HeadReader(LIMITS).push(encode(text));
    assert.ok(done !== null, what);
    httpError(() => parseRequestHead(done.head), 400);
  }
});

Deno.test("parseResponseHead reads the status and reason, possibly empty", () => {
  const parse = (line: string) => parseResponseHead(encode(`${line}\r\nA: b\r\n\r\n`));
  const full = parse("HTTP/1.1 101 Switching Protocols");
  assert.equal(full.statusCode, 101);
  assert.equal(full.reason, "Switching Protocols");
  assert.deepEqual(full.headers, [["A", "b"]]);
  assert.equal(parse("HTTP/1.1 404 ").reason, "");
  assert.equal(parse("HTTP/1.1 404").statusCode, 404);
  httpError(() => parse("HTTP/1.1 99 Low"), 400);
  httpError(() => parse("HTTP/1.1  200 OK"), 400);
  // RFC 9110 §6.2: an HTTP/1.1 client reads an HTTP/1.0 response.
  assert.equal(parse("HTTP/1.0 404 Not Found").minorVersion, 0);
  assert.equal(full.minorVersion, 1);
  httpError(() => parse("HTTP/2.0 200 OK"), 505);
  httpError(() => parse("HTTP/0.9 200 OK"), 505);
});

Deno.test("splitList splits on commas outside quoted-strings and drops empty elements", () => {
  assert.deepEqual(splitList("a, b,,c ,\t"), ["a", "b", "c"]);
  assert.deepEqual(splitList('x; p="1,2", y; q="a\\"," '), ['x; p="1,2"', 'y; q="a\\","']);
  assert.deepEqual(splitList(""), []);
  httpError(() => splitList('x; p="1,2'), 400);
});

Deno.test("responseBodyFraming follows RFC 9112 §6.3", () => {
  const framing = (status: number, headers: [string, string][]) =>
    responseBodyFraming(status, headers);
  assert.deepEqual(framing(204, [["Content-Length", "5"]]), { kind: "none" });
  assert.deepEqual(framing(304, []), { kind: "none" });
  assert.deepEqual(framing(100, []), { kind: "none" });
  assert.deepEqual(framing(403, [["Content-Length", "0"]]), { kind: "none" });
  assert.deepEqual(framing(403, [["content-length", "12"]]), { kind: "length", length: 12 });
  assert.deepEqual(framing(403, [["Content-Length", "5, 5"]]), { kind: "length", length: 5 });
  assert.deepEqual(framing(403, []), { kind: "close" });
  assert.deepEqual(framing(403, [["Transfer-Encoding", "gzip, chunked"]]), { kind: "chunked" });
  assert.deepEqual(framing(403, [["Transfer-Encoding", "chunked, gzip"]]), { kind: "close" });
  assert.deepEqual(
    framing(403, [["Content-Length", "3"], ["Transfer-Encoding", "chunked"]]),
    { kind: "chunked" },
  );
  httpError(() => framing(403, [["Content-Length", "5"], ["Content-Length", "6"]]), 502);
  httpError(() => framing(403, [["Content-Length", "-1"]]), 502);
  httpError(() => framing(403, [["Content-Length", "0x10"]]), 502);
  // 1*DIGIT: an empty field is an invalid length, not an absent one.
  for (const empty of ["", ",", " , "]) {
    httpError(() => framing(403, [["Content-Length", empty]]), 502);
  }
});

function readBody(framing: BodyFraming, pieces: Uint8Array[], end = false): string {
  const reader = new BodyReader(framing, { maxChunkLineBytes: 64, maxTrailerBytes: 64 });
  let body = "";
  for (const piece of pieces) {
    for (const part of reader.push(piece)) body += decode(part);
  }
  if (end) reader.push(null);
  assert.ok(reader.done, "the body is complete");
  return body;
}

Deno.test("BodyReader reads a Content-Length body and ignores what follows", () => {
  const bytes = encode("Hello, world!GARBAGE");
  for (const [how, pieces] of choppings(bytes)) {
    assert.equal(readBody({ kind: "length", length: 13 }, pieces), "Hello, world!", how);
  }
});

Deno.test("BodyReader decodes a chunked body however it is chopped", () => {
  const bytes = encode(
    '5\r\nHello\r\n0007;ext="a;b"\r\n, world\r\nA \r\n!!!!!!!!!!\r\n0\r\nX-Trailer: t\r\n\r\nJUNK',
  );
  for (const seed of [1, 2, 3]) {
    for (const [how, pieces] of choppings(bytes, seed)) {
      assert.equal(readBody({ kind: "chunked" }, pieces), "Hello, world!!!!!!!!!!", how);
    }
  }
});

Deno.test("BodyReader refuses malformed chunked framing", () => {
  const bad = (text: string, pattern: RegExp) =>
    httpError(() => readBody({ kind: "chunked" }, [encode(text)]), 400, pattern);
  bad("g\r\n", /chunk-size/);
  bad(";x\r\n", /chunk-size/);
  bad("1234567890123\r\n", /chunk-size/);
  bad("3\r\nabcd\r\n", /longer than its size/);
  bad("3\nabc", /bare LF/);
  bad("3\r\nabc\rX", /bare CR/);
  bad(`1;${"x".repeat(80)}\r\n`, /over its limit/);
  bad(`0\r\n${"X: y\r\n".repeat(20)}\r\n`, /over its limit/);
});

Deno.test("BodyReader reads until the end of the stream without a length", () => {
  assert.equal(readBody({ kind: "close" }, [encode("ab"), encode("cd")], true), "abcd");
});

Deno.test("BodyReader fails when the stream ends inside a delimited body", () => {
  const reader = new BodyReader({ kind: "length", length: 10 });
  reader.push(encode("12345"));
  httpError(() => reader.push(null), 400, /closed before the end/);
  const chunked = new BodyReader({ kind: "chunked" });
  chunked.push(encode("5\r\nab"));
  httpError(() => chunked.push(null), 400);
});
