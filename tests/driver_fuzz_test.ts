// The frame fuzzer's streams (tests/_fuzz.ts), valid and broken, plain and
// compressed, and streams of large messages broken the same ways, sent in
// random pieces over 127.0.0.1 (TCP, and TLS for some) to an echo on serve()
// (and to one on connect(), with a server's unmasked frames): the socket must
// answer what its engine alone says to the same bytes, however its reads cut
// them. That is the echo of every whole message before the end, a pong for
// the last ping, and the close the engine answers with (none when the stream
// just stops: the sender then ends its half, and the socket must end too).
// The engine's own fuzz targets check its answers; this checks the read loop
// that feeds it (reused and predicted buffers, frames split across reads, the
// next frame's start in a message's buffer), the write path, and that an
// ending waits for the answers to the messages before it. The handshake
// fuzzer's requests go to serve(), and its responses to connect(), the same
// way (see the end of the file).
//
// More cases or another seed: DRIVER_FUZZ_CASES=20000 DRIVER_FUZZ_SEED=7
import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import {
  buildClientHandshakeCase,
  buildDeflateCase,
  buildFrameCase,
  buildServerHandshakeCase,
  chance,
  type ClientHandshakeCase,
  encodeFrame,
  type FrameSpec,
  int,
  mutateBytes,
  mutateFrames,
  pick,
  randomText,
  type Role,
  toHex,
  withSeededRandom,
} from "./_fuzz.ts";
import { hasHead, headLength, readUntil, withTimeout, writeAll } from "./_drivers.ts";
import { concatAll, prng, randomBytes, utf8 } from "./_util.ts";
import { type TestCertificate, testCertificate } from "./_tls.ts";
import { socketsWithOutput } from "../raw_socket.ts";

const CASES = Number(Deno.env.get("DRIVER_FUZZ_CASES") ?? 100);
const FIRST_SEED = Number(Deno.env.get("DRIVER_FUZZ_SEED") ?? 1);
// Cases of the slower kinds: large messages, TLS.
const FEWER = Math.ceil(CASES / 4);
// Far beyond a case's time (a few ms), far below a hang's.
const CASE_MS = 10_000;

/** What one end says, in a form the read boundaries cannot change. */
class Replies {
  /** Whole messages, `t:` text or `b:` hex bytes, in order. */
  readonly messages: string[] = [];
  /** Ping payloads (what the engine saw) or pong payloads (what came back), hex. */
  readonly controls: string[] = [];
  /** The close, once one came. */
  closeEvent: ws.CloseConnection | null = null;
  #text = "";
  #parts: Uint8Array[] = [];

  constructor(readonly control: typeof ws.Ping | typeof ws.Pong) {}

  get close(): string | null {
    return this.closeEvent === null ? null : `${this.closeEvent.code} ${this.closeEvent.reason}`;
  }

  // Messages joined whole (one cut short by the close or the end is not
  // one); nothing after the close counts.
  take(events: Iterable<ws.Event>): this {
    for (const event of events) {
      if (this.closeEvent !== null) break;
      if (event instanceof ws.TextMessage) {
        this.#text += event.data;
        if (event.messageFinished) {
          this.messages.push(`t:${this.#text}`);
          this.#text = "";
        }
      } else if (event instanceof ws.BytesMessage) {
        this.#parts.push(event.data.slice());
        if (event.messageFinished) {
          this.messages.push(`b:${toHex(concatAll(this.#parts))}`);
          this.#parts = [];
        }
      } else if (event instanceof this.control) {
        this.controls.push(toHex(event.payload));
      } else if (event instanceof ws.CloseConnection) {
        this.closeEvent = event;
      }
    }
    return this;
  }
}

const otherSide = (role: Role) =>
  role === "server" ? ws.ConnectionType.CLIENT : ws.ConnectionType.SERVER;
const ownSide = (role: Role) =>
  role === "server" ? ws.ConnectionType.SERVER : ws.ConnectionType.CLIENT;

/** What the engine of `role` alone answers to `stream`, as its peer decodes it. */
function engineReplies(
  stream: Uint8Array,
  role: Role,
  options: ws.ConnectionOptions = {},
): Replies {
  const engine = new ws.Connection(ownSide(role), options);
  engine.receiveData(stream.slice());
  return answersOf(engine, role);
}

