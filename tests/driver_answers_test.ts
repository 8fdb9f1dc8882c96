// A handler's answer that cannot be sent, an onError that throws, and the
// other ways a server's own setup can fail, on raw TCP and on Deno.serve:
// the client always gets an answer and the server keeps running.
import assert from "node:assert/strict";
import { connect, HandshakeError } from "../client.ts";
import { upgrade } from "../deno_serve.ts";
import { LocalProtocolError } from "../errors.ts";
import { checkUpgradeRequest } from "../handshake.ts";
import { serve } from "../server.ts";
import {
  type CloseInfo,
  ConnectionClosedError,
  type Handler,
  type ServerSocket,
} from "../socket.ts";
import { rawOpen, withTimeout } from "./_drivers.ts";

// Answers the handshake cannot send, whichever transport runs it.
const MISUSES: [string, (socket: ServerSocket) => void][] = [
  ["status 600", (socket) => socket.reject({ status: 600 })],
  ["status 101", (socket) => socket.reject({ status: 101 })],
  ["CRLF in a header", (socket) => socket.reject({ headers: [["X-Why", "a\r\nInjected: 1"]] })],
  ["204 with a body", (socket) => socket.reject({ status: 204, body: "x" })],
  [
    "a body with its own Content-Length",
    (socket) => socket.reject({ body: "x", headers: [["Content-Length", "1"]] }),
  ],
  // RFC 9110 §8.6: never on a 204, and no length for a body that is not sent.
  [
    "204 with Content-Length",
    (socket) => socket.reject({ status: 204, headers: [["Content-Length", "0"]] }),
  ],
  [
    "no body, with Content-Length",
    (socket) => socket.reject({ headers: [["Content-Length", "5"]] }),
  ],
  ["CRLF in an accept header", (socket) => socket.accept({ extraHeaders: [["X", "a\r\nb"]] })],
  ["a character beyond U+00FF", (socket) => socket.accept({ extraHeaders: [["X", "日本"]] })],
  // RFC 9110 §8.6, RFC 9112 §6.1: a 101 has no body, nor says it has one.
  [
    "a 101 with Content-Length",
    (socket) => socket.accept({ extraHeaders: [["Content-Length", "0"]] }),
  ],
  ["the handshake's own field", (socket) => socket.accept({ extraHeaders: [["Upgrade", "h2c"]] })],
];

Deno.test("an answer that cannot be sent throws, and the handler's throw is answered with 500", async (t) => {
  const thrown: unknown[] = [];
  // A handler that tries the misuse named in its URL, then lets the error out.
  const handler: Handler = (socket, request) => {
    const which = Number(new URL(request.target, "http://x").searchParams.get("case"));
    try {
      MISUSES[which]![1](socket);
    } catch (error) {
      thrown.push(error);
      throw error;
    }
  };
  // An onError that throws must change nothing: it used to end the process.
  const onError = () => {
    throw new Error("onError broke");
  };
  await using raw = serve({ hostname: "127.0.0.1", port: 0, onError }, handler);
  const native = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => upgrade(request, handler, { info, onError }),
  );
  try {
    for (
      const [transport, port] of [["serve()", raw.addr.port], ["Deno.serve", native.addr.port]]
    ) {
      for (const [which, [name]] of MISUSES.entries()) {
        await t.step(`${transport}: ${name}`, async () => {
          const before = thrown.length;
          try {
            await withTimeout(
              connect(`ws://127.0.0.1:${port}/?case=${which}`),
              5000,
              "connect()",
            );
            assert.fail("connect() should fail");
          } catch (error) {
            assert.ok(error instanceof HandshakeError, String(error));
            assert.equal(error.status, 500);
          }
          assert.equal(thrown.length, before + 1);
          assert.ok(thrown.at(-1) instanceof LocalProtocolError, String(thrown.at(-1)));
        });
      }
    }
  } finally {
    await native.shutdown();
  }
});

