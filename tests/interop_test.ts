// The engine against other implementations, over real sockets: a server
// `WSConnection` on raw `Deno.listen` against Deno's native `WebSocket` client
// and an npm:ws client, and a client `WSConnection` on `Deno.connect` against
// `Deno.serve` + `Deno.upgradeWebSocket` and an npm:ws server. No driver of
// this module is used: a small loop below reads into a fresh buffer per read,
// feeds `receiveData`, and writes what `send` returns.
//
// Each peer gets messages of 0, 125, 126, 65535, 65536 bytes and 1 MiB, text
// and binary, both ways; pings both ways where the peer's API can send one;
// and a close from each end, with code and reason checked on both ends.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
// deno-lint-ignore no-import-prefix -- deno.json has no "ws" mapping; tests pin it here
import { WebSocket as WsClient, WebSocketServer } from "npm:ws@8.18.3";
import * as ws from "../mod.ts";
import { payloadsOfEverySize, Queue, withTimeout, writeAll } from "./_drivers.ts";
import { concatAll } from "./_util.ts";

const TIMEOUT = 10_000;
const HOST = "127.0.0.1";

/** Wait for a promise, at most `ms`; the timer is always cleared. */
const within = <T>(promise: Promise<T>, what: string, ms = TIMEOUT): Promise<T> =>
  withTimeout(promise, ms, what);

type Data = string | Uint8Array;

function describe(data: Data): string {
  return typeof data === "string"
    ? `text of ${new TextEncoder().encode(data).length} bytes`
    : `binary of ${data.length} bytes`;
}

function sameData(actual: Data, expected: Data, what: string): void {
  assert.equal(typeof actual, typeof expected, `${what}: type`);
  if (typeof expected === "string") {
    assert.ok(actual === expected, `${what}: text differs`);
  } else {
    const bytes = actual as Uint8Array;
    assert.equal(bytes.length, expected.length, `${what}: length`);
    assert.ok(bytes.every((b, i) => b === expected[i]), `${what}: bytes differ`);
  }
}

/**
 * One end driven by our engine over a socket: reads into a fresh buffer
 * each time (the engine keeps what it is given), answers pings and the
 * peer's close, and queues whole messages, pongs and closes for the test.
 */
class Engine {
  readonly wsc: ws.WSConnection;
  readonly messages = new Queue<Data>(TIMEOUT);
  readonly pongs = new Queue<Uint8Array>(TIMEOUT);
  readonly pingsReceived = new Queue<Uint8Array>(TIMEOUT);
  readonly closes = new Queue<ws.CloseConnection>(TIMEOUT);
  readonly opened = Promise.withResolvers<void>();
  readonly finished: Promise<void>;
  readonly #conn: Deno.Conn;
  #writes: Promise<void> = Promise.resolve();
  #connClosed = false;
  #text: string[] = [];
  #binary: Uint8Array[] = [];

  constructor(conn: Deno.Conn, type: ws.ConnectionType, request?: ws.Request) {
    this.#conn = conn;
    this.wsc = new ws.WSConnection(type);
    if (request !== undefined) this.write(this.wsc.send(request));
    this.finished = this.#readLoop();
    // A failed handshake must not leave `opened` rejected and unobserved.
    this.opened.promise.catch(() => {});
  }

  write(bytes: Uint8Array): Promise<void> {
    this.#writes = this.#writes.then(() => writeAll(this.#conn, bytes));
    return this.#writes;
  }

  send(event: ws.Event): Promise<void> {
    return this.write(this.wsc.send(event));
  }

