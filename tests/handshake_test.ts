import assert from "node:assert/strict";
import { acceptToken, checkUpgradeRequest, Handshake, upgradeOptions } from "../handshake.ts";
import {
  AcceptConnection,
  type Headers,
  RejectConnection,
  RejectData,
  Request as WsRequest,
} from "../events.ts";
import { LocalProtocolError, RemoteProtocolError } from "../errors.ts";
import { PerMessageDeflate } from "../permessage_deflate.ts";
import type { Extension, OutboundFrame } from "../extensions.ts";
import { NO_RSV, type Opcode, type RsvBits } from "../frame.ts";
import { HeadReader, parseRequestHead, parseResponseHead } from "../http1.ts";
import { ConnectionState, ConnectionType } from "../state.ts";
import { withTimeout, writeAll } from "./_drivers.ts";
import { choppingsBy, concatAll, feed, fromUtf8 as decode, prng, utf8 as encode } from "./_util.ts";

const { CLIENT, SERVER } = ConnectionType;

// The ways a byte stream may be chopped: whole, byte by byte, random pieces.
const choppings = (bytes: Uint8Array, seeds = [1, 2, 3]) => choppingsBy(bytes, seeds, 40);

/** An extension that records the handshake calls made on it. */
class FakeExtension implements Extension {
  readonly name: string;
  readonly calls: string[] = [];
  readonly #offer: string | null;
  readonly #accept: (offer: string) => string | null;
  #enabled = false;

  constructor(
    name: string,
    options: { offer?: string | null; accept?: (offer: string) => string | null } = {},
  ) {
    this.name = name;
    this.#offer = options.offer === undefined ? name : options.offer;
    this.#accept = options.accept ?? ((offer) => offer);
  }
  enabled(): boolean {
    return this.#enabled;
  }
  offer(): string | null {
    this.calls.push("offer");
    return this.#offer;
  }
  accept(offer: string): string | null {
    this.calls.push(`accept ${offer}`);
    const answer = this.#accept(offer);
    if (answer !== null) this.#enabled = true;
    return answer;
  }
  finalize(answer: string): void {
    this.calls.push(`finalize ${answer}`);
    this.#enabled = true;
  }
  frameInboundHeader(_opcode: Opcode, _rsv: RsvBits, _length: number): RsvBits {
    return NO_RSV;
  }
  frameInboundPayloadData(data: Uint8Array): Uint8Array {
    return data;
  }
  frameInboundComplete(_fin: boolean): Uint8Array | null {
    return null;
  }
  frameOutbound(_opcode: Opcode, rsv: RsvBits, data: Uint8Array, _fin: boolean): OutboundFrame {
    return { rsv, data };
  }
}

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** What a browser sends, more or less. */
const BROWSER_HEADERS: Headers = [
  ["Host", "example.com:8080"],
  ["Connection", "Upgrade"],
  ["Pragma", "no-cache"],
  ["Cache-Control", "no-cache"],
  ["User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"],
  ["Upgrade", "websocket"],
  ["Origin", "http://example.com"],
  ["Sec-WebSocket-Version", "13"],
  ["Accept-Encoding", "gzip, deflate, br"],
  ["Accept-Language", "en-US,en;q=0.9"],
  ["Sec-WebSocket-Key", KEY],
  ["Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"],
  ["Sec-WebSocket-Protocol", "chat, superchat"],
];

interface RequestShape {
  method?: string;
  target?: string;
  version?: string;
  headers?: Headers;
}

function requestText(shape: RequestShape = {}): string {
  const { method = "GET", target = "/chat?room=1", version = "HTTP/1.1" } = shape;
  const headers = shape.headers ?? BROWSER_HEADERS;
  return `${method} ${target} ${version}\r\n` +
    headers.map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n";
}

/** The browser headers with `name` removed, or its value replaced. */
function edit(name: string, ...values: string[]): Headers {
  const headers: [string, string][] = [];
  let done = false;
  for (const [field, value] of BROWSER_HEADERS) {
    if (field.toLowerCase() !== name.toLowerCase()) headers.push([field, value]);
    else if (!done) {
      for (const replacement of values) headers.push([field, replacement]);
      done = true;
    }
  }
  if (!done) { for (const value of values) headers.push([name, value]); }
  return headers;
}

function serverEvents(pieces: Uint8Array[]) {
  const server = new Handshake(SERVER);
  const events = [];
  for (const piece of pieces) {
    server.receiveData(piece);
    events.push(...server.events());
  }
  return { server, events };
}

/** Feed a request to a server and return the rejection it must answer with. */
function refused(
  text: string | Uint8Array,
): { error: RemoteProtocolError; hint: RejectConnection } {
  const server = new Handshake(SERVER);
  try {
    server.receiveData(typeof text === "string" ? encode(text) : text);
  } catch (error) {
    assert.ok(error instanceof RemoteProtocolError, String(error));
    assert.ok(error.eventHint instanceof RejectConnection, "the hint is a RejectConnection");
    assert.equal(server.state, ConnectionState.CONNECTING);
    return { error, hint: error.eventHint };
  }
  assert.fail(`the request was not refused: ${[...server.events()]}`);
}

function headerValue(headers: Headers, name: string): string | undefined {
  return headers.find(([field]) => field.toLowerCase() === name.toLowerCase())?.[1];
}

// ---------------------------------------------------------------- acceptToken