Deno.test("serve() whose onListen throws throws, and leaves nothing listening", async () => {
  let port = 0;
  assert.throws(
    () =>
      serve({
        hostname: "127.0.0.1",
        port: 0,
        onListen: (addr) => {
          port = addr.port;
          throw new Error("onListen broke");
        },
      }, () => {}),
    /onListen broke/,
  );
  // Refused, or reset when the connection raced the listener's close.
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }).then((conn) => conn.read(new Uint8Array(1))),
    (error) =>
      error instanceof Deno.errors.ConnectionRefused ||
      error instanceof Deno.errors.ConnectionReset,
  );
});

Deno.test("connect() and serve() refuse what they cannot use before any I/O", async () => {
  for (const url of ["ftp://127.0.0.1/", "file:///tmp/socket"]) {
    await assert.rejects(connect(url), TypeError, url);
  }
  for (const tls of [{ cert: "x" }, { key: "x" }]) {
    assert.throws(
      () => serve({ hostname: "127.0.0.1", port: 0, ...tls }, () => {}),
      /TLS needs both cert and key/,
    );
  }
  // What callers without TypeScript's checks may pass: named, before any I/O
  // (nothing listens on port 1).
  assert.throws(
    () => serve({ hostname: "127.0.0.1", port: 0 }, undefined as never),
    /^TypeError: serve\(\) takes a handler function, not undefined$/,
  );
  await assert.rejects(
    connect("ws://127.0.0.1:1/", { subprotocols: "chat" as never }),
    /^TypeError: A request's subprotocols are an array of strings, not string$/,
  );
  await assert.rejects(
    connect("ws://127.0.0.1:1/", { headers: "x-a: 1" as never }),
    /^TypeError: headers are a Headers, an array of \[name, value\] pairs or a record, not string$/,
  );
});

Deno.test("serve() with a signal aborted already does not call onListen", async () => {
  let listened = false;
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: AbortSignal.abort(),
    onListen: () => listened = true,
  }, () => {});
  await server.finished;
  assert.equal(listened, false);
});

Deno.test("on Deno.serve, a request without Host is refused with 400, as on raw TCP", async () => {
  const check = checkUpgradeRequest(
    new Request("http://localhost/", {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      },
    }),
  );
  assert.ok(!check.ok);
  assert.equal(check.response.status, 400);
  await check.response.body?.cancel();
});

Deno.test("on Deno.serve, a Host that is no host[:port] is refused with 400, as on raw TCP", async () => {
  // Deno makes request.url of the Host field as it came; it is no URL then.
  await onBothTransports((socket) => socket.accept(), async (port) => {
    for (const [host, status] of [["a b", 400], ["[::1", 400], ["h:99999", 101]] as const) {
      assert.equal(await statusOf(port, `GET / HTTP/1.1\r\nHost: ${host}\r\n`), status, host);
    }
  });
});

Deno.test("an absolute-form target's authority is the request's host, on both transports", async () => {
  // RFC 9112 §3.2.2; Deno.serve puts the target's authority in request.url.
  const hosts: string[] = [];
  const handler: Handler = (socket, request) => {
    hosts.push(request.host);
    socket.accept();
  };
  await onBothTransports(handler, async (port) => {
    const start = "GET ws://internal.example:9000/admin HTTP/1.1\r\nHost: public.example\r\n";
    assert.equal(await statusOf(port, start), 101);
    assert.equal(await statusOf(port, "GET /admin HTTP/1.1\r\nHost: public.example\r\n"), 101);
  });
  assert.deepEqual(hosts, [
    "internal.example:9000",
    "public.example",
    "internal.example:9000",
    "public.example",
  ]);
});

Deno.test("a request that announces a body is refused with 400, on raw TCP and on Deno.serve", async () => {
  // RFC 9112 §6.3: the body would come ahead of the frames.
  await onBothTransports((socket) => socket.accept(), async (port) => {
    const head = "GET / HTTP/1.1\r\nHost: h\r\n";
    assert.equal(await statusOf(port, `${head}Content-Length: 2\r\n`, "hi"), 400);
    assert.equal(await statusOf(port, `${head}Transfer-Encoding: chunked\r\n`, "0\r\n\r\n"), 400);
    // Deno.serve refuses even this, and one rule serves both transports.
    assert.equal(await statusOf(port, `${head}Content-Length: 0\r\n`), 400);
    assert.equal(await statusOf(port, head), 101);
  });
});