  /** Close the TCP connection (once). */
  closeConn(): void {
    if (this.#connClosed) return;
    this.#connClosed = true;
    this.#conn.close();
  }

  async #readLoop(): Promise<void> {
    try {
      while (!this.#connClosed) {
        // A fresh buffer per read: the engine owns (and unmasks in place) what it gets.
        const buffer = new Uint8Array(64 * 1024);
        let n: number | null;
        try {
          n = await this.#conn.read(buffer);
        } catch (error) {
          if (this.#connClosed) return;
          throw error;
        }
        this.wsc.receiveData(n === null ? null : buffer.subarray(0, n));
        await this.#handleEvents();
        if (n === null) return;
        // RFC 6455 §7.1.1: once the closing handshake is done the server
        // closes TCP first; the client waits for that.
        if (
          this.wsc.state === ws.ConnectionState.CLOSED &&
          this.wsc.type === ws.ConnectionType.SERVER
        ) {
          return;
        }
      }
    } catch (error) {
      this.opened.reject(error);
      throw error;
    } finally {
      await this.#writes.catch(() => {});
      this.closeConn();
    }
  }

  async #handleEvents(): Promise<void> {
    for (const event of this.wsc.events()) {
      if (event instanceof ws.Request) {
        await this.send(new ws.AcceptConnection());
        this.opened.resolve();
      } else if (event instanceof ws.AcceptConnection) {
        this.opened.resolve();
      } else if (event instanceof ws.RejectConnection) {
        throw new Error(`Handshake refused with ${event.statusCode}`);
      } else if (event instanceof ws.TextMessage) {
        this.#text.push(event.data);
        if (event.messageFinished) this.messages.push(this.#text.splice(0).join(""));
      } else if (event instanceof ws.BytesMessage) {
        this.#binary.push(event.data);
        if (event.messageFinished) this.messages.push(concatAll(this.#binary.splice(0)));
      } else if (event instanceof ws.Ping) {
        this.pingsReceived.push(event.payload.slice());
        if (this.wsc.state === ws.ConnectionState.OPEN) await this.send(event.response());
      } else if (event instanceof ws.Pong) {
        this.pongs.push(event.payload.slice());
      } else if (event instanceof ws.CloseConnection) {
        this.closes.push(event);
        if (this.wsc.state === ws.ConnectionState.REMOTE_CLOSING) {
          await this.send(event.response());
        }
      }
    }
  }
}

/** The other implementation, seen through what the test needs of it. */
interface Remote {
  readonly name: string;
  readonly messages: Queue<Data>;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Resolves once the peer's socket is OPEN. */
  readonly opened: Promise<void>;
  send(data: Data): void;
  /** Send a ping and wait for its pong (only where the peer's API has ping). */
  ping?(payload: Uint8Array): Promise<Uint8Array>;
  close(code: number, reason: string): void;
}

/** Deno's native WebSocket: the client in a browser-like API, or a Deno.serve socket. */
function denoRemote(name: string, socket: WebSocket): Remote {
  socket.binaryType = "arraybuffer";
  const messages = new Queue<Data>(TIMEOUT);
  const closed = Promise.withResolvers<{ code: number; reason: string }>();
  socket.addEventListener("message", (event) => {
    const data = event.data;
    messages.push(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
  });
  socket.addEventListener("close", (event) => {
    closed.resolve({ code: event.code, reason: event.reason });
  });
  const opened = Promise.withResolvers<void>();
  if (socket.readyState === WebSocket.OPEN) opened.resolve();
  else socket.addEventListener("open", () => opened.resolve());
  return {
    name,
    messages,
    closed: closed.promise,
    opened: opened.promise,
    send: (data) => socket.send(data),
    close: (code, reason) => socket.close(code, reason),
  };
}

/** An npm:ws socket, client or server side. */
function nodeRemote(name: string, socket: WsClient): Remote {
  const messages = new Queue<Data>(TIMEOUT);
  const pongs = new Queue<Uint8Array>(TIMEOUT);
  const closed = Promise.withResolvers<{ code: number; reason: string }>();
  socket.on("message", (data: Uint8Array, isBinary: boolean) => {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    messages.push(isBinary ? bytes : new TextDecoder().decode(bytes));
  });
  socket.on("pong", (data: Uint8Array) => pongs.push(new Uint8Array(data)));
  socket.on("close", (code: number, reason: Uint8Array) => {
    closed.resolve({ code, reason: new TextDecoder().decode(reason) });
  });
  const opened = Promise.withResolvers<void>();
  if (socket.readyState === WsClient.OPEN) opened.resolve();
  else socket.once("open", () => opened.resolve());
  return {
    name,
    messages,
    closed: closed.promise,
    opened: opened.promise,
    send: (data) => socket.send(data, { binary: typeof data !== "string" }),
    ping: (payload) => {
      socket.ping(payload);
      return pongs.next(`${name}'s pong`);
    },
    close: (code, reason) => socket.close(code, reason),
  };
}

/** Every size both ways, then pings both ways. */
async function exchange(engine: Engine, remote: Remote): Promise<void> {
  for (const data of payloadsOfEverySize()) {
    const what = `${describe(data)} from ${remote.name}`;
    remote.send(data);
    sameData(await engine.messages.next(what), data, what);
    const back = `${describe(data)} to ${remote.name}`;
    await engine.send(
      typeof data === "string" ? new ws.TextMessage({ data }) : new ws.BytesMessage({ data }),
    );
    sameData(await remote.messages.next(back), data, back);
  }
  // Our ping; every peer must answer with the same payload (RFC 6455 §5.5.3).
  for (const payload of [new Uint8Array(0), new TextEncoder().encode("ping from the engine")]) {
    await engine.send(new ws.Ping({ payload }));
    assert.deepEqual(await engine.pongs.next(`the pong from ${remote.name}`), payload);
  }
  const full = new Uint8Array(125).map((_, i) => i);
  await engine.send(new ws.Ping({ payload: full }));
  assert.deepEqual(await engine.pongs.next(`the 125-byte pong from ${remote.name}`), full);
  // The peer's ping, where its API can send one; the engine loop answers it.
  if (remote.ping !== undefined) {
    const payload = new TextEncoder().encode(`ping from ${remote.name}`);
    assert.deepEqual(await remote.ping(payload), payload);
    assert.deepEqual(await engine.pingsReceived.next("the peer's ping"), payload);
  }
}

/** The engine closes: the peer sees our code and reason, and echoes the code. */
async function engineCloses(engine: Engine, remote: Remote): Promise<void> {
  await engine.send(new ws.CloseConnection({ code: 4001, reason: "engine says bye é" }));
  assert.equal(engine.wsc.state, ws.ConnectionState.LOCAL_CLOSING);
  const seen = await within(remote.closed, `${remote.name} to see the close`);
  assert.deepEqual(seen, { code: 4001, reason: "engine says bye é" });
  const echo = await engine.closes.next(`${remote.name}'s close echo`);
  assert.equal(echo.code, 4001, "the peer echoes the status code (RFC 6455 §5.5.1)");
  await within(engine.finished, "the TCP connection to end");
  assert.equal(engine.wsc.state, ws.ConnectionState.CLOSED);
}

/** The peer closes: the engine sees its code and reason; the peer gets them echoed. */
async function remoteCloses(engine: Engine, remote: Remote): Promise<void> {
  remote.close(4002, "peer says bye ✓");
  const close = await engine.closes.next(`${remote.name}'s close`);
  assert.equal(close.code, 4002);
  assert.equal(close.reason, "peer says bye ✓");
  const seen = await within(remote.closed, `${remote.name} to see the echo`);
  assert.deepEqual(seen, { code: 4002, reason: "peer says bye ✓" });
  await within(engine.finished, "the TCP connection to end");
  assert.equal(engine.wsc.state, ws.ConnectionState.CLOSED);
}

// ------------------------------------------------------- our server

/** Run `body` against one connection a client makes to a raw `Deno.listen` server. */
async function withServerEngine(
  connectClient: (url: string) => Remote,
  body: (engine: Engine, remote: Remote) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  let engine: Engine | null = null;
  try {
    const { port } = listener.addr as Deno.NetAddr;
    const accepted = listener.accept();
    const remote = connectClient(`ws://${HOST}:${port}/interop?x=1`);
    const conn = await within(accepted, "the TCP connection");
    engine = new Engine(conn, ws.ConnectionType.SERVER);
    await within(engine.opened.promise, "the handshake");
    await within(remote.opened, `${remote.name} to open`);
    await body(engine, remote);
    await within(remote.closed, `${remote.name} to close`);
  } finally {
    listener.close();
    if (engine !== null) {
      engine.closeConn();
      await engine.finished.catch(() => {});
    }
  }
}

function nativeClient(url: string): Remote {
  return denoRemote("Deno's WebSocket client", new WebSocket(url));
}

function npmClient(url: string): Remote {
  return nodeRemote("the npm:ws client", new WsClient(url));
}

for (
  const [name, connectClient] of [["Deno's native WebSocket", nativeClient], [
    "an npm:ws client",
    npmClient,
  ]] as const
) {
  Deno.test(`a server WSConnection on Deno.listen talks to ${name}`, async (t) => {
    await t.step("every size both ways, pings, then our close", async () => {
      await withServerEngine(connectClient, async (engine, remote) => {
        await exchange(engine, remote);
        await engineCloses(engine, remote);
      });
    });
    await t.step("the client's close", async () => {
      await withServerEngine(connectClient, async (engine, remote) => {
        remote.send("hello");
        assert.equal(await engine.messages.next("hello"), "hello");
        await remoteCloses(engine, remote);
      });
    });
  });
}

// ------------------------------------------------------- our client

interface TestServer {
  port: number;
  sockets: Queue<Remote>;
  shutdown(): Promise<void>;
}

function denoServer(): TestServer {
  const sockets = new Queue<Remote>(TIMEOUT);
  const server = Deno.serve({ hostname: HOST, port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    sockets.push(denoRemote("Deno.serve + upgradeWebSocket", socket));
    return response;
  });
  return { port: server.addr.port, sockets, shutdown: () => server.shutdown() };
}

async function npmServer(): Promise<TestServer> {
  const sockets = new Queue<Remote>(TIMEOUT);
  const server = new WebSocketServer({ host: HOST, port: 0 });
  server.on(
    "connection",
    (socket: WsClient) => sockets.push(nodeRemote("the npm:ws server", socket)),
  );
  await within(new Promise((resolve) => server.once("listening", resolve)), "npm:ws to listen");
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    shutdown: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function withClientEngine(
  server: TestServer,
  body: (engine: Engine, remote: Remote) => Promise<void>,
): Promise<void> {
  const conn = await within(Deno.connect({ hostname: HOST, port: server.port }), "connect");
  const engine = new Engine(
    conn,
    ws.ConnectionType.CLIENT,
    new ws.Request({ host: `${HOST}:${server.port}`, target: "/interop?x=1" }),
  );
  try {
    await within(engine.opened.promise, "the handshake");
    const remote = await server.sockets.next("the server's socket");
    await within(remote.opened, `${remote.name} to open`);
    await body(engine, remote);
    await within(remote.closed, `${remote.name} to close`);
  } finally {
    engine.closeConn();
    await engine.finished.catch(() => {});
  }
}

for (
  const [name, start] of [["Deno.serve + Deno.upgradeWebSocket", denoServer], [
    "an npm:ws server",
    npmServer,
  ]] as const
) {
  Deno.test(`a client WSConnection on Deno.connect talks to ${name}`, async (t) => {
    const server = await start();
    try {
      await t.step("every size both ways, pings, then our close", async () => {
        await withClientEngine(server, async (engine, remote) => {
          await exchange(engine, remote);
          await engineCloses(engine, remote);
        });
      });
      await t.step("the server's close", async () => {
        await withClientEngine(server, async (engine, remote) => {
          await engine.send(new ws.TextMessage({ data: "hello" }));
          assert.equal(await remote.messages.next("hello"), "hello");
          await remoteCloses(engine, remote);
        });
      });
    } finally {
      await server.shutdown();
    }
  });
}