/** What an engine of `role`, fed, answers to its events, as its peer decodes it. */
function answersOf(
  engine: { events(): Iterable<ws.Event>; send(event: ws.Event): Uint8Array },
  role: Role,
): Replies {
  const seen = new Replies(ws.Ping).take(engine.events());
  const answered = new Replies(ws.Pong);
  answered.messages.push(...seen.messages);
  answered.controls.push(...seen.controls);
  if (seen.closeEvent !== null) {
    const peer = new ws.Connection(otherSide(role));
    peer.receiveData(engine.send(seen.closeEvent.response()));
    answered.take(peer.events());
  }
  return answered;
}

// In pieces of 1 byte to a few KB, sometimes after a pause, so that reads
// end on frame boundaries and anywhere else; then this half ends. The
// socket may have closed already (it answered a broken frame): writing
// then fails, which is no failure of the case.
async function writeInPieces(conn: Deno.Conn, stream: Uint8Array, random: () => number) {
  try {
    for (let at = 0; at < stream.length;) {
      const piece = Math.min(stream.length - at, 1 + Math.floor(random() ** 3 * 6000));
      await writeAll(conn, stream.subarray(at, at + piece));
      at += piece;
      if (random() < 0.15) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await conn.closeWrite();
  } catch {
    // reset or closed by the socket
  }
}

/**
 * Decode what the socket sends on `conn` with `decoder` until it ends the
 * connection, or, with `stopAtClose`, until its close came (a client waits
 * for the server to end TCP).
 */
async function readReplies(
  conn: Deno.Conn,
  decoder: { receiveData(data: Uint8Array | null): void; events(): Iterable<ws.Event> },
  stopAtClose: boolean,
): Promise<Replies> {
  const replies = new Replies(ws.Pong);
  const buffer = new Uint8Array(256 * 1024);
  const deadline = Date.now() + CASE_MS;
  for (;;) {
    const left = deadline - Date.now();
    assert.ok(left > 0, "the socket did not end the connection");
    const n = await withTimeout(conn.read(buffer), left, "read");
    if (n === null) return replies;
    decoder.receiveData(buffer.slice(0, n));
    replies.take(decoder.events());
    if (stopAtClose && replies.closeEvent !== null) return replies;
  }
}

/** A case as failures name it: its seed, and how the fuzzer broke it. */
const caseName = (seed: number, notes: string[]): string =>
  `seed ${seed} (${notes.join("; ") || "valid"})`;

function check(seed: number, notes: string[], got: Replies, expected: Replies): void {
  const what = caseName(seed, notes);
  assert.deepEqual(got.messages, expected.messages, `${what}: echoes`);
  assert.equal(got.close, expected.close, `${what}: close`);
  // A pong may answer only the latest of several pings (RFC 6455
  // §5.5.3), but the latest always gets one.
  let at = 0;
  for (const pong of got.controls) {
    while (at < expected.controls.length && expected.controls[at] !== pong) at++;
    assert.ok(at < expected.controls.length, `${what}: pong ${pong} answers no ping, in order`);
    at++;
  }
  assert.equal(got.controls.at(-1), expected.controls.at(-1), `${what}: the last ping's pong`);
}

// The mix the generators make: many streams broken, many closed, many
// with messages echoed.
function checkMix(outcomes: Replies[]): void {
  if (outcomes.length < 20) return; // a seed run alone may be anything
  const closed = outcomes.filter((replies) => replies.closeEvent !== null).length;
  const echoed = outcomes.filter((replies) => replies.messages.length > 0).length;
  const enough = outcomes.length / 5;
  assert.ok(closed > enough && echoed > enough, `${closed} closed, ${echoed} echoed`);
}

// On odd seeds the echo gives each message's memory back once sent, as
// examples/echo_server.ts does, so later reads land in reused buffers.
const echoFor = (seed: number) => async (socket: ws.Socket) => {
  for await (const message of socket) {
    socket.send(message);
    if (seed % 2 === 1) socket.release(message);
  }
};

/** A stream for the socket under test, and what it is configured with. */
interface Case {
  stream: Uint8Array;
  notes: string[];
  limits?: Partial<ws.Limits>;
  /** permessage-deflate: the options of the socket under test and of its peer. */
  deflate?: { local: ws.PerMessageDeflateOptions; peer: ws.PerMessageDeflateOptions };
}

/**
 * The extension as a driver makes it from `options` (its message limit is
 * the connection's unless the options say), negotiated with `peerOptions`
 * the way the handshake does.
 */
function negotiated(
  role: Role,
  options: ws.PerMessageDeflateOptions,
  peerOptions: ws.PerMessageDeflateOptions,
  limits: Partial<ws.Limits>,
): ws.PerMessageDeflate {
  const local = new ws.PerMessageDeflate({
    maxMessageSize: limits.maxMessageSize ?? ws.DEFAULT_LIMITS.maxMessageSize,
    ...options,
  });
  const peer = new ws.PerMessageDeflate(peerOptions);
  if (role === "server") {
    assert.ok(local.accept(peer.offer()) !== null, "the case's options negotiate");
  } else {
    local.finalize(peer.accept(local.offer())!);
  }
  return local;
}

/**
 * Runs `count` cases through an echo on the driver of `role`: a server per
 * case, or a client per case to one raw listener, each with the case's
 * limits and extension; over TLS with `tls`.
 */
async function runCases(
  role: Role,
  count: number,
  build: (seed: number) => Case,
  tls: TestCertificate | null = null,
) {
  const listener = tls === null
    ? Deno.listen({ hostname: "127.0.0.1", port: 0 })
    : Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: tls.cert, key: tls.key });
  const port = (listener.addr as Deno.NetAddr).port;
  const url = tls === null ? `ws://127.0.0.1:${port}/` : `wss://localhost:${port}/`;
  const outcomes: Replies[] = [];
  try {
    for (let seed = FIRST_SEED; seed < FIRST_SEED + count; seed++) {
      const kase = build(seed);
      const { stream, notes, limits = {}, deflate } = kase;
      const expected = engineReplies(stream, role, {
        extensions: deflate === undefined
          ? []
          : [negotiated(role, deflate.local, deflate.peer, limits)],
        limits,
      });
      const peerExtensions = () =>
        deflate === undefined ? [] : [new ws.PerMessageDeflate(deflate.peer)];
      const got = role === "server"
        ? await throughServer(kase, seed, peerExtensions(), tls)
        : await throughClient(kase, seed, peerExtensions(), tls, listener, url);
      check(seed, notes, got, expected);
      // Closed, every socket stopped counting as one with output.
      assert.equal(socketsWithOutput(), 0, `seed ${seed}: sockets left with output`);
      outcomes.push(expected);
    }
  } finally {
    listener.close();
  }
  checkMix(outcomes);
}

