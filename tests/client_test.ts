// connect() against servers that misbehave during the opening handshake, and
// the checks it makes of its own request before any connection.
import assert from "node:assert/strict";
import { connect, HandshakeError, LocalProtocolError, serve } from "../mod.ts";
import type { ConnectOptions } from "../client.ts";
import { delay, openDescriptors, readUntil, withTimeout, writeAll } from "./_drivers.ts";
import { testCertificate } from "./_tls.ts";

const encoder = new TextEncoder();

/**
 * A listener that answers each connection's request with `respond`, then
 * holds the connection until the test closes the server.
 */
function rawServer(respond: (conn: Deno.Conn, stop: AbortSignal) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stop = new AbortController();
  const conns = new Set<Deno.Conn>();
  let accepted = 0;
  const loop = (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.add(conn);
      (async () => {
        try {
          await readUntil(conn, (bytes) => new TextDecoder().decode(bytes).includes("\r\n\r\n"));
          await respond(conn, stop.signal);
          await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
        } catch {
          // the client went away
        }
      })();
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    async close() {
      stop.abort();
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed by the client
        }
      }
      await loop;
      await delay(10); // the responders' last writes fail and return
    },
  };
}

async function failure(attempt: Promise<unknown>, ms = 5000): Promise<unknown> {
  try {
    await withTimeout(attempt, ms, "connect()");
  } catch (error) {
    return error;
  }
  assert.fail("connect() should have failed");
}

