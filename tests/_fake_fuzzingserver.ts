// A small stand-in for Autobahn's `wstest -m fuzzingserver`, so the
// Autobahn client example can be tested where the real suite cannot run.
// It speaks the same URL protocol (getCaseCount, runCase?case=i&agent=A,
// updateReports?agent=A) and plays a catalogue of cases numbered like
// Autobahn's. It sits on raw `Deno.listen` and drives the engine by hand,
// because several cases must put bytes on the wire that no well-behaved
// driver would send.
import * as ws from "../mod.ts";
import { PerMessageDeflate, type PerMessageDeflateOptions } from "../permessage_deflate.ts";
import { concatAll } from "./_util.ts";

/** What one case found. */
export interface CaseResult {
  id: string;
  passed: boolean;
  detail: string;
}

/** A message, or a control frame, as the fake sees it arrive. */
type Incoming =
  | { kind: "text"; data: string }
  | { kind: "binary"; data: Uint8Array }
  | { kind: "ping" | "pong"; payload: Uint8Array }
  | { kind: "close"; code: number; reason: string };

// Bounds every wait of a case, so a client that hangs fails the case instead
// of the test.
const STEP_TIMEOUT = 5_000;

const encoder = new TextEncoder();

/** One TCP connection driven through a server-side engine. */
class Peer {
  readonly conn: Deno.Conn;
  readonly engine = new ws.WSConnection(ws.ConnectionType.SERVER, {
    limits: { maxMessageSize: 64 << 20 },
  });
  #pending: ws.Event[] = [];
  #parts: (string | Uint8Array)[] = [];
  #ended = false;
  #buffer = new Uint8Array(1 << 16);

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) written += await this.conn.write(bytes.subarray(written));
  }

  /** The next engine event, reading as needed; `null` once the stream ended. */
  async event(ms = STEP_TIMEOUT): Promise<ws.Event | null> {
    const deadline = Date.now() + ms;
    while (this.#pending.length === 0) {
      if (this.#ended) return null;
      const n = await withTimeout(this.conn.read(this.#buffer), deadline - Date.now());
      if (n === null) {
        this.#ended = true;
        this.engine.receiveData(null);
      } else {
        this.engine.receiveData(this.#buffer.slice(0, n));
      }
      this.#pending.push(...this.engine.events());
    }
    return this.#pending.shift()!;
  }

  /** The next whole message or control frame. */
  async next(ms = STEP_TIMEOUT): Promise<Incoming> {
    for (;;) {
      const event = await this.event(ms);
      if (event === null) throw new Error("the client dropped the connection");
      if (event instanceof ws.TextMessage || event instanceof ws.BytesMessage) {
        this.#parts.push(event.data);
        if (!event.messageFinished) continue;
        const parts = this.#parts;
        this.#parts = [];
        if (event instanceof ws.TextMessage) return { kind: "text", data: parts.join("") };
        return { kind: "binary", data: concatAll(parts as Uint8Array[]) };
      }
      if (event instanceof ws.Ping) return { kind: "ping", payload: event.payload.slice() };
      if (event instanceof ws.Pong) return { kind: "pong", payload: event.payload.slice() };
      if (event instanceof ws.CloseConnection) {
        return { kind: "close", code: event.code, reason: event.reason };
      }
      throw new Error(`unexpected ${event.constructor.name}`);
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // the client got there first
    }
  }
}

/** How a case's connection is set up and what it plays. */
interface Case {
  id: string;
  description: string;
  /** Server-side permessage-deflate options, when the case negotiates it. */
  deflate?: PerMessageDeflateOptions;
  /** Answer the handshake with garbage instead of a 101. */
  garbageHandshake?: boolean;
  /**
   * Play the case on an open connection; return why it failed, or null.
   * `standardClose` (the default) then runs a 1000 closing handshake.
   */
  play(peer: Peer): Promise<string | null>;
  standardClose?: boolean;
}

// Send messages, expect each one back with its type.
function echoCase(
  id: string,
  description: string,
  messages: readonly (string | Uint8Array)[],
  deflate?: PerMessageDeflateOptions,
): Case {
  return {
    id,
    description,
    ...(deflate === undefined ? {} : { deflate }),
    async play(peer) {
      if (deflate !== undefined) {
        if (peer.engine.extensions.length === 0) return "permessage-deflate was not negotiated";
      }
      // Send everything first, as the fuzzer does, then check the echoes.
      for (const message of messages) {
        const bytes = peer.engine.send(
          typeof message === "string"
            ? new ws.TextMessage({ data: message })
            : new ws.BytesMessage({ data: message }),
        );
        if (deflate !== undefined && message.length >= 64 && (bytes[0]! & 0x40) === 0) {
          return "the fake failed to compress a message";
        }
        await peer.write(bytes);
      }
      for (const [i, message] of messages.entries()) {
        const got = await peer.next(STEP_TIMEOUT * 2);
        const problem = compareEcho(message, got);
        if (problem !== null) return `message ${i}: ${problem}`;
      }
      return null;
    },
  };
}

function compareEcho(sent: string | Uint8Array, got: Incoming): string | null {
  if (typeof sent === "string") {
    if (got.kind !== "text") return `expected a text echo, got ${got.kind}`;
    if (got.data !== sent) return `text echo differs (${got.data.length} vs ${sent.length} chars)`;
    return null;
  }
  if (got.kind !== "binary") return `expected a binary echo, got ${got.kind}`;
  if (!equalBytes(got.data, sent)) {
    return `binary echo differs (${got.data.length} vs ${sent.length} bytes)`;
  }
  return null;
}

// The client must fail the connection with `code` after a protocol error.
function failCase(id: string, description: string, frame: Uint8Array, code: number): Case {
  return {
    id,
    description,
    standardClose: false,
    async play(peer) {
      await peer.write(frame);
      const got = await peer.next();
      if (got.kind !== "close") return `expected a close, got ${got.kind}`;
      if (got.code !== code) return `expected close ${code}, got ${got.code}`;
      return null;
    },
  };
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

const CHAT = "The quick brown fox jumps over the lazy dog; ";

/** The catalogue, in `runCase` order (case=1 is the first). */
export const CASES: readonly Case[] = [
  echoCase("1.1.1", "text message, payload length 0", [""]),
  echoCase("1.1.2", "text message, payload length 125", ["*".repeat(125)]),
  echoCase("1.2.1", "binary message, payload length 0", [new Uint8Array(0)]),
  echoCase("1.2.2", "binary message, payload length 125", [pattern(125, 1)]),
  echoCase("1.2.3", "binary message, payload length 126", [pattern(126, 2)]),
  echoCase("1.2.6", "binary message, payload length 65535", [pattern(65535, 3)]),
  echoCase("1.2.7", "binary message, payload length 65536", [pattern(65536, 4)]),
  {
    id: "2.2",
    description: "ping with a small text payload, answered by a pong",
    async play(peer) {
      const payload = encoder.encode("Hello, world!");
      await peer.write(peer.engine.send(new ws.Ping({ payload })));
      const got = await peer.next();
      if (got.kind !== "pong") return `expected a pong, got ${got.kind}`;
      if (!equalBytes(got.payload, payload)) return "the pong does not echo the ping's payload";
      return null;
    },
  },
  failCase(
    "3.1",
    "text message with RSV1 set, no extension negotiated",
    new Uint8Array([0xc1, 0x02, 0x68, 0x69]),
    1002,
  ),
  failCase(
    "4.1.1",
    "frame with the reserved non-control opcode 3",
    new Uint8Array([0x83, 0x00]),
    1002,
  ),
  {
    id: "0.1.1",
    description: "not in Autobahn: the handshake is answered with garbage; the run must go on",
    garbageHandshake: true,
    play: () => Promise.resolve(null),
  },
  {
    id: "5.6",
    description: "text message in 2 fragments, a ping with payload between them",
    async play(peer) {
      const { engine } = peer;
      const ping = encoder.encode("ping payload");
      await peer.write(
        concatAll([
          engine.send(new ws.TextMessage({ data: "fragment1", messageFinished: false })),
          engine.send(new ws.Ping({ payload: ping })),
          engine.send(new ws.TextMessage({ data: "fragment2" })),
        ]),
      );
      const pong = await peer.next();
      if (pong.kind !== "pong" || !equalBytes(pong.payload, ping)) {
        return `expected the pong first, got ${pong.kind}`;
      }
      return compareEcho("fragment1fragment2", await peer.next());
    },
  },
  {
    id: "6.4.1",
    description: "valid UTF-8 split inside a code point across fragments",
    async play(peer) {
      // "κόσμε" cut in the middle of a two-byte sequence: the client must
      // not judge a fragment on its own.
      const bytes = encoder.encode("Hello-µ@ßöäüàá-UTF-8!! κόσμε");
      const cut = bytes.length - 3;
      await peer.write(
        concatAll([
          rawFrame(0x01, bytes.subarray(0, cut), false),
          rawFrame(0x00, bytes.subarray(cut), true),
        ]),
      );
      return compareEcho("Hello-µ@ßöäüàá-UTF-8!! κόσμε", await peer.next());
    },
  },
  failCase(
    "6.3.1",
    "text message with invalid UTF-8",
    // Autobahn's payload: "κόσμε" then a UTF-16 surrogate (ED A0 80), then "edited".
    rawFrame(0x01, hex("cebae1bdb9cf83cebcceb5eda080656469746564"), true),
    1007,
  ),
  {
    id: "0.2.1",
    description:
      "not in Autobahn: a text message and one with invalid UTF-8 in one write; the first is echoed before the 1007",
    standardClose: false,
    async play(peer) {
      await peer.write(
        concatAll([
          peer.engine.send(new ws.TextMessage({ data: "valid" })),
          rawFrame(0x01, hex("cebae1bdb9cf83cebcceb5eda080"), true),
        ]),
      );
      const problem = compareEcho("valid", await peer.next());
      if (problem !== null) return problem;
      const got = await peer.next();
      if (got.kind !== "close") return `expected a close, got ${got.kind}`;
      if (got.code !== 1007) return `expected close 1007, got ${got.code}`;
      return null;
    },
  },
  {
    id: "7.7.10",
    description: "close with the valid code 3000, echoed",
    standardClose: false,
    async play(peer) {
      await peer.write(peer.engine.send(new ws.CloseConnection({ code: 3000, reason: "bye" })));
      const got = await peer.next();
      if (got.kind !== "close") return `expected a close, got ${got.kind}`;
      if (got.code !== 3000) return `expected the close code 3000 echoed, got ${got.code}`;
      return null;
    },
  },
  echoCase("9.1.3", "text message of 1 MiB", ["*".repeat(1 << 20)]),
  echoCase("9.2.4", "binary message of 4 MiB", [pattern(4 << 20, 5)]),
  echoCase(
    "12.1.3",
    "50 compressed text messages of 64+ bytes, default offer",
    Array.from({ length: 50 }, (_, i) => `${i}: ${CHAT.repeat(2)}`),
    {},
  ),
  echoCase(
    "12.2.5",
    "compressed binary messages of 16 KiB, default offer",
    [pattern(16384, 6), new Uint8Array(16384).fill(7)],
    {},
  ),
  echoCase(
    "13.3.1",
    "compressed messages, the client limited to a 9-bit window without context takeover",
    Array.from({ length: 20 }, (_, i) => CHAT.repeat(5 + i)),
    { clientMaxWindowBits: 9, clientNoContextTakeover: true, serverMaxWindowBits: 9 },
  ),
];

/** A running fake fuzzing server. */
export interface FakeFuzzingServer extends AsyncDisposable {
  /** The port listened on (127.0.0.1). */
  readonly port: number;
  /** The result of each case run, by its 1-based index. */
  readonly results: ReadonlyMap<number, CaseResult>;
  /** The agents whose reports were asked for. */
  readonly reports: readonly string[];
  /** Stop listening and wait for every connection to end. */
  close(): Promise<void>;
}

/**
 * Start the fake on 127.0.0.1 and a free port.
 *
 * @returns The running server.
 */
export function startFakeFuzzingServer(): FakeFuzzingServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const results = new Map<number, CaseResult>();
  const reports: string[] = [];
  const tasks = new Set<Promise<void>>();
  const peers = new Set<Peer>();

  const acceptLoop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // closed
      }
      const peer = new Peer(conn);
      peers.add(peer);
      const task = handle(peer, results, reports)
        .catch(() => {})
        .finally(() => {
          peer.close();
          peers.delete(peer);
          tasks.delete(task);
        });
      tasks.add(task);
    }
  })();

  const close = async (): Promise<void> => {
    try {
      listener.close();
    } catch {
      // already closed
    }
    await acceptLoop;
    for (const peer of peers) peer.close();
    await Promise.allSettled([...tasks]);
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    results,
    reports,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function handle(
  peer: Peer,
  results: Map<number, CaseResult>,
  reports: string[],
): Promise<void> {
  const request = await peer.event();
  if (!(request instanceof ws.Request)) return;
  const url = new URL(request.target, "ws://fuzzer");
  const offersDeflate = request.extensions.some((offer) =>
    typeof offer === "string" && offer.trim().startsWith("permessage-deflate")
  );

  if (url.pathname === "/getCaseCount") {
    await peer.write(peer.engine.send(new ws.AcceptConnection()));
    await peer.write(peer.engine.send(new ws.TextMessage({ data: String(CASES.length) })));
    await closeNormally(peer);
    return;
  }
  if (url.pathname === "/updateReports") {
    reports.push(url.searchParams.get("agent") ?? "");
    await peer.write(peer.engine.send(new ws.AcceptConnection()));
    await closeNormally(peer);
    return;
  }
  if (url.pathname !== "/runCase") {
    await peer.write(peer.engine.send(new ws.RejectConnection({ statusCode: 404 })));
    return;
  }

  const index = Number(url.searchParams.get("case"));
  const testCase = CASES[index - 1];
  if (testCase === undefined) {
    await peer.write(peer.engine.send(new ws.RejectConnection({ statusCode: 404 })));
    return;
  }
  const record = (detail: string | null): void => {
    const agent = url.searchParams.get("agent");
    if (detail === null && agent === null) detail = "no agent in the runCase URL";
    results.set(index, { id: testCase.id, passed: detail === null, detail: detail ?? "ok" });
  };

  if (testCase.garbageHandshake === true) {
    record(null);
    await peer.write(encoder.encode("HTTP/1.1 200 Banana\r\nX-Fuzz: \x01\x02\r\n\r\n\x00\xff"));
    return;
  }
  if (testCase.deflate !== undefined && !offersDeflate) {
    record("the client did not offer permessage-deflate");
    await peer.write(peer.engine.send(new ws.RejectConnection({ statusCode: 400 })));
    return;
  }
  const extensions = testCase.deflate === undefined
    ? []
    : [new PerMessageDeflate({ threshold: 0, ...testCase.deflate })];
  await peer.write(peer.engine.send(new ws.AcceptConnection({ extensions })));

  let detail: string | null;
  try {
    detail = await testCase.play(peer);
    if (detail === null && testCase.standardClose !== false) {
      detail = await closeNormally(peer);
    }
  } catch (error) {
    detail = error instanceof Error ? error.message : String(error);
  }
  record(detail);
}

// The server's side of a clean close: send 1000, expect 1000 back, then
// close TCP first (RFC 6455 §7.1.1).
async function closeNormally(peer: Peer): Promise<string | null> {
  await peer.write(peer.engine.send(new ws.CloseConnection({ code: 1000 })));
  for (;;) {
    const got = await peer.next();
    // Messages the client sent before it saw our close are fine.
    if (got.kind === "close") {
      return got.code === 1000 ? null : `expected close 1000 back, got ${got.code}`;
    }
  }
}

// An unmasked server frame, built by hand so the catalogue may break rules.
function rawFrame(opcode: number, payload: Uint8Array, fin: boolean): Uint8Array {
  const head = payload.length < 126 ? 2 : payload.length < 65536 ? 4 : 10;
  const frame = new Uint8Array(head + payload.length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (head === 2) frame[1] = payload.length;
  else if (head === 4) {
    frame[1] = 126;
    new DataView(frame.buffer).setUint16(2, payload.length);
  } else {
    frame[1] = 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(payload.length));
  }
  frame.set(payload, head);
  return frame;
}

function hex(digits: string): Uint8Array {
  return new Uint8Array(digits.match(/../g)!.map((pair) => parseInt(pair, 16)));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the client sent nothing within ${ms} ms`)),
        Math.max(0, ms),
      );
    }),
  ]).finally(() => clearTimeout(timer));
}