/** `offered`: the peer's extensions, which the client engine offers. */
async function throughServer(
  { stream, limits = {}, deflate }: Case,
  seed: number,
  offered: ws.Extension[],
  tls: TestCertificate | null,
): Promise<Replies> {
  await using server = ws.serve({
    hostname: "127.0.0.1",
    port: 0,
    limits,
    ...(deflate === undefined ? {} : { deflate: deflate.local }),
    ...(tls === null ? {} : { cert: tls.cert, key: tls.key }),
    onError: () => {},
  }, echoFor(seed));
  const port = server.addr.port;
  const conn = tls === null
    ? await Deno.connect({ hostname: "127.0.0.1", port })
    : await Deno.connectTls({ hostname: "localhost", port, caCerts: [tls.ca] });
  try {
    // A client engine makes the request (with the peer's offer) and
    // decodes the answers, inflated as the server agreed.
    const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
    await writeAll(
      conn,
      client.send(new ws.Request({ host: "127.0.0.1", target: "/", extensions: offered })),
    );
    const [got] = await Promise.all([
      readReplies(conn, client, false),
      (async () => {
        await waitOpen(client);
        await writeInPieces(conn, stream, prng(seed + 0x5eed));
      })(),
    ]);
    assert.equal(client.extensions.length, offered.length, "the offer was taken");
    return got;
  } finally {
    conn.close();
  }
}

