// The drivers against other implementations: Deno's native WebSocket (client
// and server) and npm:ws (client and server), over TCP and TLS.
import assert from "node:assert/strict";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
// deno-lint-ignore no-import-prefix -- deno.json has no "ws" mapping; tests pin it here
import { WebSocket as WsClient, WebSocketServer } from "npm:ws@8.18.3";
import { connect } from "../client.ts";
import { serve } from "../server.ts";
import type { Handler, MessageData } from "../socket.ts";
import { payloadsOfEverySize, Queue, withTimeout } from "./_drivers.ts";
import { testCertificate } from "./_tls.ts";

function same(received: MessageData, sent: MessageData): void {
  assert.equal(typeof received, typeof sent);
  if (typeof sent === "string") assert.ok(received === sent, "text differs");
  else assert.ok(Buffer.compare(received as Uint8Array, sent) === 0, "bytes differ");
}

const echo: Handler = async (socket) => {
  for await (const message of socket) await socket.send(message);
};

// A promise-based view of a browser-style WebSocket (Deno's native client).
function nativeClient(url: string, protocols?: string[]) {
  const socket = new WebSocket(url, protocols);
  socket.binaryType = "arraybuffer";
  const messages = new Queue<MessageData>(5000);
  socket.onmessage = (event) => {
    messages.push(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
  };
  const opened = new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error("native WebSocket failed"));
  });
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  return {
    socket,
    opened,
    closed,
    next: () => messages.next("native client"),
  };
}

// The same for an npm:ws client.
function wsClient(url: string, protocols: string[] = [], options: Record<string, unknown> = {}) {
  const socket = new WsClient(url, protocols, options);
  const messages = new Queue<MessageData>(5000);
  socket.on("message", (data: Buffer, isBinary: boolean) => {
    messages.push(isBinary ? new Uint8Array(data) : data.toString("utf8"));
  });
  const opened = new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once(
      "close",
      (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }),
    )
  );
  return {
    socket,
    opened,
    closed,
    next: () => messages.next("npm:ws client"),
  };
}

Deno.test("serve() echoes text and binary of every size to Deno's native WebSocket", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  const client = nativeClient(`ws://127.0.0.1:${server.addr.port}/`);
  await client.opened;
  for (const payload of payloadsOfEverySize()) {
    client.socket.send(payload);
    same(await client.next(), payload);
  }
  client.socket.close(1000, "done");
  const event = await client.closed;
  assert.equal(event.code, 1000);
  assert.equal(event.reason, "done");
});

Deno.test("serve() echoes every size to an npm:ws client and agrees on a subprotocol", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket, request) => {
    assert.deepEqual(request.subprotocols, ["a", "b"]);
    socket.accept({ subprotocol: "b" });
    await echo(socket, request);
  });
  const client = wsClient(`ws://127.0.0.1:${server.addr.port}/`, ["a", "b"]);
  await client.opened;
  assert.equal(client.socket.protocol, "b");
  for (const payload of payloadsOfEverySize()) {
    client.socket.send(payload);
    same(await client.next(), payload);
  }
  client.socket.close(4001, "npm bye");
  assert.deepEqual(await client.closed, { code: 4001, reason: "npm bye" });
});

Deno.test("the native WebSocket client sees the server's subprotocol and close", async () => {
  const { promise: serverClosed, resolve } = Promise.withResolvers<unknown>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    socket.accept({ subprotocol: "chat" });
    assert.equal(await socket.receive({ timeout: 2000 }), "hi");
    resolve(await socket.close(4000, "server says bye"));
  });
  const client = nativeClient(`ws://127.0.0.1:${server.addr.port}/`, ["chat"]);
  await client.opened;
  assert.equal(client.socket.protocol, "chat");
  client.socket.send("hi");
  const event = await client.closed;
  assert.equal(event.code, 4000);
  assert.equal(event.reason, "server says bye");
  assert.deepEqual(await serverClosed, { code: 4000, reason: "server says bye" });
});

Deno.test("connect() exchanges every size with an npm:ws server, and closes with a reason", async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  const serverClosed = Promise.withResolvers<{ code: number; reason: string }>();
  wss.on("connection", (peer: WsClient) => {
    peer.on("message", (data: Buffer, isBinary: boolean) => peer.send(data, { binary: isBinary }));
    peer.on(
      "close",
      (code: number, reason: Buffer) => serverClosed.resolve({ code, reason: `${reason}` }),
    );
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  const port = (wss.address() as AddressInfo).port;
  try {
    const socket = await connect(`ws://127.0.0.1:${port}/`);
    for (const payload of payloadsOfEverySize()) {
      await socket.send(payload);
      same(await socket.receive({ timeout: 5000 }), payload);
    }
    assert.deepEqual(await socket.close(3001, "client done"), {
      code: 3001,
      reason: "client done",
    });
    assert.deepEqual(await serverClosed.promise, { code: 3001, reason: "client done" });
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});

Deno.test("connect() sees a close started by an npm:ws server", async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  wss.on("connection", (peer: WsClient) => {
    peer.on("message", () => peer.close(4002, "go away"));
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  const port = (wss.address() as AddressInfo).port;
  try {
    const socket = await connect(`ws://127.0.0.1:${port}/`);
    await socket.send("close me");
    const messages: MessageData[] = [];
    for await (const message of socket) messages.push(message);
    assert.deepEqual(messages, []);
    assert.deepEqual(await socket.closed, { code: 4002, reason: "go away" });
    assert.equal(socket.state, "closed");
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});

Deno.test("connect() talks to a Deno.serve server running Deno's native WebSocket", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "v2" });
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
  try {
    const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
      subprotocols: ["v1", "v2"],
    });
    assert.equal(socket.subprotocol, "v2");
    for (const payload of payloadsOfEverySize()) {
      await socket.send(payload);
      same(await socket.receive({ timeout: 5000 }), payload);
    }
    assert.equal((await socket.close(1000, "bye")).code, 1000);
  } finally {
    await server.shutdown();
  }
});