Deno.test("a refusal whose body never ends is cut by the deadline, the signal, or its 64 KiB", async (t) => {
  const stalled = rawServer((conn) =>
    writeAll(conn, encoder.encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 1000\r\n\r\nhello"))
  );
  const streaming = rawServer(async (conn, stop) => {
    await writeAll(conn, encoder.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
    const chunk = encoder.encode(`4000\r\n${"x".repeat(0x4000)}\r\n`);
    for (let i = 0; i < 1000 && !stop.aborted; i++) {
      await writeAll(conn, chunk);
      await delay(1);
    }
  });
  try {
    await t.step("the deadline ends it, with the refusal so far", async () => {
      const error = await failure(
        connect(`ws://127.0.0.1:${stalled.port}/`, { handshakeTimeout: 300 }),
      );
      assert.ok(error instanceof HandshakeError, String(error));
      assert.match(error.message, /took over 300 ms/);
      assert.equal(error.status, 403);
      assert.equal(error.text(), "hello");
    });
    await t.step("the signal ends it, with its reason", async () => {
      const signal = AbortSignal.timeout(300);
      const error = await failure(connect(`ws://127.0.0.1:${stalled.port}/`, { signal }));
      assert.equal(error, signal.reason);
    });
    await t.step("an endless body ends at 64 KiB, long before the deadline", async () => {
      const started = Date.now();
      const error = await failure(
        connect(`ws://127.0.0.1:${streaming.port}/`, { handshakeTimeout: 20_000 }),
      );
      assert.ok(error instanceof HandshakeError, String(error));
      assert.equal(error.status, 200);
      assert.equal(error.body.length, 64 * 1024);
      assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
    });
  } finally {
    await stalled.close();
    await streaming.close();
  }
});

Deno.test("connect() checks its request before it connects", async () => {
  const server = rawServer(() => Promise.resolve());
  const descriptors = openDescriptors();
  const url = `ws://127.0.0.1:${server.port}/`;
  const misuses: ConnectOptions[] = [
    { headers: [["X Bad", "1"]] },
    { headers: { "X-Split": "a\r\nInjected: 1" } },
    { headers: { Upgrade: "h2c" } },
    { headers: { "Sec-WebSocket-Protocol": "chat" } },
    { headers: { "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" } },
    // Every Sec-WebSocket-* field is the protocol's (RFC 6455 §11.3).
    { headers: { "Sec-WebSocket-Accept": "x" } },
    { headers: { "Sec-WebSocket-Foo": "1" } },
    { subprotocols: ["a b"] },
    { subprotocols: ["chat", "chat"] },
    { headers: [["Host", "a.example"], ["host", "b.example"]] },
  ];
  // What a caller without TypeScript's checks may pass: a number's missing
  // length made the request no bytes at all, sent to wait out the deadline.
  const wrongTypes = [{ "X-Retry": 3 }, [["X-Alone"]], [[7, "x"]]] as unknown as NonNullable<
    ConnectOptions["headers"]
  >[];
  try {
    for (const options of misuses) {
      const error = await failure(connect(url, options));
      assert.ok(error instanceof LocalProtocolError, `${JSON.stringify(options)}: ${error}`);
    }
    for (const headers of wrongTypes) {
      const error = await failure(connect(url, { headers }));
      assert.ok(error instanceof TypeError, `${JSON.stringify(headers)}: ${error}`);
      assert.match(
        error.message,
        /^A header (is a \[name, value\] pair|name is)|header X-Retry is/,
      );
    }
    await assert.rejects(connect(`${url}#top`), TypeError);
    await assert.rejects(connect(`${url}#`), TypeError); // an empty fragment too, as browsers do
    await assert.rejects(connect(`ws://a%zz:pw@127.0.0.1:${server.port}/`), TypeError);
    await delay(50);
    assert.equal(server.accepted, 0, "no connection was made");
    assert.equal(openDescriptors(), descriptors);
  } finally {
    await server.close();
  }
});

Deno.test("connect() sends a Host given in its headers, a Fetch Headers' fields and the URL's credentials", async () => {
  const seen: { host: string; headers: (readonly [string, string])[] }[] = [];
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, (socket, request) => {
    seen.push({ host: request.host, headers: [...request.extraHeaders] });
    socket.close();
  });
  const field = (at: number, name: string) =>
    seen[at]!.headers.filter(([field]) => field.toLowerCase() === name).map(([, value]) => value);
  const port = server.addr.port;

  const first = await connect(`ws://alice:s%3Acret@127.0.0.1:${port}/`, {
    headers: new Headers({ Host: "chat.example", "X-Token": "t" }),
  });
  await first.closed;
  assert.equal(seen[0]!.host, "chat.example");
  assert.deepEqual(field(0, "host"), ["chat.example"]);
  assert.deepEqual(field(0, "x-token"), ["t"]);
  assert.deepEqual(field(0, "authorization"), [`Basic ${btoa("alice:s:cret")}`]);

  // Errors never show the password.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const refused = await failure(connect(`ws://alice:s3cret@127.0.0.1:${closedPort}/`));
  assert.ok(refused instanceof HandshakeError, String(refused));
  assert.doesNotMatch(refused.message, /s3cret/);

  // An Authorization of the caller's own is kept, and no other added.
  const second = await connect(`ws://alice:x@127.0.0.1:${port}/`, {
    headers: [["Authorization", "Bearer abc"]],
  });
  await second.closed;
  assert.equal(seen[1]!.host, `127.0.0.1:${port}`);
  assert.deepEqual(field(1, "authorization"), ["Bearer abc"]);
});

Deno.test("connect() over TLS sends a message at once, not after the peer's ACK of the last", async () => {
  // TCP_NODELAY is set before TLS starts: Deno's TLS connections cannot
  // set it later. With Nagle on, the second of two small messages waited
  // for the server's delayed ACK of the first, about 40 ms on Linux.
  const { cert, key, ca } = await testCertificate();
  const arrived: number[] = [];
  const got = Promise.withResolvers<void>();
  await using server = serve({ hostname: "127.0.0.1", port: 0, cert, key }, async (socket) => {
    for await (const _ of socket) if (arrived.push(performance.now()) === 2) break;
    got.resolve();
  });
  const socket = await connect(`wss://localhost:${server.addr.port}/`, { caCerts: [ca] });
  try {
    socket.send("first");
    await delay(3);
    const sent = performance.now();
    socket.send("second");
    await withTimeout(got.promise, 2000, "both messages");
    const took = arrived[1]! - sent;
    assert.ok(took < 20, `the second message took ${took.toFixed(1)} ms`);
  } finally {
    await socket.close();
  }
});

Deno.test("connect() over TLS gives the certificate error as the cause", async () => {
  const { cert, key } = await testCertificate();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, cert, key, onError: () => {} },
    (socket) => socket.close(),
  );
  // No caCerts: the test CA is not trusted.
  const error = await failure(connect(`wss://localhost:${server.addr.port}/`));
  assert.ok(error instanceof HandshakeError, String(error));
  assert.ok(error.cause instanceof Error, `cause: ${error.cause}`);
  assert.match(error.cause.message, /certificate|issuer/i);

  await using plain = serve({ hostname: "127.0.0.1", port: 0, onError: () => {} }, (socket) => {
    socket.close();
  });
  const mismatch = await failure(connect(`wss://127.0.0.1:${plain.addr.port}/`));
  assert.ok(mismatch instanceof HandshakeError, String(mismatch));
  assert.ok(mismatch.cause instanceof Error, `cause: ${mismatch.cause}`);
});