/** `accepted`: the peer's extensions, which the raw server's engine accepts. */
async function throughClient(
  { stream, limits = {}, deflate }: Case,
  seed: number,
  accepted: ws.Extension[],
  tls: TestCertificate | null,
  listener: Deno.Listener,
  url: string,
): Promise<Replies> {
  const connecting = ws.connect(url, {
    limits,
    ...(deflate === undefined ? {} : { deflate: deflate.local }),
    ...(tls === null ? {} : { caCerts: [tls.ca] }),
  });
  const conn = await listener.accept();
  // The client's frames are decoded by the engine that answered its request.
  const engine = new ws.WSConnection(ws.ConnectionType.SERVER);
  await writeAll(conn, await readHandshake(conn, engine, accepted));
  const socket = await connecting;
  try {
    assert.equal(socket.extensions.length, accepted.length, "the extension was agreed");
    const echoing = echoFor(seed)(socket);
    const [got] = await Promise.all([
      readReplies(conn, engine, true),
      writeInPieces(conn, stream, prng(seed + 0x5eed)),
    ]);
    conn.close();
    await withTimeout(echoing, CASE_MS, `seed ${seed}: the client's loop ended`);
    return got;
  } finally {
    try {
      conn.close();
    } catch {
      // closed above
    }
    await socket.closed;
  }
}

// Large messages: the frame fuzzer's sizes are mostly small, while the
// read loop's own paths are for large ones (a buffer of the message's own
// behind its header, reads sized for a message like the last, text frames
// read into pooled buffers). A few messages of 2 KiB to 200 KB, sometimes
// fragmented, broken as the frame fuzzer breaks streams (bad UTF-8 deep in
// a long text, a length changed, a frame dropped, bytes flipped or cut).
function buildLargeCase(seed: number, role: Role): Case {
  const random = prng(seed);
  const masked = role === "server";
  const frames: FrameSpec[] = [];
  const messages = 1 + int(random, 4);
  for (let i = 0; i < messages; i++) {
    const size = chance(random, 0.5)
      ? pick(random, [2048, 4096, 65_535, 65_536, 131_072]) + int(random, 3) - 1
      : 2048 + int(random, 200_000);
    const text = chance(random, 0.4);
    let payload: Uint8Array;
    if (text) {
      let string = randomText(random, 12);
      while (string.length < size) string += randomText(random, 12) + "abc ";
      payload = utf8(string);
    } else {
      payload = randomBytes(random, size);
    }
    const cut = chance(random, 0.7) ? payload.length : int(random, payload.length + 1);
    const pieces = cut === payload.length ? [payload] : [payload.slice(0, cut), payload.slice(cut)];
    pieces.forEach((piece, at) =>
      frames.push({
        fin: at === pieces.length - 1,
        rsv: 0,
        opcode: at > 0 ? 0 : text ? 1 : 2,
        masked,
        maskKey: randomBytes(random, 4),
        payload: piece,
      })
    );
  }
  const notes: string[] = [];
  if (chance(random, 0.5)) notes.push(mutateFrames(random, frames, role));
  let stream = concatAll(frames.map(encodeFrame));
  if (chance(random, 0.3)) {
    const [out, note] = mutateBytes(random, stream);
    stream = out;
    notes.push(note);
  }
  return { stream, notes };
}

for (const role of ["server", "client"] as const) {
  const driver = role === "server" ? "serve()" : "connect()";
  Deno.test(`${driver} answers ${CASES} fuzzed frame streams as its engine does`, async () => {
    await runCases(role, CASES, (seed) => buildFrameCase(prng(seed), role));
  });
  Deno.test(`${driver} answers ${FEWER} fuzzed streams of large messages as its engine does`, async () => {
    await runCases(role, FEWER, (seed) => buildLargeCase(seed, role));
  });
  Deno.test(`${driver} answers ${FEWER} fuzzed frame streams over TLS as its engine does`, async () => {
    const tls = await testCertificate();
    await runCases(role, FEWER, (seed) => buildFrameCase(prng(seed), role), tls);
  });
  Deno.test(`${driver} answers ${CASES} fuzzed compressed streams as its engine does`, async () => {
    await runCases(role, CASES, (seed) => {
      const { stream, notes, limits, localOptions, peerOptions } = buildDeflateCase(seed, role);
      return { stream, notes, limits, deflate: { local: localOptions, peer: peerOptions } };
    });
  });
}