Deno.test("pings go both ways between serve() and npm:ws", async () => {
  const serverPinged = Promise.withResolvers<void>();
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
    await socket.ping(new Uint8Array([1, 2, 3]));
    serverPinged.resolve();
    await echo(socket, undefined as never);
  });
  const client = wsClient(`ws://127.0.0.1:${server.addr.port}/`);
  const pinged = new Promise<Buffer>((resolve) => client.socket.once("ping", resolve));
  await client.opened;
  assert.deepEqual([...await withTimeout(pinged, 2000, "ping")], [1, 2, 3]);
  await withTimeout(serverPinged.promise, 2000, "pong to the server");
  const ponged = new Promise<Buffer>((resolve) => client.socket.once("pong", resolve));
  client.socket.ping(Buffer.from("hello"));
  assert.equal(`${await withTimeout(ponged, 2000, "pong")}`, "hello");
  client.socket.close();
  await client.closed;
});

Deno.test("connect() pings an npm:ws server and answers its pings", async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  const clientPonged = Promise.withResolvers<string>();
  wss.on("connection", (peer: WsClient) => {
    peer.on("pong", (data: Buffer) => clientPonged.resolve(`${data}`));
    peer.ping(Buffer.from("from ws"));
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  try {
    const socket = await connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`);
    assert.equal(await withTimeout(clientPonged.promise, 2000, "pong"), "from ws");
    await withTimeout(socket.ping(), 2000, "our ping");
    await withTimeout(socket.ping(new Uint8Array(125)), 2000, "a 125-byte ping");
    await socket.close();
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});

Deno.test("serve() over TLS talks to connect() and to npm:ws", async () => {
  const { cert, key, ca } = await testCertificate();
  await using server = serve({ hostname: "127.0.0.1", port: 0, cert, key }, echo);
  const url = `wss://localhost:${server.addr.port}/`;
  const ours = await connect(url, { caCerts: [ca] });
  for (const payload of payloadsOfEverySize()) {
    await ours.send(payload);
    same(await ours.receive({ timeout: 5000 }), payload);
  }
  assert.deepEqual(await ours.close(4003, "tls bye"), { code: 4003, reason: "tls bye" });

  const theirs = wsClient(url, [], { ca });
  await theirs.opened;
  theirs.socket.send("over tls");
  assert.equal(await theirs.next(), "over tls");
  theirs.socket.close(1000);
  assert.equal((await theirs.closed).code, 1000);
});

Deno.test("connect() over TLS talks to an npm:ws server on node:https", async () => {
  const { cert, key, ca } = await testCertificate();
  const https = createHttpsServer({ cert, key });
  const wss = new WebSocketServer({ server: https });
  wss.on("connection", (peer: WsClient) => {
    peer.on("message", (data: Buffer, isBinary: boolean) => peer.send(data, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => https.listen(0, "127.0.0.1", resolve));
  try {
    const socket = await connect(`wss://localhost:${(https.address() as AddressInfo).port}/`, {
      caCerts: [ca],
    });
    for (const payload of payloadsOfEverySize()) {
      await socket.send(payload);
      same(await socket.receive({ timeout: 5000 }), payload);
    }
    assert.equal((await socket.close()).code, 1000);
  } finally {
    await new Promise((resolve) => wss.close(resolve));
    await new Promise((resolve) => https.close(resolve));
  }
});

Deno.test("permessage-deflate works with npm:ws in both directions", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, deflate: true }, async (socket) => {
    assert.deepEqual(socket.extensions, []); // nothing is negotiated before the accept
    socket.accept();
    assert.deepEqual(socket.extensions, ["permessage-deflate"]);
    await echo(socket, undefined as never);
  });
  const client = wsClient(`ws://127.0.0.1:${server.addr.port}/`, [], { perMessageDeflate: true });
  await client.opened;
  assert.match(client.socket.extensions, /permessage-deflate/);
  const big = "compress me ".repeat(50_000);
  client.socket.send(big);
  assert.equal(await client.next(), big);
  client.socket.close();
  await client.closed;

  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
  wss.on("connection", (peer: WsClient) => {
    peer.on("message", (data: Buffer, isBinary: boolean) => peer.send(data, { binary: isBinary }));
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  try {
    const socket = await connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, {
      deflate: true,
    });
    assert.deepEqual(socket.extensions, ["permessage-deflate"]);
    await socket.send(big);
    assert.equal(await socket.receive({ timeout: 5000 }), big);
    const bytes = new Uint8Array(200_000).fill(7);
    await socket.send(bytes);
    same(await socket.receive({ timeout: 5000 }), bytes);
    await socket.close();
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});