// One handler on serve() and on Deno.serve + upgrade(): `check` runs against
// each in turn, and neither reports an error.
async function onBothTransports(
  handler: Handler,
  check: (port: number) => Promise<void>,
): Promise<void> {
  const errors: unknown[] = [];
  const onError = (error: unknown) => {
    errors.push(error);
    return new Response(null, { status: 500 });
  };
  await using raw = serve({ hostname: "127.0.0.1", port: 0, onError }, handler);
  const native = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, onError },
    (request, info) => upgrade(request, handler, { info, onError }),
  );
  try {
    for (const port of [raw.addr.port, native.addr.port]) await check(port);
  } finally {
    await native.shutdown();
  }
  assert.deepEqual(errors, []);
}

// The status a server answers an upgrade request with: `start` (the
// request line and any fields), the upgrade's own fields, then `body`.
async function statusOf(port: number, start: string, body = ""): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(
      `${start}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n${body}`,
    ));
    const buffer = new Uint8Array(1024);
    const n = await withTimeout(conn.read(buffer), 5000, "the answer");
    const line = new TextDecoder().decode(buffer.subarray(0, n ?? 0)).split("\r\n")[0]!;
    return Number(/^HTTP\/1\.1 (\d{3}) /.exec(line)?.[1]);
  } finally {
    conn.close();
  }
}

Deno.test("on Deno.serve, a client that drops TCP ends the socket with 1006", async () => {
  const ended = Promise.withResolvers<CloseInfo>();
  const native = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) =>
      upgrade(request, async (socket) => {
        socket.accept();
        ended.resolve(await socket.closed);
      }, { info }),
  );
  try {
    const conn = await rawOpen(native.addr.port, "/");
    conn.close();
    assert.deepEqual(await withTimeout(ended.promise, 5000, "closed"), { code: 1006, reason: "" });
  } finally {
    await native.shutdown();
  }
});

Deno.test("a handler that fails because its peer went away is not an error for onError", async () => {
  const reported: unknown[] = [];
  const failed = Promise.withResolvers<unknown>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, onError: (error) => reported.push(error) },
    async (socket) => {
      socket.accept();
      await socket.closed;
      try {
        await socket.send("too late");
      } catch (error) {
        failed.resolve(error);
        throw error;
      }
    },
  );
  const conn = await rawOpen(server.addr.port, "/");
  conn.close();
  assert.ok(await withTimeout(failed.promise, 5000, "the send") instanceof ConnectionClosedError);
  await server.shutdown();
  assert.deepEqual(reported, []);
});

// A request the handshake checks pass, as Deno.serve hands one to its handler.
function upgradeRequest(): Request {
  return new Request("http://localhost/", {
    headers: {
      host: "localhost",
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
}

Deno.test("on Deno.serve, a 204 refusal with an empty body is a 204, as on raw TCP", async () => {
  // Fetch refuses even an empty body with 204; our checks let it through.
  const response = await upgrade(
    upgradeRequest(),
    (socket) => socket.reject({ status: 204, body: "" }),
  );
  assert.equal(response.status, 204);
  assert.equal(response.body, null);
});

Deno.test("upgrade() takes a handler function, idleTimeout in whole seconds, and maxQueued in bytes", () => {
  for (const idleTimeout of [1.5, -1, Number.NaN, 2 ** 31, Symbol("s") as unknown as number]) {
    assert.throws(
      () => upgrade(upgradeRequest(), () => {}, { idleTimeout }),
      RangeError,
      `idleTimeout ${String(idleTimeout)}`,
    );
  }
  assert.throws(
    () => upgrade(upgradeRequest(), null as never),
    /^TypeError: upgrade\(\) takes a handler function, not null$/,
  );
  for (const maxQueued of [-1, Number.NaN]) {
    assert.throws(
      () => upgrade(upgradeRequest(), () => {}, { maxQueued }),
      RangeError,
      `maxQueued ${maxQueued}`,
    );
  }
});