// Handshakes: the handshake fuzzer's requests (valid, or broken in the
// head or the bytes), some followed by frames, in random pieces to
// serve(). The server must answer with the engine's status (101, the
// rejection's, or none for a head that never ends) and, after a 101,
// answer the frames as the engine does.

/** The status the engine answers `stream` with (null: none), and then its replies. */
function engineHandshake(
  stream: Uint8Array,
  limits: Partial<ws.Limits>,
): { status: number | null; replies: Replies } {
  const engine = new ws.WSConnection(ws.ConnectionType.SERVER, { limits });
  try {
    engine.receiveData(stream.slice());
    if (!(engine.nextEvent() instanceof ws.Request)) {
      // The client then ends its half, in the middle of the head.
      engine.receiveData(null);
      return { status: null, replies: new Replies(ws.Pong) };
    }
    engine.send(new ws.AcceptConnection());
    return { status: 101, replies: answersOf(engine, "server") };
  } catch (error) {
    if (
      !(error instanceof ws.RemoteProtocolError) ||
      !(error.eventHint instanceof ws.RejectConnection)
    ) {
      throw error;
    }
    return { status: error.eventHint.statusCode, replies: new Replies(ws.Pong) };
  }
}

Deno.test(`serve() answers ${CASES} fuzzed handshakes as its engine does`, async () => {
  const outcomes: (number | null)[] = [];
  for (let seed = FIRST_SEED; seed < FIRST_SEED + CASES; seed++) {
    const { limits, stream, notes } = buildServerHandshakeCase(seed);
    const expected = engineHandshake(stream, limits);
    await using server = ws.serve(
      { hostname: "127.0.0.1", port: 0, limits, onError: () => {} },
      echoFor(seed),
    );
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    try {
      const [{ bytes: answer, ended }] = await Promise.all([
        readUntil(conn, () => false, CASE_MS),
        writeInPieces(conn, stream, prng(seed + 0x5eed)),
      ]);
      const what = caseName(seed, notes);
      assert.ok(ended, `${what}: the server did not end the connection`);
      const end = headLength(answer);
      const head = new TextDecoder().decode(answer.subarray(0, end < 0 ? 80 : end));
      const status = end < 0 ? null : Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1]);
      assert.equal(status, expected.status, `${what}: ${JSON.stringify(head.slice(0, 80))}`);
      if (status === 101) {
        const client = new ws.Connection(ws.ConnectionType.CLIENT);
        client.receiveData(answer.slice(end));
        check(seed, notes, new Replies(ws.Pong).take(client.events()), expected.replies);
      }
    } finally {
      conn.close();
    }
    assert.equal(socketsWithOutput(), 0, `seed ${seed}: sockets left with output`);
    outcomes.push(expected.status);
  }
  // Many accepted, many refused.
  if (outcomes.length >= 20) {
    const accepted = outcomes.filter((status) => status === 101).length;
    const refused = outcomes.filter((status) => status !== null && status !== 101).length;
    assert.ok(
      accepted > CASES / 10 && refused > CASES / 5,
      `${accepted} accepted, ${refused} refused`,
    );
  }
});

// The handshake fuzzer's responses (a 101 maybe followed by frames, or a
// refusal with a body; valid or broken) to connect(), in random pieces,
// then the server's half ends: connect() must open where the engine
// accepts, refuse with the engine's status, or fail where the engine finds
// the response broken or cut short. An opened socket must then answer the
// frames as the engine does.