Deno.test("acceptToken reproduces the example of RFC 6455 §1.3", () => {
  assert.equal(acceptToken(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

Deno.test("acceptToken matches crypto.subtle and btoa on random keys", async () => {
  const next = prng(13);
  for (let i = 0; i < 50; i++) {
    const key = btoa(String.fromCharCode(...Array.from({ length: 16 }, () => next() * 256)));
    const digest = await crypto.subtle.digest(
      "SHA-1",
      encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
    );
    assert.equal(acceptToken(key), btoa(String.fromCharCode(...new Uint8Array(digest))), key);
  }
});

Deno.test("acceptToken and the client's key are right where Uint8Array has no toBase64", () => {
  // Deno has Uint8Array.prototype.toBase64; older runtimes do not, and take
  // the btoa path, which this exercises by hiding the method.
  const prototype = Uint8Array.prototype as { toBase64?: unknown };
  const descriptor = Object.getOwnPropertyDescriptor(prototype, "toBase64");
  delete prototype.toBase64;
  try {
    assert.equal(typeof new Uint8Array(1).toBase64, "undefined");
    assert.equal(acceptToken(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const client = new Handshake(CLIENT, { key: new Uint8Array(16).fill(0xfb) });
    const head = decode(client.send(new WsRequest({ host: "example.com", target: "/" })));
    assert.ok(head.includes("\r\nSec-WebSocket-Key: +/v7+/v7+/v7+/v7+/v7+w==\r\n"), head);
  } finally {
    if (descriptor !== undefined) Object.defineProperty(prototype, "toBase64", descriptor);
  }
  assert.equal(typeof new Uint8Array(1).toBase64, "function");
});

// ------------------------------------------------------------- server: accept

Deno.test("A server yields a Request with the offers and every header in order", () => {
  const text = requestText({
    headers: [
      ...BROWSER_HEADERS,
      ["Sec-WebSocket-Protocol", "v2"],
      ["Sec-WebSocket-Extensions", 'x-foo; list="a,b", x-bar'],
    ],
  });
  const { events } = serverEvents([encode(text)]);
  assert.equal(events.length, 1);
  const request = events[0];
  assert.ok(request instanceof WsRequest);
  assert.equal(request.host, "example.com:8080");
  assert.equal(request.target, "/chat?room=1");
  assert.deepEqual(request.subprotocols, ["chat", "superchat", "v2"]);
  assert.deepEqual(request.extensions, [
    "permessage-deflate; client_max_window_bits",
    'x-foo; list="a,b"',
    "x-bar",
  ]);
  assert.deepEqual(request.extraHeaders, parseRequestHead(encode(text)).headers);
  assert.equal(request.extraHeaders.length, BROWSER_HEADERS.length + 2);
});

Deno.test("A server yields the same Request however the request is chopped", () => {
  const bytes = encode(requestText());
  const reference = serverEvents([bytes]).events;
  for (const [how, pieces] of choppings(bytes)) {
    assert.deepEqual(serverEvents(pieces).events, reference, how);
  }
});

Deno.test("A server accepts case-insensitive tokens and Connection: keep-alive, Upgrade", () => {
  const headers = edit("Connection", "keep-alive, Upgrade").map(([name, value]) =>
    name === "Upgrade" ? [name, "WebSocket"] as const : [name.toLowerCase(), value] as const
  );
  const { events } = serverEvents([encode(requestText({ headers }))]);
  assert.ok(events[0] instanceof WsRequest);
  // Several Upgrade protocols, as RFC 9110 §7.8 allows, and an absolute-form target.
  const multi = edit("Upgrade", "h2c, websocket");
  const absolute = serverEvents([encode(requestText({ headers: multi, target: "ws://e/x" }))]);
  assert.ok(absolute.events[0] instanceof WsRequest);
  assert.equal(absolute.events[0].target, "ws://e/x");
});

Deno.test("A server takes the host of an absolute-form target over the Host header", () => {
  // RFC 9112 §3.2.2: an origin server MUST ignore Host then (it still
  // refuses a request without one, §3.2).
  const { events } = serverEvents([
    encode(requestText({ target: "ws://internal.example:9000/admin" })),
  ]);
  assert.ok(events[0] instanceof WsRequest);
  assert.equal(events[0].host, "internal.example:9000");
  assert.equal(events[0].target, "ws://internal.example:9000/admin");
  for (const target of ["ws:///x", "ws://user@h/x", "ws://a b/x"]) {
    assert.equal(refused(requestText({ target })).hint.statusCode, 400, target);
  }
  // An empty Host is valid for an origin-form target (RFC 9110 §7.2).
  const [empty] = serverEvents([encode(requestText({ headers: edit("Host", "") }))]).events;
  assert.ok(empty instanceof WsRequest);
  assert.equal(empty.host, "");
});

Deno.test("A server accepts HTTP/1.2 as a later HTTP/1.x", () => {
  const { events } = serverEvents([encode(requestText({ version: "HTTP/1.2" }))]);
  assert.ok(events[0] instanceof WsRequest);
});

Deno.test("A server's 101 carries the accept token, the subprotocol and the extra headers", () => {
  const { server } = serverEvents([encode(requestText())]);
  const bytes = server.send(
    new AcceptConnection({ subprotocol: "superchat", extraHeaders: [["X-Server", "test"]] }),
  );
  assert.equal(server.state, ConnectionState.OPEN);
  const head = new HeadReader({ maxHeaderBytes: 4096, maxHeaderCount: 20 }).push(bytes);
  assert.ok(head !== null && head.rest.length === 0);
  const response = parseResponseHead(head.head);
  assert.equal(response.statusCode, 101);
  assert.equal(response.reason, "Switching Protocols");
  assert.deepEqual(response.headers, [
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="],
    ["Sec-WebSocket-Protocol", "superchat"],
    ["X-Server", "test"],
  ]);
  assert.deepEqual(server.extensions, []);
});

Deno.test("A server refuses to choose a subprotocol the client did not offer", () => {
  const { server } = serverEvents([encode(requestText())]);
  assert.throws(
    () => server.send(new AcceptConnection({ subprotocol: "mqtt" })),
    (error) => error instanceof LocalProtocolError && /mqtt.*not offered/.test(error.message),
  );
  assert.equal(server.state, ConnectionState.CONNECTING);
});

Deno.test("A server negotiates extensions in offer order, first acceptable offer wins", () => {
  const headers = edit(
    "Sec-WebSocket-Extensions",
    "x-foo; mode=bad, x-bar, x-foo; mode=good, x-foo, x-unknown",
  );
  const { server } = serverEvents([encode(requestText({ headers }))]);
  const foo = new FakeExtension("x-foo", {
    accept: (offer) => offer.includes("bad") ? null : `${offer}; ok`,
  });
  const bar = new FakeExtension("x-bar");
  const unused = new FakeExtension("x-baz");
  const bytes = server.send(new AcceptConnection({ extensions: [foo, bar, unused] }));
  const head = new HeadReader({ maxHeaderBytes: 4096, maxHeaderCount: 20 }).push(bytes);
  const response = parseResponseHead(head!.head);
  assert.equal(
    headerValue(response.headers, "Sec-WebSocket-Extensions"),
    "x-bar, x-foo; mode=good; ok",
  );
  assert.deepEqual(foo.calls, ["accept x-foo; mode=bad", "accept x-foo; mode=good"]);
  assert.deepEqual(bar.calls, ["accept x-bar"]);
  assert.deepEqual(unused.calls, []);
  assert.deepEqual(server.extensions, [bar, foo]);
});

Deno.test("A server sends no Sec-WebSocket-Extensions when it declines every offer", () => {
  const { server } = serverEvents([encode(requestText())]);
  const deflate = new FakeExtension("permessage-deflate", { accept: () => null });
  const text = decode(server.send(new AcceptConnection({ extensions: [deflate] })));
  assert.ok(!/sec-websocket-extensions/i.test(text));
  assert.deepEqual(server.extensions, []);
});

Deno.test("A header value is written one byte per character, as Fetch and our parser have it", () => {
  const { server } = serverEvents([encode(requestText())]);
  const bytes = server.send(
    new AcceptConnection({ extraHeaders: [["X-Name", "café"], ["X-After", "1"]] }),
  );
  assert.deepEqual(
    bytes,
    Uint8Array.from(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Name: café\r\nX-After: 1\r\n\r\n",
      (char) => char.charCodeAt(0),
    ),
  );
  // A peer of this module reads back what was sent.
  const client = new Handshake(CLIENT);
  const request = client.send(
    new WsRequest({ host: "h", target: "/", extraHeaders: [["X-Name", "café"]] }),
  );
  const [received] = serverEvents([request]).events;
  assert.ok(received instanceof WsRequest);
  assert.deepEqual(received.extraHeaders.find(([name]) => name === "X-Name"), ["X-Name", "café"]);
  // Fetch cannot carry more, and the two transports answer alike.
  assert.throws(
    () =>
      serverEvents([encode(requestText())]).server.send(
        new AcceptConnection({ extraHeaders: [["X-Name", "日本"]] }),
      ),
    (error: Error) =>
      error instanceof LocalProtocolError &&
      /X-Name holds a character above U\+00FF/.test(error.message),
  );
});

Deno.test("A frame pipelined behind the request comes out of takeTrailingData unchanged", () => {
  const frame = new Uint8Array([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]);
  const bytes = concatAll([encode(requestText()), frame]);
  for (const [how, pieces] of choppings(bytes)) {
    const { server, events } = serverEvents(pieces);
    assert.ok(events[0] instanceof WsRequest, how);
    server.send(new AcceptConnection());
    server.receiveData(new Uint8Array([0x88, 0x80]));
    assert.deepEqual(
      server.takeTrailingData(),
      concatAll([frame, new Uint8Array([0x88, 0x80])]),
      how,
    );
    assert.deepEqual(server.takeTrailingData(), new Uint8Array(0), how);
  }
});

Deno.test("A server keeps its own copy of bytes received while it decides", () => {
  const server = new Handshake(SERVER);
  server.receiveData(encode(requestText()));
  const buffer = new Uint8Array([1, 2, 3]);
  server.receiveData(buffer);
  buffer.fill(9);
  server.send(new AcceptConnection());
  assert.deepEqual(server.takeTrailingData(), new Uint8Array([1, 2, 3]));
});

// ------------------------------------------------------------- server: refuse

Deno.test("A server refuses a method other than GET with 405 and Allow: GET", () => {
  const { hint, error } = refused(requestText({ method: "POST" }));
  assert.equal(hint.statusCode, 405);
  assert.equal(headerValue(hint.headers, "Allow"), "GET");
  assert.match(error.message, /GET/);
  assert.match(decode(hint.body!), /must be GET, not POST/);
});

Deno.test("A server refuses HTTP versions other than 1.1 and later 1.x with 505", () => {
  for (const version of ["HTTP/1.0", "HTTP/2.0", "HTTP/0.9"]) {
    assert.equal(refused(requestText({ version })).hint.statusCode, 505, version);
  }
  assert.equal(refused(requestText({ version: "HTTP/one" })).hint.statusCode, 400);
});

Deno.test("A server refuses a request without exactly one Host with 400", () => {
  const none = refused(requestText({ headers: edit("Host") }));
  assert.equal(none.hint.statusCode, 400);
  assert.match(none.error.message, /Missing Host/);
  const two = refused(requestText({ headers: edit("Host", "a", "b") }));
  assert.equal(two.hint.statusCode, 400);
  assert.match(two.error.message, /More than one Host/);
  // RFC 9112 §3.2: and one that is not host[:port].
  for (const host of ["a b", "example.com/path", "user@example.com", "[::1", "a:b:c"]) {
    const bad = refused(requestText({ headers: edit("Host", host) }));
    assert.equal(bad.hint.statusCode, 400, host);
    assert.match(bad.error.message, /not host\[:port\]/, host);
  }
  for (
    const host of [
      "example.com",
      "example.com:8080",
      "127.0.0.1:80",
      "[::1]:9000",
      "xn--bcher-kva.example",
    ]
  ) {
    const { events } = serverEvents([encode(requestText({ headers: edit("Host", host) }))]);
    assert.equal((events[0] as WsRequest).host, host);
  }
});

Deno.test("A client refuses to send a Host that is not host[:port]", () => {
  for (const host of ["", "a b", "example.com/path", "h\r\nX: y"]) {
    assert.throws(
      () => new Handshake(CLIENT).send(new WsRequest({ host, target: "/" })),
      (error) => error instanceof LocalProtocolError && /Invalid Host/.test(error.message),
      JSON.stringify(host),
    );
  }
});

Deno.test("A server refuses a request without Upgrade: websocket with 426", () => {
  for (const headers of [edit("Upgrade"), edit("Upgrade", "h2c"), edit("Upgrade", "websockets")]) {
    const { hint, error } = refused(requestText({ headers }));
    assert.equal(hint.statusCode, 426);
    assert.equal(headerValue(hint.headers, "Upgrade"), "websocket");
    assert.match(error.message, /Upgrade/);
  }
});

Deno.test("A server refuses a request whose Connection lacks upgrade with 426", () => {
  for (const headers of [edit("Connection"), edit("Connection", "keep-alive")]) {
    const { hint, error } = refused(requestText({ headers }));
    assert.equal(hint.statusCode, 426);
    assert.equal(headerValue(hint.headers, "Upgrade"), "websocket");
    assert.match(error.message, /Connection/);
  }
});

Deno.test("A server refuses a version other than 13 with 426 and Sec-WebSocket-Version: 13", () => {
  for (const values of [[], ["8"], ["13", "8"], ["13, 8"], ["013"]]) {
    const { hint } = refused(requestText({ headers: edit("Sec-WebSocket-Version", ...values) }));
    assert.equal(hint.statusCode, 426, values.join(" | "));
    assert.equal(headerValue(hint.headers, "Sec-WebSocket-Version"), "13");
  }
});

Deno.test("A server refuses a missing, repeated or malformed Sec-WebSocket-Key with 400", () => {
  const cases: [string[], RegExp][] = [
    [[], /Missing Sec-WebSocket-Key/],
    [[KEY, KEY], /More than one/],
    [["dGhlIHNhbXBsZSBub25j"], /16 bytes/], // 15 bytes
    [["dGhlIHNhbXBsZSBub25jZQ=="].map((key) => key + "AA"), /16 bytes/],
    [["dGhlIHNhbXBsZSBub25jZQ"], /16 bytes/], // padding missing
    [["dGhlIHNhbXBsZSBub25j*Q=="], /16 bytes/],
  ];
  for (const [values, pattern] of cases) {
    const { hint, error } = refused(requestText({ headers: edit("Sec-WebSocket-Key", ...values) }));
    assert.equal(hint.statusCode, 400, values.join(" | "));
    assert.match(error.message, pattern);
    assert.match(decode(hint.body!), pattern);
  }
});

Deno.test("A server refuses a malformed extension offer or target with 400", () => {
  const bad = ["x; =1", "x;;", 'x; a="1', "x y"];
  for (const value of bad) {
    const { hint } = refused(requestText({ headers: edit("Sec-WebSocket-Extensions", value) }));
    assert.equal(hint.statusCode, 400, value);
  }
  assert.equal(refused(requestText({ target: "*" })).hint.statusCode, 400);
  assert.equal(refused(requestText({ target: "example.com:80" })).hint.statusCode, 400);
});

Deno.test("A server refuses a subprotocol offer that is not a token, or named twice, with 400", () => {
  // Chosen, such a value would go back in a 101 no client accepts.
  for (const value of ['"chat"', "chat v2", "a/b", "x, x", "x, y, x"]) {
    const { hint } = refused(requestText({ headers: edit("Sec-WebSocket-Protocol", value) }));
    assert.equal(hint.statusCode, 400, value);
  }
});

Deno.test("A server refuses a request that announces a body with 400", () => {
  // RFC 9112 §6.3: the body would come ahead of the frames.
  for (
    const field of ["Content-Length: 5", "Content-Length: 0", "Transfer-Encoding: chunked"]
  ) {
    const text = requestText().replace("\r\n\r\n", `\r\n${field}\r\n\r\n`);
    assert.equal(refused(text).hint.statusCode, 400, field);
  }
});

Deno.test("A server refuses malformed HTTP with 400", () => {
  const text = requestText();
  const cases = [
    text.replace("\r\nPragma", "\nPragma"), // bare LF
    text.replace("Pragma: no-cache\r\n", "Pragma: no-cache\r\n  folded\r\n"), // obs-fold
    text.replace("Pragma:", "Pragma :"), // whitespace before the colon
    text.replace("Pragma: no-cache", "Pragma: no\x01cache"), // control character
  ];
  for (const request of cases) assert.equal(refused(request).hint.statusCode, 400);
});

Deno.test("A server's header limits hold just below and just above, with 431 above", () => {
  const base = encode(requestText()).length;
  const limits = { maxHeaderBytes: base + 100, maxHeaderCount: BROWSER_HEADERS.length + 1 };
  const padded = (size: number) =>
    requestText({ headers: [...BROWSER_HEADERS, ["X-Pad", "p".repeat(size)]] });
  const fits = encode(padded(100 - "X-Pad: \r\n".length));
  assert.equal(fits.length, limits.maxHeaderBytes);
  for (const [how, pieces] of choppings(fits)) {
    const server = new Handshake(SERVER, { limits });
    for (const piece of pieces) server.receiveData(piece);
    assert.ok([...server.events()][0] instanceof WsRequest, how);
  }
  const over = encode(padded(101 - "X-Pad: \r\n".length));
  for (const [how, pieces] of choppings(over)) {
    const server = new Handshake(SERVER, { limits });
    assert.throws(() => {
      for (const piece of pieces) server.receiveData(piece);
    }, (error) => {
      assert.ok(error instanceof RemoteProtocolError, how);
      assert.equal((error.eventHint as RejectConnection).statusCode, 431, how);
      return true;
    });
  }
  const tooMany = requestText({ headers: [...BROWSER_HEADERS, ["A", "1"], ["B", "2"]] });
  const server = new Handshake(SERVER, { limits: { maxHeaderCount: BROWSER_HEADERS.length + 1 } });
  assert.throws(
    () => server.receiveData(encode(tooMany)),
    (error) =>
      error instanceof RemoteProtocolError &&
      (error.eventHint as RejectConnection).statusCode === 431,
  );
});

Deno.test("A refused server throws the same error again if more bytes come", () => {
  const server = new Handshake(SERVER);
  const { error } = (() => {
    try {
      server.receiveData(encode(requestText({ method: "PUT" })));
    } catch (error) {
      return { error };
    }
    return { error: null };
  })();
  assert.ok(error instanceof RemoteProtocolError);
  assert.throws(() => server.receiveData(encode("more")), (again) => again === error);
  assert.throws(() => server.send(new AcceptConnection()), LocalProtocolError);
});

Deno.test("Sending a refusal's hint writes the status, headers, text body and closes", () => {
  const server = new Handshake(SERVER);
  let hint: RejectConnection | null = null;
  try {
    server.receiveData(encode(requestText({ headers: edit("Sec-WebSocket-Version", "8") })));
  } catch (error) {
    if (error instanceof RemoteProtocolError) hint = error.eventHint as RejectConnection;
  }
  assert.ok(hint !== null);
  const bytes = server.send(hint);
  assert.equal(server.state, ConnectionState.CLOSED);
  const done = new HeadReader({ maxHeaderBytes: 4096, maxHeaderCount: 20 }).push(bytes);
  const response = parseResponseHead(done!.head);
  assert.equal(response.statusCode, 426);
  assert.equal(response.reason, "Upgrade Required");
  assert.equal(headerValue(response.headers, "Sec-WebSocket-Version"), "13");
  assert.equal(headerValue(response.headers, "Content-Type"), "text/plain; charset=utf-8");
  assert.equal(headerValue(response.headers, "Content-Length"), String(done!.rest.length));
  assert.equal(decode(done!.rest), "Sec-WebSocket-Version must be 13\n");
});

// ------------------------------------------------------- server: send misuse

Deno.test("A server refuses misuse of send with a LocalProtocolError", () => {
  const fresh = new Handshake(SERVER);
  assert.throws(
    () => fresh.send(new WsRequest({ host: "h", target: "/" })),
    /A server cannot send Request in state CONNECTING/,
  );
  assert.throws(
    () => fresh.send(new AcceptConnection()),
    /cannot accept before it has received a Request/,
  );
  assert.throws(() => fresh.send(new RejectData({ data: new Uint8Array(1) })), LocalProtocolError);

  const { server } = serverEvents([encode(requestText())]);
  server.send(new AcceptConnection());
  assert.throws(
    () => server.send(new AcceptConnection()),
    /A server cannot send AcceptConnection in state OPEN/,
  );

  const closed = new Handshake(SERVER);
  closed.send(new RejectConnection({ statusCode: 403 }));
  assert.equal(closed.state, ConnectionState.CLOSED);
  assert.throws(() => closed.send(new RejectConnection()), /in state CLOSED/);
  assert.throws(() => new Handshake(SERVER).send(new RejectConnection({ statusCode: 101 })), /101/);
  assert.throws(
    () => new Handshake(SERVER).send(new RejectConnection({ headers: [["X", "a\r\nY: b"]] })),
    /control character/,
  );
});

Deno.test("A rejection without a body sends Content-Length: 0 and Connection: close", () => {
  const server = new Handshake(SERVER);
  const text = decode(server.send(new RejectConnection({ statusCode: 403 })));
  assert.equal(
    text,
    "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
  );
  assert.equal(server.state, ConnectionState.CLOSED);
  const unknown = decode(new Handshake(SERVER).send(new RejectConnection({ statusCode: 599 })));
  assert.ok(unknown.startsWith("HTTP/1.1 599 \r\n"));
});

Deno.test("A 204 or 304 rejection ends at its head and refuses a body", () => {
  for (const statusCode of [204, 304]) {
    for (const options of [{}, { body: "" }]) {
      const server = new Handshake(SERVER);
      const text = decode(server.send(new RejectConnection({ statusCode, ...options })));
      // RFC 9110 §8.6: not even Content-Length: 0.
      assert.doesNotMatch(text, /content-length|transfer-encoding/i);
      assert.ok(text.endsWith("\r\nConnection: close\r\n\r\n"), text);
      assert.equal(server.state, ConnectionState.CLOSED);
    }
    for (const options of [{ body: "nope" }, { hasBody: true }]) {
      const server = new Handshake(SERVER);
      assert.throws(
        () => server.send(new RejectConnection({ statusCode, ...options })),
        (error) => error instanceof LocalProtocolError && /cannot have a body/.test(error.message),
      );
      assert.equal(server.state, ConnectionState.CONNECTING);
    }
  }
});

Deno.test("A rejection with hasBody and no length streams RejectData as chunks", () => {
  const server = new Handshake(SERVER);
  const head = server.send(new RejectConnection({ statusCode: 503, hasBody: true }));
  assert.equal(server.state, ConnectionState.REJECTING);
  assert.match(decode(head), /\r\nTransfer-Encoding: chunked\r\n/);
  const pieces = [
    server.send(new RejectData({ data: encode("Try again "), bodyFinished: false })),
    server.send(new RejectData({ data: new Uint8Array(0), bodyFinished: false })),
    server.send(new RejectData({ data: encode("later") })),
  ];
  assert.equal(server.state, ConnectionState.CLOSED);
  assert.equal(decode(concatAll(pieces)), "a\r\nTry again \r\n5\r\nlater\r\n0\r\n\r\n");
  assert.throws(() => server.send(new RejectData({ data: new Uint8Array(0) })), LocalProtocolError);
});

Deno.test("A rejection with a Content-Length sends RejectData as is and checks the length", () => {
  const server = new Handshake(SERVER);
  server.send(
    new RejectConnection({ statusCode: 404, hasBody: true, headers: [["Content-Length", "5"]] }),
  );
  assert.throws(
    () => server.send(new RejectData({ data: encode("123456") })),
    /passes the Content-Length/,
  );
  assert.throws(() => server.send(new RejectData({ data: encode("12") })), /short/);
  assert.equal(
    decode(server.send(new RejectData({ data: encode("12"), bodyFinished: false }))),
    "12",
  );
  assert.equal(decode(server.send(new RejectData({ data: encode("345") }))), "345");
  assert.equal(server.state, ConnectionState.CLOSED);
});

Deno.test("A rejection's framing headers must agree with its body, or nothing is sent", () => {
  const refused: [string, RejectConnection, RegExp][] = [
    [
      "a Content-Length without a body",
      new RejectConnection({ statusCode: 403, headers: [["Content-Length", "5"]] }),
      /without a body cannot have a Content-Length/,
    ],
    [
      "two Content-Lengths",
      new RejectConnection({
        statusCode: 403,
        hasBody: true,
        headers: [["Content-Length", "5"], ["content-length", "5"]],
      }),
      /must be one decimal number/,
    ],
    ...["5 ", "-1", "0x10", "1e3", "1234567890123456"].map((value): [
      string,
      RejectConnection,
      RegExp,
    ] => [
      `Content-Length ${JSON.stringify(value)}`,
      new RejectConnection({
        statusCode: 403,
        hasBody: true,
        headers: [["Content-Length", value]],
      }),
      /must be one decimal number/,
    ]),
    [
      "a Transfer-Encoding of its own",
      new RejectConnection({
        statusCode: 403,
        hasBody: true,
        headers: [["Transfer-Encoding", "chunked"]],
      }),
      /Transfer-Encoding is set by the handshake/,
    ],
  ];
  for (const [what, event, message] of refused) {
    const server = new Handshake(SERVER);
    assert.throws(
      () => server.send(event),
      (error) => error instanceof LocalProtocolError && message.test(error.message),
      what,
    );
    assert.equal(server.state, ConnectionState.CONNECTING, what);
  }
  // Content-Length: 0 without a body is what would be sent anyway.
  const server = new Handshake(SERVER);
  const text = decode(
    server.send(new RejectConnection({ statusCode: 403, headers: [["Content-Length", "0"]] })),
  );
  assert.equal(text.match(/content-length/gi)?.length, 1, text);
});

Deno.test("The end of the stream inside a request head is a 400 that can still be sent", () => {
  const server = new Handshake(SERVER);
  server.receiveData(encode("GET / HTTP/1.1\r\n"));
  let hint: RejectConnection | null = null;
  assert.throws(
    () => server.receiveData(null),
    (error) => {
      if (!(error instanceof RemoteProtocolError)) return false;
      if (error.eventHint instanceof RejectConnection) hint = error.eventHint;
      return hint?.statusCode === 400;
    },
  );
  // As for any bad request (and as wsproto does): a peer that only shut its
  // sending side still reads the answer.
  assert.equal(server.state, ConnectionState.CONNECTING);
  assert.deepEqual([...server.events()], []);
  assert.throws(() => server.send(new AcceptConnection()), LocalProtocolError);
  assert.match(decode(server.send(hint!)), /^HTTP\/1\.1 400 /);
  assert.equal(server.state, ConnectionState.CLOSED);
});

Deno.test("The end of the stream after a bad request throws its error again, however it came", () => {
  // Whole, the end of the stream used to close the server (its answer lost);
  // in pieces, it threw a 400 of its own in place of the 505 or 431.
  const requests = [
    "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
    requestText({ headers: edit("X-Big", "x".repeat(20_000)) }),
  ];
  for (const request of requests) {
    for (const [how, pieces] of choppings(encode(request))) {
      const server = new Handshake(SERVER);
      let first: unknown = null;
      for (const piece of pieces) {
        try {
          server.receiveData(piece);
        } catch (error) {
          first ??= error;
        }
      }
      assert.ok(first instanceof RemoteProtocolError, how);
      assert.throws(() => server.receiveData(null), (error) => error === first, how);
      assert.equal(server.state, ConnectionState.CONNECTING, how);
      assert.match(
        decode(server.send(first.eventHint as RejectConnection)),
        /^HTTP\/1\.1 (505|431) /,
      );
    }
  }
});

Deno.test("The end of the stream before any request closes a server quietly", () => {
  const server = new Handshake(SERVER);
  server.receiveData(null);
  assert.equal(server.state, ConnectionState.CLOSED);
  assert.deepEqual([...server.events()], []);
});

// ------------------------------------------------------------------- client

function clientRequest(
  options: Partial<ConstructorParameters<typeof WsRequest>[0]> = {},
): { client: Handshake; key: string; text: string } {
  const client = new Handshake(CLIENT);
  const bytes = client.send(new WsRequest({ host: "example.com", target: "/ws", ...options }));
  const text = decode(bytes);
  const key = /\r\nSec-WebSocket-Key: (\S+)\r\n/.exec(text)?.[1] ?? "";
  return { client, key, text };
}

function response101(key: string, extra: Headers = []): Uint8Array {
  const lines = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${acceptToken(key)}`,
    ...extra.map(([name, value]) => `${name}: ${value}`),
  ];
  return encode(lines.join("\r\n") + "\r\n\r\n");
}

Deno.test("A client's request carries a fresh 16-byte key, version 13 and its offers", () => {
  const ext = new FakeExtension("x-foo", { offer: "x-foo; a=1" });
  const silent = new FakeExtension("x-silent", { offer: null });
  const { text, key } = clientRequest({
    subprotocols: ["chat", "v2"],
    extensions: [silent, ext],
    extraHeaders: [["Origin", "http://example.com"]],
  });
  const head = parseRequestHead(encode(text));
  assert.equal(head.method, "GET");
  assert.equal(head.target, "/ws");
  assert.deepEqual(head.headers, [
    ["Host", "example.com"],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", key],
    ["Sec-WebSocket-Version", "13"],
    ["Sec-WebSocket-Protocol", "chat, v2"],
    ["Sec-WebSocket-Extensions", "x-foo; a=1"],
    ["Origin", "http://example.com"],
  ]);
  assert.equal(atob(key).length, 16);
  assert.notEqual(clientRequest().key, key);
});

Deno.test("The handshake's own fields cannot be extra headers", () => {
  // Sent twice, a server refuses them (two Host, two keys), or our own
  // check refuses the server's choice (a Sec-WebSocket-Protocol not listed).
  for (
    const name of ["Host", "upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Protocol"]
  ) {
    const request = new WsRequest({ host: "h", target: "/", extraHeaders: [[name, "x"]] });
    assert.throws(() => new Handshake(CLIENT).send(request), /written by the handshake/, name);
  }
  for (const name of ["Upgrade", "sec-websocket-accept", "Sec-WebSocket-Extensions"]) {
    const { server } = serverEvents([encode(requestText())]);
    assert.throws(
      () => server.send(new AcceptConnection({ extraHeaders: [[name, "x"]] })),
      /written by the handshake/,
      name,
    );
    assert.equal(server.state, ConnectionState.CONNECTING);
  }
});

Deno.test("A request and a 101 cannot announce a body in their extra headers", () => {
  // RFC 9110 §8.6, RFC 9112 §6.1 for the 101; a server refuses the request.
  for (const field of [["Content-Length", "0"], ["transfer-encoding", "chunked"]] as const) {
    assert.throws(
      () =>
        new Handshake(CLIENT).send(
          new WsRequest({ host: "h", target: "/", extraHeaders: [field] }),
        ),
      /An upgrade request has no body/,
    );
    const { server } = serverEvents([encode(requestText())]);
    assert.throws(
      () => server.send(new AcceptConnection({ extraHeaders: [field] })),
      /A 101 response has no body/,
    );
    assert.equal(server.state, ConnectionState.CONNECTING);
  }
});

Deno.test("A client refuses to offer a subprotocol that is not a token, or twice", () => {
  // Sent as is, "a,b" would offer two, and "c d" a malformed header.
  for (const bad of [["a,b"], ["c d"], [""], ["é"], ["x/y"], ["v1", "v1"]]) {
    assert.throws(
      () =>
        new Handshake(CLIENT).send(new WsRequest({ host: "h", target: "/", subprotocols: bad })),
      (error) => error instanceof LocalProtocolError && /subprotocol/.test(error.message),
      JSON.stringify(bad),
    );
  }
});

Deno.test("A client opens on a valid 101 however it is chopped, keeping the bytes after it", () => {
  const { key } = clientRequest();
  const frame = new Uint8Array([0x81, 0x02, 0x68, 0x69]);
  const bytes = concatAll([response101(key, [["X-Extra", "1"]]), frame]);
  for (const [how, pieces] of choppings(bytes)) {
    const client = new Handshake(CLIENT);
    // The key is random, so each run makes its own request and response.
    const sent = decode(client.send(new WsRequest({ host: "h", target: "/" })));
    const ownKey = /Sec-WebSocket-Key: (\S+)/.exec(sent)![1]!;
    const own = concatAll([response101(ownKey, [["X-Extra", "1"]]), frame]);
    const split: Uint8Array[] = [];
    let offset = 0;
    for (const piece of pieces) {
      split.push(own.slice(offset, offset + piece.length));
      offset += piece.length;
    }
    const events = [];
    for (const piece of split) {
      client.receiveData(piece);
      events.push(...client.events());
    }
    assert.equal(events.length, 1, how);
    const accept = events[0];
    assert.ok(accept instanceof AcceptConnection, how);
    assert.equal(accept.subprotocol, null);
    assert.deepEqual(accept.extraHeaders.at(-1), ["X-Extra", "1"]);
    assert.equal(client.state, ConnectionState.OPEN, how);
    assert.deepEqual(client.takeTrailingData(), frame, how);
  }
});

Deno.test("A client keeps its own copy of what follows the response head", () => {
  // Drivers reuse their read buffer: what the client keeps (frames behind
  // a 101, a refusal's body) must not change with it.
  const { client, key } = clientRequest();
  const frames = new Uint8Array([0x81, 0x02, 0x68, 0x69]);
  const opened = concatAll([encode("HTTP/1.1 100 Continue\r\n\r\n"), response101(key), frames]);
  client.receiveData(opened);
  opened.fill(0);
  assert.ok([...client.events()][0] instanceof AcceptConnection);
  assert.deepEqual(client.takeTrailingData(), frames);

  const refused = clientRequest().client;
  const refusal = encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope");
  refused.receiveData(refusal);
  refusal.fill(0);
  const [, body] = [...refused.events()];
  assert.ok(body instanceof RejectData);
  assert.equal(decode(body.data), "nope");
});

Deno.test("A client skips interim 1xx responses before the 101", () => {
  const { client, key } = clientRequest();
  client.receiveData(concatAll([encode("HTTP/1.1 100 Continue\r\n\r\n"), response101(key)]));
  const events = [...client.events()];
  assert.equal(events.length, 1);
  assert.ok(events[0] instanceof AcceptConnection);
});

Deno.test("A client takes a status below 100 as a refusal, not as an interim response", () => {
  // RFC 9110 §15: a status outside 100-599 is handled as a 5xx. Skipped as a
  // 1xx, it left the client waiting for a next response that never comes.
  for (const status of ["000", "099"]) {
    const { client } = clientRequest();
    client.receiveData(encode(`HTTP/1.1 ${status} Odd\r\nContent-Length: 2\r\n\r\nno`));
    const events = [...client.events()];
    assert.ok(events[0] instanceof RejectConnection, status);
    assert.equal(events[0].statusCode, Number(status));
    assert.ok(events[1] instanceof RejectData && decode(events[1].data) === "no", status);
    assert.equal(client.state, ConnectionState.CLOSED, status);
  }
});

Deno.test("A client fails a 101 that does not prove the handshake, without a hint", () => {
  const cases: [string, (key: string) => Uint8Array, RegExp][] = [
    ["wrong accept", () => response101(KEY), /Sec-WebSocket-Accept/],
    [
      "missing upgrade",
      (key) => encode(decode(response101(key)).replace("Upgrade: websocket\r\n", "")),
      /Upgrade/,
    ],
    [
      "other upgrade",
      (key) => encode(decode(response101(key)).replace("Upgrade: websocket", "Upgrade: h2c")),
      /Upgrade/,
    ],
    [
      "no connection upgrade",
      (key) => encode(decode(response101(key)).replace("Connection: Upgrade", "Connection: close")),
      /Connection/,
    ],
    [
      "subprotocol not offered",
      (key) => response101(key, [["Sec-WebSocket-Protocol", "chat"]]),
      /chat/,
    ],
    [
      "extension not offered",
      (key) => response101(key, [["Sec-WebSocket-Extensions", "x-foo"]]),
      /x-foo, which was not offered/,
    ],
    [
      "malformed extension",
      (key) => response101(key, [["Sec-WebSocket-Extensions", "x-foo;"]]),
      /malformed/,
    ],
    [
      "bare LF",
      (key) => encode(decode(response101(key)).replace("\r\nUpgrade", "\nUpgrade")),
      /LF/,
    ],
    ["HTTP/1.0", (key) => encode(decode(response101(key)).replace("HTTP/1.1", "HTTP/1.0")), /1\.0/],
  ];
  for (const [what, make, pattern] of cases) {
    const { client, key } = clientRequest();
    assert.throws(() => client.receiveData(make(key)), (error) => {
      assert.ok(error instanceof RemoteProtocolError, what);
      assert.equal(error.eventHint, null, what);
      assert.match(error.message, pattern, what);
      return true;
    });
    assert.equal(client.state, ConnectionState.CLOSED, what);
  }
});

Deno.test("A client fails a 101 that accepts one extension twice or two subprotocols", () => {
  const ext = () => new FakeExtension("x-foo");
  const twice = clientRequest({ extensions: [ext()] });
  assert.throws(
    () =>
      twice.client.receiveData(
        response101(twice.key, [["Sec-WebSocket-Extensions", "x-foo, x-foo"]]),
      ),
    /twice/,
  );
  const two = clientRequest({ subprotocols: ["a", "b"] });
  assert.throws(
    () =>
      two.client.receiveData(
        response101(two.key, [["Sec-WebSocket-Protocol", "a"], ["Sec-WebSocket-Protocol", "b"]]),
      ),
    /not offered/,
  );
});

Deno.test("A client gives the server's answer to the first of its fallback offers it fits", () => {
  // RFC 7692 §5: offers of one extension, in order of preference.
  const preferred = new PerMessageDeflate({ clientMaxWindowBits: 10 });
  const fallback = new PerMessageDeflate();
  const { client, key } = clientRequest({ extensions: [preferred, fallback] });
  client.receiveData(
    response101(key, [[
      "Sec-WebSocket-Extensions",
      "permessage-deflate; client_max_window_bits=12",
    ]]),
  );
  const [accept] = [...client.events()];
  assert.ok(accept instanceof AcceptConnection);
  assert.deepEqual(accept.extensions, [fallback]);
  assert.equal(preferred.enabled(), false);
  assert.equal(fallback.enabled(), true);
  const answer = (offers: PerMessageDeflate[], extensions: string) => () => {
    const { client, key } = clientRequest({ extensions: offers });
    client.receiveData(response101(key, [["Sec-WebSocket-Extensions", extensions]]));
  };
  // An answer no offer fits fails with the preferred offer's reason.
  const eleven = new PerMessageDeflate({ clientMaxWindowBits: 11 });
  assert.throws(
    answer([preferred, eleven], "permessage-deflate; client_max_window_bits=12"),
    /exceeds the 10 offered/,
  );
  // Two answers for one name are still one too many.
  const two = [new PerMessageDeflate(), new PerMessageDeflate()];
  assert.throws(answer(two, "permessage-deflate, permessage-deflate"), /twice/);
});

function clientReads(pieces: Uint8Array[], end: boolean) {
  const { client } = clientRequest();
  return { client, events: feed(client, pieces, end) };
}

function checkRejection(
  response: string,
  status: number,
  body: string,
  end = false,
): void {
  for (const [how, pieces] of choppings(encode(response))) {
    const { client, events } = clientReads(pieces, end);
    const [reject, ...data] = events;
    assert.ok(reject instanceof RejectConnection, how);
    assert.equal(reject.statusCode, status, how);
    assert.equal(reject.hasBody, body !== "" || end, how);
    assert.ok(data.every((event) => event instanceof RejectData), how);
    const pieces2 = data as RejectData[];
    assert.equal(decode(concatAll(pieces2.map((piece) => piece.data))), body, how);
    if (reject.hasBody) {
      assert.ok(pieces2.at(-1)?.bodyFinished, how);
      assert.ok(pieces2.slice(0, -1).every((piece) => !piece.bodyFinished), how);
    }
    assert.equal(client.state, ConnectionState.CLOSED, how);
  }
}

Deno.test("A client reads a refusal with a Content-Length body however it is chopped", () => {
  checkRejection(
    "HTTP/1.1 403 Forbidden\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nNot allowed.",
    403,
    "Not allowed.",
  );
});

Deno.test("A client reads a refusal with a chunked body however it is chopped", () => {
  checkRejection(
    "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "4\r\nBusy\r\n6;x=y\r\n, sorr\r\n1\r\ny\r\n0\r\n\r\n",
    503,
    "Busy, sorry",
  );
});

Deno.test("A client reads a refusal with a body until the end of the stream", () => {
  checkRejection("HTTP/1.1 400 Bad Request\r\n\r\nno good", 400, "no good", true);
});

Deno.test("A client reads a refusal without a body and closes at once", () => {
  const { client, events } = clientReads(
    [encode("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")],
    false,
  );
  assert.equal(events.length, 1);
  const reject = events[0];
  assert.ok(reject instanceof RejectConnection);
  assert.equal(reject.hasBody, false);
  assert.deepEqual(reject.headers, [["Content-Length", "0"]]);
  assert.equal(client.state, ConnectionState.CLOSED);
});

Deno.test("A client fails a refusal whose body the stream cuts short", () => {
  const { client } = clientRequest();
  client.receiveData(encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc"));
  assert.equal(client.state, ConnectionState.REJECTING);
  assert.throws(() => client.receiveData(null), RemoteProtocolError);
  assert.equal(client.state, ConnectionState.CLOSED);
});

Deno.test("The end of the stream inside a response head fails the client", () => {
  const { client } = clientRequest();
  client.receiveData(encode("HTTP/1.1 101 Swi"));
  assert.throws(
    () => client.receiveData(null),
    (error) => error instanceof RemoteProtocolError && error.eventHint === null,
  );
  assert.equal(client.state, ConnectionState.CLOSED);
  assert.deepEqual([...client.events()], []);
});

Deno.test("A client refuses misuse of send and receiveData with a LocalProtocolError", () => {
  const client = new Handshake(CLIENT);
  assert.throws(() => client.receiveData(encode("HTTP/1.1")), /send its Request before/);
  assert.throws(() => client.send(new AcceptConnection()), /client cannot send AcceptConnection/);
  assert.throws(() => client.send(new RejectConnection()), LocalProtocolError);
  assert.throws(
    () => client.send(new WsRequest({ host: "h", target: "/", extensions: ["x-foo"] })),
    /Extension objects/,
  );
  assert.throws(() => client.send(new WsRequest({ host: "h", target: "/a b" })), /target/);
  assert.throws(() => client.send(new WsRequest({ host: "h\r\nX: y", target: "/" })), /Host/);
  client.send(new WsRequest({ host: "h", target: "/" }));
  assert.throws(() => client.send(new WsRequest({ host: "h", target: "/" })), /once/);
});

// ------------------------------------------------------------ in-memory pair

Deno.test("A client and a server agree on a subprotocol and an extension in memory", () => {
  const clientExt = new FakeExtension("x-foo", { offer: "x-foo; level=2" });
  const serverExt = new FakeExtension("x-foo", { accept: (offer) => `${offer}; agreed` });
  for (const seed of [1, 2, 3, 4]) {
    const client = new Handshake(CLIENT);
    const server = new Handshake(SERVER);
    const request = client.send(
      new WsRequest({
        host: "localhost",
        target: "/pair",
        subprotocols: ["v1", "v2"],
        extensions: [clientExt],
      }),
    );
    for (const [, pieces] of choppings(request, [seed]).slice(2)) {
      for (const piece of pieces) server.receiveData(piece);
    }
    const [received] = [...server.events()];
    assert.ok(received instanceof WsRequest);
    assert.deepEqual(received.subprotocols, ["v1", "v2"]);
    assert.deepEqual(received.extensions, ["x-foo; level=2"]);
    const response = server.send(
      new AcceptConnection({ subprotocol: "v2", extensions: [serverExt] }),
    );
    for (const [, pieces] of choppings(response, [seed]).slice(2)) {
      for (const piece of pieces) client.receiveData(piece);
    }
    const [accept] = [...client.events()];
    assert.ok(accept instanceof AcceptConnection);
    assert.equal(accept.subprotocol, "v2");
    assert.deepEqual(accept.extensions, [clientExt]);
    assert.deepEqual(client.extensions, [clientExt]);
    assert.deepEqual(server.extensions, [serverExt]);
    assert.equal(client.state, ConnectionState.OPEN);
    assert.equal(server.state, ConnectionState.OPEN);
  }
  assert.deepEqual(clientExt.calls.slice(0, 2), ["offer", "finalize x-foo; level=2; agreed"]);
  assert.deepEqual(serverExt.calls[0], "accept x-foo; level=2");
  assert.ok(clientExt.enabled() && serverExt.enabled());
});

Deno.test("A client and a server carry a refusal and its body in memory", () => {
  const client = new Handshake(CLIENT);
  const server = new Handshake(SERVER);
  server.receiveData(client.send(new WsRequest({ host: "h", target: "/private" })));
  assert.ok([...server.events()][0] instanceof WsRequest);
  client.receiveData(server.send(new RejectConnection({ statusCode: 401, hasBody: true })));
  client.receiveData(server.send(new RejectData({ data: encode("who "), bodyFinished: false })));
  client.receiveData(server.send(new RejectData({ data: encode("are you?") })));
  const events = [...client.events()];
  assert.ok(events[0] instanceof RejectConnection && events[0].statusCode === 401);
  const data = events.slice(1) as RejectData[];
  assert.equal(decode(concatAll(data.map((event) => event.data))), "who are you?");
  assert.ok(data.at(-1)!.bodyFinished);
  assert.equal(client.state, ConnectionState.CLOSED);
  assert.equal(server.state, ConnectionState.CLOSED);
});

// ------------------------------------------------------------- Fetch helpers

function fetchRequest(shape: RequestShape = {}): globalThis.Request {
  return new globalThis.Request(`http://example.com:8080${shape.target ?? "/chat?room=1"}`, {
    method: shape.method ?? "GET",
    headers: (shape.headers ?? BROWSER_HEADERS) as [string, string][],
  });
}

Deno.test("checkUpgradeRequest builds the same Request event as the raw path", () => {
  const check = checkUpgradeRequest(fetchRequest());
  assert.ok(check.ok);
  const { events } = serverEvents([encode(requestText())]);
  const raw = events[0] as WsRequest;
  assert.equal(check.request.host, raw.host);
  assert.equal(check.request.target, raw.target);
  assert.deepEqual(check.request.subprotocols, raw.subprotocols);
  assert.deepEqual(check.request.extensions, raw.extensions);
});

Deno.test("checkUpgradeRequest refuses with the raw path's status, headers and body", async () => {
  const shapes: RequestShape[] = [
    { method: "POST" },
    { headers: edit("Upgrade") },
    { headers: edit("Connection", "keep-alive") },
    { headers: edit("Sec-WebSocket-Version", "8") },
    { headers: edit("Sec-WebSocket-Key") },
    { headers: edit("Sec-WebSocket-Key", "c2hvcnQ=") },
    { headers: edit("Sec-WebSocket-Extensions", "x;;") },
  ];
  for (const shape of shapes) {
    const check = checkUpgradeRequest(fetchRequest(shape));
    assert.ok(!check.ok);
    const { hint } = refused(requestText(shape));
    assert.equal(check.response.status, hint.statusCode);
    for (const [name, value] of hint.headers) {
      assert.equal(check.response.headers.get(name), value);
    }
    assert.equal(await check.response.text(), decode(hint.body!));
  }
});

Deno.test("upgradeOptions passes an offered subprotocol and refuses another", () => {
  const request = new WsRequest({ host: "h", target: "/", subprotocols: ["a", "b"] });
  assert.deepEqual(upgradeOptions(request, new AcceptConnection()), {});
  assert.deepEqual(upgradeOptions(request, new AcceptConnection({ subprotocol: "b" })), {
    protocol: "b",
  });
  assert.throws(
    () => upgradeOptions(request, new AcceptConnection({ subprotocol: "c" })),
    LocalProtocolError,
  );
});

// ------------------------------------------------------------------ interop

const TIMEOUT_MS = 5_000;

const within = <T>(promise: Promise<T>, what: string): Promise<T> =>
  withTimeout(promise, TIMEOUT_MS, what);

// Feeds a Handshake from a connection until it leaves CONNECTING, answering events.
async function drive(
  conn: Deno.Conn,
  handshake: Handshake,
  answer: (
    event: WsRequest | AcceptConnection | RejectConnection | RejectData,
  ) => Uint8Array | null,
): Promise<void> {
  const buffer = new Uint8Array(4096);
  while (handshake.state === ConnectionState.CONNECTING) {
    const n = await conn.read(buffer);
    handshake.receiveData(n === null ? null : buffer.subarray(0, n));
    for (const event of handshake.events()) {
      const reply = answer(event);
      if (reply !== null) await writeAll(conn, reply);
    }
  }
}

Deno.test("A raw Deno.listen server on Handshake opens Deno's native WebSocket", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const received: WsRequest[] = [];
  const server = (async () => {
    const conn = await listener.accept();
    try {
      const handshake = new Handshake(SERVER);
      await drive(conn, handshake, (event) => {
        if (!(event instanceof WsRequest)) return null;
        received.push(event);
        return handshake.send(new AcceptConnection({ subprotocol: "chat" }));
      });
      return handshake.state;
    } finally {
      conn.close();
    }
  })();
  const socket = new WebSocket(`ws://127.0.0.1:${port}/native?x=1`, ["chat"]);
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = (event) => reject(new Error(`WebSocket error: ${event}`));
      }),
      "the native client's onopen",
    );
    assert.equal(socket.protocol, "chat");
    assert.equal(await within(server, "the server"), ConnectionState.OPEN);
    assert.equal(received[0]?.target, "/native?x=1");
    assert.deepEqual(received[0]?.subprotocols, ["chat"]);
  } finally {
    socket.onerror = null;
    socket.close();
    await within(closed, "the native client's onclose");
    await server.catch(() => {});
    listener.close();
  }
});