Deno.test("connect() reads an HTTP/1.0 refusal, and fails an HTTP/1.0 101", async () => {
  // RFC 9110 §6.2: an HTTP/1.1 client reads an HTTP/1.0 response; an old
  // server (Python's http.server) answers an upgrade with one.
  const refusing = rawServer(async (conn) => {
    await writeAll(conn, encoder.encode("HTTP/1.0 404 File not found\r\n\r\nnot found"));
    conn.close();
  });
  try {
    const error = await failure(connect(`ws://127.0.0.1:${refusing.port}/`));
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.status, 404);
    assert.equal(new TextDecoder().decode(error.body), "not found");
  } finally {
    await refusing.close();
  }
  // HTTP/1.0 has no upgrade (RFC 9110 §7.8).
  const upgrading = rawServer(async (conn) => {
    await writeAll(conn, encoder.encode("HTTP/1.0 101 Switching Protocols\r\n\r\n"));
  });
  try {
    const error = await failure(connect(`ws://127.0.0.1:${upgrading.port}/`));
    assert.ok(error instanceof HandshakeError, String(error));
    assert.match(error.message, /a 101 in HTTP\/1\.0/);
  } finally {
    await upgrading.close();
  }
});

Deno.test("connect() hears an abort that comes right after the TCP connection", async () => {
  // An abort in the microtasks between the connection and connect()'s next
  // listener went unheard, and so did the deadline, which aborts the same
  // signal: against a server that never answers, connect() waited forever.
  const silent = rawServer(() => new Promise(() => {}));
  const controller = new AbortController();
  const realConnect = Deno.connect;
  const namespace = Deno as unknown as { connect: unknown };
  namespace.connect = (options: Deno.ConnectOptions) => {
    const connecting = realConnect(options);
    // Queued after connect()'s own reaction to the connection, so it runs next.
    queueMicrotask(() => void connecting.then(() => controller.abort()));
    return connecting;
  };
  let attempt: Promise<unknown>;
  try {
    attempt = connect(`ws://127.0.0.1:${silent.port}/`, {
      signal: controller.signal,
      handshakeTimeout: 2000,
    });
  } finally {
    namespace.connect = realConnect;
  }
  try {
    const error = await failure(attempt, 1000);
    assert.ok(error instanceof DOMException && error.name === "AbortError", String(error));
  } finally {
    await silent.close();
  }
});

Deno.test("connect() goes on when TCP_NODELAY cannot be set", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
  // A peer that resets at once can make setsockopt fail; the read or write
  // that follows is where the socket learns of it, as on serve()'s side.
  const realConnect = Deno.connect;
  const namespace = Deno as unknown as { connect: unknown };
  namespace.connect = async (options: Deno.ConnectOptions) => {
    const conn = await realConnect(options);
    return new Proxy(conn, {
      get(target, key) {
        if (key === "setNoDelay") {
          return () => {
            throw new Deno.errors.NotConnected("Socket is not connected (os error 107)");
          };
        }
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  let socket;
  try {
    socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  } finally {
    namespace.connect = realConnect;
  }
  await socket.send("still fine");
  assert.equal(await socket.receive({ timeout: 3000 }), "still fine");
  assert.equal((await socket.close()).code, 1000);
});