/** How connect() must end for `kase`, and what it must then answer. */
function engineResponse(kase: ClientHandshakeCase): {
  outcome: string;
  replies: Replies;
} {
  const { conn: engine } = kase.start();
  const none = new Replies(ws.Pong);
  try {
    engine.receiveData(kase.stream.slice());
    const head = engine.peekEvent();
    if (head instanceof ws.AcceptConnection) {
      engine.nextEvent();
      return { outcome: "open", replies: answersOf(engine, "client") };
    }
    // A refusal says its status, however its body ends (see HandshakeError).
    if (head instanceof ws.RejectConnection) {
      return { outcome: `refused ${head.statusCode}`, replies: none };
    }
    engine.receiveData(null);
    const first = engine.peekEvent();
    if (first instanceof ws.RejectConnection) {
      return { outcome: `refused ${first.statusCode}`, replies: none };
    }
    // The connection closed during the handshake (after a 1xx, say).
    return { outcome: "failed", replies: none };
  } catch (error) {
    if (!(error instanceof ws.RemoteProtocolError)) throw error;
    return { outcome: "failed", replies: none };
  }
}

Deno.test(`connect() answers ${CASES} fuzzed handshake responses as its engine does`, async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`;
  const outcomes: string[] = [];
  try {
    for (let seed = FIRST_SEED; seed < FIRST_SEED + CASES; seed++) {
      const kase = buildClientHandshakeCase(seed);
      const expected = engineResponse(kase);
      const what = caseName(seed, kase.notes);
      // The key drawn from the seed, as the case's response expects.
      const connecting = withSeededRandom(seed, () =>
        ws.connect(url, {
          limits: kase.limits,
          subprotocols: kase.subprotocols,
          deflate: kase.offerDeflate,
          handshakeTimeout: CASE_MS,
        }));
      const conn = await listener.accept();
      try {
        // The client's request, whatever it says.
        assert.ok(hasHead((await readUntil(conn, hasHead, CASE_MS)).bytes), `${what}: no request`);
        const writing = writeInPieces(conn, kase.stream, prng(seed + 0x5eed));
        const socket = await connecting.catch((error) => error);
        if (socket instanceof Error) {
          assert.ok(socket instanceof ws.HandshakeError, `${what}: ${socket}`);
          const outcome = socket.status === null ? "failed" : `refused ${socket.status}`;
          assert.equal(outcome, expected.outcome, `${what}: ${socket.message}`);
        } else {
          assert.equal("open", expected.outcome, what);
          // Its answers, unless compressed: inflating them would take the
          // server's half of the extension, which the response only names.
          if (socket.extensions.length === 0) {
            const echoing = echoFor(seed)(socket);
            const decoder = new ws.Connection(ws.ConnectionType.SERVER);
            check(seed, kase.notes, await readReplies(conn, decoder, true), expected.replies);
            conn.close();
            await withTimeout(echoing, CASE_MS, `${what}: the client's loop ended`);
          } else {
            conn.close();
          }
          await socket.closed;
        }
        await writing;
      } finally {
        try {
          conn.close();
        } catch {
          // closed above
        }
      }
      outcomes.push(expected.outcome);
    }
  } finally {
    listener.close();
  }
  if (outcomes.length >= 20) {
    const opened = outcomes.filter((outcome) => outcome === "open").length;
    const refused = outcomes.filter((outcome) => outcome.startsWith("refused")).length;
    assert.ok(opened > CASES / 10 && refused > CASES / 10, `${opened} opened, ${refused} refused`);
  }
});

// Resolves once `client` took the server's 101 (fed by readReplies()).
async function waitOpen(client: ws.WSConnection): Promise<void> {
  const deadline = Date.now() + CASE_MS;
  while (client.state === ws.ConnectionState.CONNECTING) {
    assert.ok(Date.now() < deadline, "no 101");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Read the client's request into `engine` and return the 101 to write. */
async function readHandshake(
  conn: Deno.Conn,
  engine: ws.WSConnection,
  extensions: ws.Extension[] = [],
): Promise<Uint8Array> {
  const buffer = new Uint8Array(4096);
  for (let reads = 0; reads < 100; reads++) {
    const n = await withTimeout(conn.read(buffer), CASE_MS, "the request");
    assert.ok(n !== null, "the client ended before its request");
    engine.receiveData(buffer.slice(0, n));
    for (const event of engine.events()) {
      if (event instanceof ws.Request) return engine.send(new ws.AcceptConnection({ extensions }));
    }
  }
  throw new Error("no request in 100 reads");
}