Deno.test("A client Handshake over Deno.connect is accepted by Deno.upgradeWebSocket", async () => {
  let serverSocketClosed: Promise<void> = Promise.resolve();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "v2" });
    serverSocketClosed = new Promise((resolve) => socket.onclose = () => resolve());
    return response;
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    const handshake = new Handshake(CLIENT);
    const events: unknown[] = [];
    await writeAll(
      conn,
      handshake.send(
        new WsRequest({
          host: `127.0.0.1:${server.addr.port}`,
          target: "/",
          subprotocols: ["v1", "v2"],
        }),
      ),
    );
    await within(drive(conn, handshake, (event) => (events.push(event), null)), "the 101");
    assert.equal(handshake.state, ConnectionState.OPEN);
    assert.equal(events.length, 1);
    const accept = events[0];
    assert.ok(accept instanceof AcceptConnection);
    assert.equal(accept.subprotocol, "v2");
  } finally {
    conn.close();
    await within(serverSocketClosed, "the server socket's onclose");
    await server.shutdown();
  }
});

Deno.test("checkUpgradeRequest and upgradeOptions run a Deno.serve handler", async () => {
  let serverSocketClosed: Promise<void> = Promise.resolve();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const check = checkUpgradeRequest(request);
    if (!check.ok) return check.response;
    const options = upgradeOptions(check.request, new AcceptConnection({ subprotocol: "chat" }));
    const { socket, response } = Deno.upgradeWebSocket(request, options);
    serverSocketClosed = new Promise((resolve) => socket.onclose = () => resolve());
    return response;
  });
  const port = server.addr.port;
  try {
    // A native client, accepted with the subprotocol chosen.
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`, ["superchat", "chat"]);
    const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          socket.onopen = () => resolve();
          socket.onerror = () => reject(new Error("WebSocket error"));
        }),
        "the native client's onopen",
      );
      assert.equal(socket.protocol, "chat");
    } finally {
      socket.onerror = null;
      socket.close();
      await within(closed, "the native client's onclose");
      await within(serverSocketClosed, "the server socket's onclose");
    }

    // A plain GET: 426 with Upgrade: websocket.
    const plain = await within(fetch(`http://127.0.0.1:${port}/`), "a plain GET");
    assert.equal(plain.status, 426);
    assert.equal(plain.headers.get("upgrade"), "websocket");
    assert.equal(await plain.text(), "The Upgrade header must include websocket\n");

    // A POST: 405 with Allow: GET.
    const post = await within(
      fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "x" }),
      "a POST",
    );
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET");
    await post.body?.cancel();

    // A raw upgrade with the wrong version: 426 with Sec-WebSocket-Version: 13.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const text = requestText({ headers: edit("Sec-WebSocket-Version", "8") })
        .replace("example.com:8080", `127.0.0.1:${port}`);
      await writeAll(conn, encode(text));
      const reader = new HeadReader({ maxHeaderBytes: 16384, maxHeaderCount: 100 });
      const buffer = new Uint8Array(4096);
      let head = null;
      while (head === null) {
        const n = await within(conn.read(buffer), "the 426");
        assert.ok(n !== null, "the server answered before closing");
        head = reader.push(buffer.subarray(0, n));
      }
      const response = parseResponseHead(head.head);
      assert.equal(response.statusCode, 426);
      assert.equal(headerValue(response.headers, "Sec-WebSocket-Version"), "13");
    } finally {
      conn.close();
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("A client replays a given Sec-WebSocket-Key and refuses one of the wrong size", () => {
  const key = new Uint8Array(16).map((_, i) => i);
  const client = new Handshake(CLIENT, { key });
  const text = decode(client.send(new WsRequest({ host: "h", target: "/" })));
  assert.match(text, /\r\nSec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n/);
  assert.throws(() => new Handshake(CLIENT, { key: new Uint8Array(15) }), RangeError);
});
