// Differential testing against wsproto (Python, the library this module
// follows): a corpus of byte streams, hand-written edge cases and seeded
// random ones, is fed to wsproto (tests/wsproto_peer.py, one process for the
// whole file) and to this module in the same chunks, and the event sequences
// (type, data, flags, close code), the states and the bytes each side would
// send in answer (pongs, closes, the 101 response) are compared.
//
// Where the two disagree and RFC 6455 sides with us, the difference is named
// by a rule below, with its RFC clause, and every rule must still be seen at
// least once (so the list stays true). Anything else is a failure.
//
// The wire protocol with the peer: one JSON case per line on stdin,
//   { id, role: "server" | "client", mode: "frames" | "handshake",
//     stream: hex, cuts: [chunk lengths], eof, answer,
//     request?: { host, target, subprotocols }, subprotocol?, rawTrailing? }
// and one JSON line per case on stdout,
//   { id, chunks: [{ events: [...], state }], eof: { events, state } | null }.
// A client handshake's stream holds a 28-byte placeholder that each side
// replaces with the accept token of its own Sec-WebSocket-Key.
import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import { bytes, concat, prng, rawFrame, utf8 } from "./_util.ts";

const PYTHON = "/usr/bin/python3";
const PEER = new URL("./wsproto_peer.py", import.meta.url);
const PLACEHOLDER = "@@@@@@@@@@ACCEPT@@@@@@@@@@@@";
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ---------------------------------------------------------------- the peer

function wsprotoAvailable(): boolean {
  try {
    const out = new Deno.Command(PYTHON, {
      args: ["-c", "import wsproto, h11; assert wsproto.__version__.startswith('1.')"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success;
  } catch {
    return false;
  }
}

const AVAILABLE = wsprotoAvailable();
const IN_CI = Deno.env.get("CI") === "true";
if (!AVAILABLE && !IN_CI) {
  // deno-lint-ignore no-console
  console.warn(
    "\n!!! tests/wsproto_diff_test.ts SKIPPED: /usr/bin/python3 with wsproto 1.x not found " +
      "(apt-get install python3-wsproto). Under CI=true this is a failure. !!!\n",
  );
}

// deno-lint-ignore no-explicit-any
type Json = any;

interface Case {
  id: number;
  name: string;
  role: "server" | "client";
  mode: "frames" | "handshake";
  stream: Uint8Array;
  cuts: number[];
  eof: boolean;
  answer: boolean;
  request?: { host: string; target: string; subprotocols: string[] };
  subprotocol?: string | null;
  rawTrailing?: boolean;
  /** Rules this case is written to show (hand-written cases only). */
  expect?: string;
}

interface Step {
  events: Json[];
  state: string;
}

interface Outcome {
  chunks: Step[];
  eof: Step | null;
  crash?: string;
}

const toHex = (data: Uint8Array): string =>
  Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");

/** What the wsproto peer reads of a case, one JSON line each. */
function peerInput(c: Case) {
  return {
    id: c.id,
    role: c.role,
    mode: c.mode,
    stream: toHex(c.stream),
    cuts: c.cuts,
    eof: c.eof,
    answer: c.answer,
    request: c.request,
    subprotocol: c.subprotocol ?? null,
    rawTrailing: c.rawTrailing ?? false,
  };
}

async function runWsproto(cases: readonly Case[]): Promise<Map<number, Outcome>> {
  const child = new Deno.Command(PYTHON, {
    args: [PEER.pathname],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  if (Deno.env.get("DUMP")) {
    Deno.writeTextFileSync(
      "/tmp/cases.jsonl",
      cases.map((c) => JSON.stringify({ ...peerInput(c), name: c.name })).join("\n"),
    );
  }
  const input = cases.map((c) => JSON.stringify(peerInput(c))).join("\n") + "\n";
  const [, output] = await Promise.all([
    writer.write(new TextEncoder().encode(input)).then(() => writer.close()),
    child.output(),
  ]);
  if (!output.success) {
    throw new Error(`wsproto peer failed:\n${new TextDecoder().decode(output.stderr)}`);
  }
  const results = new Map<number, Outcome>();
  for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
    if (line.trim() === "") continue;
    const result = JSON.parse(line);
    results.set(result.id, result);
  }
  return results;
}

// ------------------------------------------------------------ our side

function parseFrames(data: Uint8Array): Json[] {
  const frames: Json[] = [];
  let at = 0;
  while (at < data.length) {
    const b0 = data[at]!;
    const b1 = data[at + 1]!;
    let length = b1 & 0x7f;
    at += 2;
    if (length === 126) {
      length = (data[at]! << 8) | data[at + 1]!;
      at += 2;
    } else if (length === 127) {
      length = new DataView(data.buffer, data.byteOffset + at, 8).getUint32(4);
      at += 8;
    }
    let key: Uint8Array | null = null;
    if (b1 & 0x80) {
      key = data.slice(at, at + 4);
      at += 4;
    }
    const payload = data.slice(at, at + length);
    at += length;
    if (key !== null) { for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!; }
    frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv: (b0 >> 4) & 7,
      opcode: b0 & 0x0f,
      masked: key !== null,
      payload: toHex(payload),
    });
  }
  return frames;
}

function parseHttp(data: Uint8Array): Json {
  const text = new TextDecoder("latin1").decode(data);
  const lines = text.split("\r\n\r\n", 1)[0]!.split("\r\n");
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return {
    status: Number(lines[0]!.split(" ")[1]),
    accept: headers.get("sec-websocket-accept") ?? null,
    upgrade: (headers.get("upgrade") ?? "").toLowerCase(),
    connection: (headers.get("connection") ?? "").toLowerCase(),
    protocol: headers.get("sec-websocket-protocol") ?? null,
  };
}

function plain(event: ws.Event): Json {
  if (event instanceof ws.TextMessage) {
    return { t: "text", data: event.data, ff: event.frameFinished, mf: event.messageFinished };
  }
  if (event instanceof ws.BytesMessage) {
    return {
      t: "bytes",
      data: toHex(event.data),
      ff: event.frameFinished,
      mf: event.messageFinished,
    };
  }
  if (event instanceof ws.Ping) return { t: "ping", payload: toHex(event.payload) };
  if (event instanceof ws.Pong) return { t: "pong", payload: toHex(event.payload) };
  if (event instanceof ws.CloseConnection) {
    return { t: "close", code: event.code, reason: event.reason };
  }
  if (event instanceof ws.Request) {
    return {
      t: "request",
      host: event.host,
      target: event.target,
      subprotocols: [...event.subprotocols],
      extensions: event.extensions.map(String),
    };
  }
  if (event instanceof ws.AcceptConnection) return { t: "accept", subprotocol: event.subprotocol };
  if (event instanceof ws.RejectConnection) {
    return { t: "reject", status: event.statusCode, hasBody: event.hasBody };
  }
  if (event instanceof ws.RejectData) {
    return { t: "rejectdata", data: toHex(event.data), finished: event.bodyFinished };
  }
  return { t: "unknown" };
}

async function acceptTokenOf(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

function replaceAll(stream: Uint8Array, from: Uint8Array, to: Uint8Array): Uint8Array {
  const out = stream.slice();
  outer: for (let i = 0; i + from.length <= out.length; i++) {
    for (let j = 0; j < from.length; j++) if (out[i + j] !== from[j]) continue outer;
    out.set(to, i);
  }
  return out;
}

async function runOurs(c: Case): Promise<Outcome> {
  const type = c.role === "server" ? ws.ConnectionType.SERVER : ws.ConnectionType.CLIENT;
  let stream = c.stream;
  let conn: ws.Connection | ws.WSConnection;
  if (c.mode === "handshake") {
    const wsc = new ws.WSConnection(type);
    if (c.request !== undefined) {
      const sent = new TextDecoder().decode(wsc.send(new ws.Request(c.request)));
      const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(sent)![1]!;
      stream = replaceAll(stream, utf8(PLACEHOLDER), utf8(await acceptTokenOf(key)));
    }
    conn = wsc;
  } else {
    conn = new ws.Connection(type);
  }
  const out: Outcome = { chunks: [], eof: null };
  let stopped = false;
  let failed = false;
  const drain = (events: Json[]) => {
    for (const event of conn.events()) {
      const item = plain(event);
      events.push(item);
      if (!c.answer) continue;
      const state = conn.state;
      if (event instanceof ws.Ping && state === ws.ConnectionState.OPEN) {
        item.answer = parseFrames(conn.send(event.response()));
      } else if (
        event instanceof ws.CloseConnection && event.code !== 1006 &&
        (state === ws.ConnectionState.OPEN || state === ws.ConnectionState.REMOTE_CLOSING)
      ) {
        item.answer = parseFrames(conn.send(event.response()));
        stopped = true;
      } else if (event instanceof ws.Request) {
        item.answer = parseHttp(
          conn.send(new ws.AcceptConnection({ subprotocol: c.subprotocol ?? null })),
        );
      }
    }
  };
  const step = (data: Uint8Array | null): Step => {
    const events: Json[] = [];
    try {
      conn.receiveData(data);
      drain(events);
    } catch (error) {
      if (error instanceof ws.RemoteProtocolError) {
        const hint = error.eventHint;
        events.push({
          t: "remote-error",
          status: hint instanceof ws.RejectConnection ? hint.statusCode : null,
        });
        failed = data !== null;
      } else if (error instanceof ws.LocalProtocolError) {
        events.push({ t: "local-error" });
      } else {
        throw error;
      }
      stopped = true;
    }
    return { events, state: conn.state };
  };
  let at = 0;
  for (const size of c.cuts) {
    // A fresh copy per chunk: the connection owns (and unmasks) what it gets.
    const chunk = stream.slice(at, at + size);
    at += size;
    if (stopped) break;
    out.chunks.push(step(chunk));
  }
  // After a handshake error the connection is dropped: no end of stream to feed.
  if (c.eof && !failed) out.eof = step(null);
  return out;
}

// ------------------------------------------------------- the comparison

/**
 * The differences RFC 6455 sides with us on. Each one is applied only where
 * its shape matches, and must be seen at least once in the corpus.
 */
const RULES = {
  "close-1014":
    "We accept close code 1014 (Bad Gateway), registered in the IANA WebSocket Close Code " +
    "Number registry that RFC 6455 §7.4.2/§11.7 makes the authority for 1000-2999; " +
    "wsproto 1.2 fails the connection with 1002 (its CloseReason enum stops at 1013).",
  "state-after-failure":
    "After a protocol error we move to REMOTE_CLOSING (CLOSED once our close is sent): " +
    "RFC 6455 §7.1.7 fails the connection, so nothing more is read; wsproto stays OPEN " +
    "(LOCAL_CLOSING once its close is sent).",
  "eof-after-closed":
    "End of stream after a close frame arrived (REMOTE_CLOSING or CLOSED) yields nothing: " +
    "the close code was already reported, and 1006 is for a connection closed without a " +
    "Close frame (RFC 6455 §7.1.5, §7.4.1); wsproto yields another CloseConnection(1006).",
  "utf8-fail-fast":
    "Invalid UTF-8 is reported at the first byte that makes the text invalid (RFC 6455 §8.1 " +
    "'MUST Fail the WebSocket Connection', Autobahn 6.4.x): a surrogate prefix ED A0-BF is " +
    "already invalid, where CPython's incremental decoder waits for the third byte.",
  "frame-size-limit":
    "A frame longer than maxFrameSize (64 MiB) fails with 1009 at its header (RFC 6455 §10.4: " +
    "implementations SHOULD limit frame and message sizes); wsproto has no limit and waits.",
  "reject-status":
    "A bad upgrade request is refused with a more specific status than wsproto's 400: 405 for " +
    "a method other than GET (RFC 9110 §15.5.6), 426 with Sec-WebSocket-Version for a missing " +
    "Upgrade/Connection token (RFC 9110 §15.5.22, RFC 6455 §4.2.2); RFC 6455 §4.2.1 leaves the code open ('such as 400 Bad Request').",
  "bad-key": "A Sec-WebSocket-Key that is not the base64 of 16 bytes is refused with 400 " +
    "(RFC 6455 §4.2.1 item 5); wsproto does not check the key.",
  "request-body": "An upgrade request that announces a body (Content-Length or " +
    "Transfer-Encoding) is refused with 400: the body would come ahead of the frames (RFC 9112 " +
    "§6.3), and Deno.serve refuses it too; wsproto accepts and reads the body as frames.",
  "subprotocol-token": "Subprotocols offered must be unique tokens (RFC 6455 §4.1, §11.3.4), " +
    "else 400: one that is not could be chosen and written back in a 101 no client accepts; " +
    "wsproto passes any element on.",
  "http-1.0": "The upgrade must be an HTTP/1.1 or higher GET (RFC 6455 §4.2.1 item 1, §4.1): " +
    "we refuse HTTP/1.0 with 505 (RFC 9110 §15.6.6); wsproto (through h11) accepts it.",
  "pipelined-frames":
    "Frames pipelined right behind the upgrade request are processed once the server " +
    "accepts (RFC 6455 §4.2.2: the connection is OPEN once the response is sent); " +
    "wsproto 1.2 drops them, since its Connection never gets h11's trailing data.",
  "header-size-limit":
    "A request head over maxHeaderBytes (16 KiB) is refused with 431 (RFC 6585 §5; RFC 9112 " +
    "§2.3 lets a server limit it) however it is chopped; h11 checks its 16 KiB limit only on " +
    "an incomplete head, so wsproto accepts the same head when it arrives in one piece.",
  "client-error-hint":
    "A bad handshake response fails the connection (RFC 6455 §4.1: the client MUST _Fail the " +
    "WebSocket Connection_), so our RemoteProtocolError has no event to answer with; wsproto " +
    "offers a RejectConnection(400) that a client cannot meaningfully send.",
  "reject-empty-body":
    "A rejection with Content-Length: 0 has no body (RFC 9112 §6.3), so we yield " +
    "RejectConnection(hasBody: false) and no RejectData; wsproto says hasBody and yields " +
    "an empty final RejectData.",
} as const;
type Rule = keyof typeof RULES;

interface Verdict {
  rules: Set<Rule>;
  mismatch: string | null;
}

const isClose = (e: Json, code?: number) =>
  e !== undefined && e.t === "close" && (code === undefined || e.code === code);

function sameEvent(ours: Json, theirs: Json): boolean {
  if (ours === undefined || theirs === undefined) return false;
  if (ours.t !== theirs.t) return false;
  if (ours.t === "close") {
    if (ours.code !== theirs.code) return false;
    // Reasons are compared for close frames received; for errors we raise
    // ourselves only the code matters (the texts are each library's own).
    if (!theirs.error && ours.reason !== theirs.reason) return false;
    return sameAnswer(ours.answer, theirs.answer, true);
  }
  if (ours.t === "remote-error") return true; // statuses: see "reject-status"
  const { answer: a, ...restOurs } = ours;
  const { answer: b, ...restTheirs } = theirs;
  if (JSON.stringify(restOurs) !== JSON.stringify(restTheirs)) return false;
  return sameAnswer(a, b, false);
}

function sameAnswer(ours: Json, theirs: Json, closeCodeOnly: boolean): boolean {
  if (ours === undefined || theirs === undefined) return ours === theirs;
  if (!Array.isArray(ours)) return JSON.stringify(ours) === JSON.stringify(theirs);
  if (ours.length !== theirs.length) return false;
  return ours.every((frame: Json, i: number) => {
    const other = theirs[i];
    if (closeCodeOnly && frame.opcode === 8) {
      return frame.fin === other.fin && frame.rsv === other.rsv && frame.opcode === other.opcode &&
        frame.masked === other.masked && frame.payload.slice(0, 4) === other.payload.slice(0, 4);
    }
    return JSON.stringify(frame) === JSON.stringify(other);
  });
}

function flatten(outcome: Outcome): { event: Json; chunk: number }[] {
  const all = outcome.chunks.flatMap((step, chunk) =>
    step.events.map((event) => ({ event, chunk }))
  );
  for (const event of outcome.eof?.events ?? []) all.push({ event, chunk: -1 });
  return all;
}

function compareFrames(ours: Outcome, theirs: Outcome): Verdict {
  const rules = new Set<Rule>();
  let failed = false; // a protocol error was reported (wsproto's error flag)
  const steps = Math.max(ours.chunks.length, theirs.chunks.length);
  for (let i = 0; i < steps; i++) {
    const a = ours.chunks[i];
    const b = theirs.chunks[i];
    if (a === undefined || b === undefined) {
      // One side stopped feeding (after answering a close or an error); the
      // other must have nothing left to say.
      const rest = (a ?? b)!;
      if (rest.events.length === 0) continue;
      return { rules, mismatch: `chunk ${i}: only one side was fed it` };
    }
    for (let k = 0; k < Math.max(a.events.length, b.events.length); k++) {
      const x = a.events[k];
      const y = b.events[k];
      if (sameEvent(x, y)) {
        if (isClose(y) && y.error) failed = true;
        continue;
      }
      const rule = divergence(ours, theirs, i, k);
      if (rule !== null) {
        rules.add(rule);
        return { rules, mismatch: null };
      }
      return {
        rules,
        mismatch: `chunk ${i} event ${k}: ours ${JSON.stringify(x)}, wsproto ${JSON.stringify(y)}`,
      };
    }
    if (a.state !== b.state) {
      const tolerated = failed && (
        (a.state === "REMOTE_CLOSING" && b.state === "OPEN") ||
        (a.state === "CLOSED" && b.state === "LOCAL_CLOSING")
      );
      if (!tolerated) return { rules, mismatch: `chunk ${i}: state ${a.state} vs ${b.state}` };
      rules.add("state-after-failure");
    }
  }
  if ((ours.eof === null) !== (theirs.eof === null)) return { rules, mismatch: "eof" };
  if (ours.eof !== null && theirs.eof !== null) {
    const a = ours.eof.events;
    const b = theirs.eof.events;
    const before = ours.chunks.at(-1)?.state ?? "OPEN";
    if (
      a.length === 0 && b.length === 1 && isClose(b[0], 1006) &&
      (before === "CLOSED" || before === "REMOTE_CLOSING")
    ) {
      rules.add("eof-after-closed");
    } else if (a.length !== b.length || a.some((x, k) => !sameEvent(x, b[k]))) {
      return { rules, mismatch: `eof: ours ${JSON.stringify(a)}, wsproto ${JSON.stringify(b)}` };
    }
    if (ours.eof.state !== theirs.eof.state) {
      return { rules, mismatch: `eof state ${ours.eof.state} vs ${theirs.eof.state}` };
    }
  }
  return { rules, mismatch: null };
}

// At the first differing event (chunk i, event k), is this one of the rules?
function divergence(ours: Outcome, theirs: Outcome, i: number, k: number): Rule | null {
  const x = ours.chunks[i]!.events[k];
  const before = theirs.chunks.slice(0, i).reduce((n, step) => n + step.events.length, 0);
  const restTheirs = flatten(theirs).map(({ event }) => event).slice(before + k);
  const y = restTheirs[0];
  if (isClose(x, 1014) && isClose(y, 1002) && y.error) return "close-1014";
  if (isClose(x, 1007)) {
    // wsproto reports the same invalid text later (or never, if the stream
    // ends first): until then it may hand out text and control frames, but
    // never the end of the message or another close.
    const tail = restTheirs.filter((e) => !(isClose(e, 1007) && e.error) && !isClose(e, 1006));
    if (tail.every((e) => (e.t === "text" && !e.mf) || e.t === "ping" || e.t === "pong")) {
      return "utf8-fail-fast";
    }
  }
  if (isClose(x, 1009)) {
    const tail = restTheirs.filter((e) => !(isClose(e, 1007) && e.error) && !isClose(e, 1006));
    if (tail.every((e) => (e.t === "text" || e.t === "bytes") && !e.ff)) return "frame-size-limit";
  }
  return null;
}

// Handshakes: compared as one sequence, with the body of a rejection merged
// (h11 hands it out in pieces of its own choosing).
function mergeRejects(events: Json[]): Json[] {
  const out: Json[] = [];
  for (const e of events) {
    const last = out.at(-1);
    if (e.t === "rejectdata" && last?.t === "rejectdata") {
      last.data += e.data;
      last.finished = e.finished;
    } else out.push({ ...e });
  }
  return out;
}

function compareHandshake(c: Case, ours: Outcome, theirs: Outcome): Verdict {
  const rules = new Set<Rule>();
  let a = mergeRejects(flatten(ours).map((e) => e.event));
  let b = mergeRejects(flatten(theirs).map((e) => e.event));
  // "eof-after-closed" and "state-after-failure" apply here as after frames.
  if (
    isClose(b.at(-1), 1006) && !isClose(a.at(-1), 1006) &&
    (ours.chunks.at(-1)?.state === "CLOSED")
  ) {
    b = b.slice(0, -1);
    rules.add("eof-after-closed");
  }
  // An empty-bodied rejection: RejectConnection(hasBody) + empty final RejectData.
  const rejectAt = b.findIndex((e) => e.t === "reject");
  if (
    rejectAt >= 0 && b[rejectAt].hasBody && b[rejectAt + 1]?.t === "rejectdata" &&
    b[rejectAt + 1].data === "" && a[rejectAt]?.t === "reject" && !a[rejectAt].hasBody
  ) {
    b = [...b.slice(0, rejectAt), { ...b[rejectAt], hasBody: false }, ...b.slice(rejectAt + 2)];
    rules.add("reject-empty-body");
  }
  if (
    c.expect === "bad-key" || c.expect === "http-1.0" || c.expect === "request-body" ||
    c.expect === "subprotocol-token"
  ) {
    // 400, or 505 (RFC 9110 §15.6.6) for the version.
    const statuses = c.expect === "http-1.0" ? [400, 505] : [400];
    if (
      b[0]?.t === "request" && a.length === 1 && a[0]?.t === "remote-error" &&
      statuses.includes(a[0].status)
    ) {
      rules.add(c.expect);
      return { rules, mismatch: null };
    }
  }
  if (
    a.length === 1 && a[0]?.t === "remote-error" && a[0].status === 431 &&
    (b[0]?.t === "request" || (b[0]?.t === "remote-error" && b[0].status === 400))
  ) {
    rules.add("header-size-limit");
    return { rules, mismatch: null };
  }
  if (c.expect === "pipelined-frames" && a[0]?.t === "request" && b[0]?.t === "request") {
    // wsproto lost the bytes that came with the request (and may then read
    // the rest of the frame as garbage); we must have decoded the frame.
    const early = a.slice(1).filter((e) => e.t === "text").map((e) => e.data).join("");
    if (early === "early" && a.at(-1)?.mf === true) {
      rules.add("pipelined-frames");
      return { rules, mismatch: null };
    }
  }
  if (c.role === "client") {
    // A client fails the connection by dropping it: there is no HTTP answer to send.
    for (const e of b) {
      if (e.t === "remote-error" && e.status === 400) {
        e.status = null;
        rules.add("client-error-hint");
      }
    }
  }
  a = a.map((e) => ({ ...e }));
  for (let k = 0; k < Math.max(a.length, b.length); k++) {
    const x = a[k];
    const y = b[k];
    if (x?.t === "remote-error" && y?.t === "remote-error" && x.status !== y.status) {
      const pair = `${y.status}->${x.status}`;
      if (["400->405", "400->426"].includes(pair)) rules.add("reject-status");
      else return { rules, mismatch: `reject status: ours ${x.status}, wsproto ${y.status}` };
      continue;
    }
    if (!sameEvent(x, y)) {
      return {
        rules,
        mismatch: `event ${k}: ours ${JSON.stringify(x)}, wsproto ${JSON.stringify(y)}`,
      };
    }
  }
  return { rules, mismatch: null };
}

// ------------------------------------------------------------- the corpus

let nextId = 0;

function cutsFor(length: number, style: string, seed: number): number[] {
  if (style === "whole") return length === 0 ? [] : [length];
  if (style === "bytes") return Array.from({ length }, () => 1);
  const random = prng(seed);
  const cuts: number[] = [];
  for (let at = 0; at < length;) {
    const most = style === "small" ? 8 : style === "medium" ? 64 : 200;
    const size = 1 + Math.floor(random() * Math.min(most, length - at));
    cuts.push(size);
    at += size;
  }
  return cuts;
}

/** One stream in several chunkings: whole, byte by byte (short ones), random splits. */
function chopped(base: Omit<Case, "id" | "cuts">, seed: number, byteLimit = 600): Case[] {
  // Pieces of 1-8 bytes for streams up to 16 KiB, 1-64 above (time).
  const styles = ["whole", base.stream.length <= 16384 ? "small" : "medium", "large"];
  if (base.stream.length <= byteLimit) styles.push("bytes");
  return styles.map((style, n) => ({
    ...base,
    name: `${base.name} [${style}]`,
    id: nextId++,
    cuts: cutsFor(base.stream.length, style, seed * 31 + n),
  }));
}

interface FrameSpec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  payload?: Uint8Array;
  lengthForm?: 7 | 16 | 64;
  declaredLength?: number;
  /** Mask (or not) against the role's rule. */
  wrongMask?: boolean;
}

function encode(role: "server" | "client", frames: FrameSpec[], random: () => number): Uint8Array {
  return concat(...frames.map((f) => {
    const masked = (role === "server") !== (f.wrongMask ?? false);
    const key = masked
      ? bytes(...Array.from({ length: 4 }, () => Math.floor(random() * 256)))
      : null;
    const options: Parameters<typeof rawFrame>[0] = { opcode: f.opcode, maskKey: key };
    if (f.fin !== undefined) options.fin = f.fin;
    if (f.rsv !== undefined) options.rsv = f.rsv;
    if (f.payload !== undefined) options.payload = f.payload;
    if (f.lengthForm !== undefined) options.lengthForm = f.lengthForm;
    if (f.declaredLength !== undefined) options.declaredLength = f.declaredLength;
    return rawFrame(options);
  }));
}

const close = (code: number, reason: Uint8Array | string = ""): FrameSpec => ({
  opcode: 8,
  payload: concat(
    bytes(code >> 8, code & 0xff),
    typeof reason === "string" ? utf8(reason) : reason,
  ),
});
const text = (data: string | Uint8Array, fin = true, opcode = 1): FrameSpec => ({
  opcode,
  fin,
  payload: typeof data === "string" ? utf8(data) : data,
});
const binary = (data: Uint8Array, fin = true, opcode = 2): FrameSpec => ({
  opcode,
  fin,
  payload: data,
});
const ping = (payload: Uint8Array = new Uint8Array(0)): FrameSpec => ({ opcode: 9, payload });
const pong = (payload: Uint8Array = new Uint8Array(0)): FrameSpec => ({ opcode: 10, payload });
const filled = (n: number, seed = n) => {
  const random = prng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
};

/** The hand-written frame cases, each for both roles. */
function handFrameCases(): Case[] {
  const specs: [string, FrameSpec[], { eof?: boolean; answer?: boolean }?][] = [
    ["text Hello", [text("Hello")]],
    ["binary", [binary(bytes(0, 1, 2, 255))]],
    ["empty text and empty binary", [text(""), binary(new Uint8Array(0))]],
    ["125, 126, 65535 and 65536 bytes", [
      binary(filled(125)),
      binary(filled(126)),
      binary(filled(65535)),
      binary(filled(65536)),
    ]],
    ["fragmented text with a ping and a pong between", [
      text("Hel", false),
      ping(utf8("p")),
      text("lo ", false, 0),
      pong(utf8("q")),
      text("world", true, 0),
    ]],
    ["multibyte text split inside code points across fragments", [
      text(utf8("κόσμε𝄞").slice(0, 3), false),
      text(utf8("κόσμε𝄞").slice(3, 12), false, 0),
      text(utf8("κόσμε𝄞").slice(12), true, 0),
    ]],
    ["empty fragments", [
      text("", false),
      text("", false, 0),
      text("x", false, 0),
      text("", true, 0),
    ]],
    ["a byte-order mark is text, not stripped", [text("\uFEFFabc"), close(1000, "\uFEFFbom")]],
    ["NUL and U+10FFFF in text", [text("\u0000\u{10FFFF}")]],
    ["close without payload (1005)", [{ opcode: 8 }]],
    ["close 1000 with a reason", [close(1000, "bye")]],
    ["close with a 123-byte reason", [close(1001, "é".repeat(61) + "x")]],
    ["close with a one-byte payload", [{ opcode: 8, payload: bytes(3) }]],
    ["close with invalid UTF-8 in its reason", [close(1000, bytes(0x61, 0xff))]],
    ["close with a surrogate in its reason", [close(1000, bytes(0xed, 0xa0, 0x80))]],
    ["close then more frames", [close(1000, "x"), text("after"), ping()]],
    ["close then EOF", [close(1000)], { eof: true }],
    ["close, unanswered, then data and EOF", [close(3000, "r"), text("after")], {
      eof: true,
      answer: false,
    }],
    ["EOF inside a frame", [text("abc")], { eof: true }],
    ["ping of 125 bytes", [ping(filled(125))]],
    ["ping of 126 bytes", [{ opcode: 9, payload: filled(126), lengthForm: 16 }]],
    ["ping declaring 126 in the 7-bit length", [{
      opcode: 9,
      payload: filled(126),
      lengthForm: 7,
      declaredLength: 126,
    }]],
    ["fragmented ping", [{ opcode: 9, fin: false, payload: utf8("x") }]],
    ["fragmented close", [{ opcode: 8, fin: false }]],
    ["unsolicited pong", [pong(utf8("hb")), text("ok")]],
    ["length 5 in the 16-bit form", [{ opcode: 1, payload: utf8("Hello"), lengthForm: 16 }]],
    ["length 200 in the 64-bit form", [{ opcode: 2, payload: filled(200), lengthForm: 64 }]],
    ["64-bit length with the top bit set", [{
      opcode: 2,
      payload: filled(4),
      lengthForm: 64,
      declaredLength: 2 ** 63,
    }]],
    ["64-bit length over the frame limit", [{
      opcode: 2,
      payload: filled(300),
      lengthForm: 64,
      declaredLength: 2 ** 40,
    }], { eof: true }],
    ["continuation without a start", [text("x", true, 0)]],
    ["new text frame inside a fragmented message", [text("a", false), text("b")]],
    ["new binary frame inside a fragmented text message", [text("a", false), binary(bytes(1))]],
    ["new empty text frame inside a fragmented message", [text("a", false), text("")]],
    ["invalid UTF-8: 0xff", [text(bytes(0x61, 0xff, 0x62))]],
    ["invalid UTF-8: overlong C0 80", [text(bytes(0xc0, 0x80))]],
    ["invalid UTF-8: surrogate ED A0 80", [text(bytes(0x61, 0xed, 0xa0, 0x80))]],
    ["invalid UTF-8: surrogate prefix at the end of a fragment", [
      text(bytes(0x61, 0xed, 0xa0), false),
      ping(),
      text(bytes(0x80), true, 0),
    ]],
    ["invalid UTF-8: above U+10FFFF", [text(bytes(0xf4, 0x90, 0x80, 0x80))]],
    ["invalid UTF-8: truncated at the end of the message", [text(bytes(0x61, 0xe2, 0x82))]],
    ["invalid UTF-8 across fragments", [text(bytes(0xce), false), text(bytes(0x41), true, 0)]],
    ["a text message may end with a code point split across frames", [
      text(bytes(0xe2), false),
      text(bytes(0x82), false, 0),
      text(bytes(0xac), true, 0),
    ]],
    ["wrong masking", [{ ...text("x"), wrongMask: true }]],
  ];
  for (const opcode of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
    specs.push([`reserved opcode ${opcode}`, [{ opcode, payload: utf8("x") }]]);
  }
  for (const rsv of [1, 2, 4, 7]) {
    specs.push([`RSV ${rsv} on text`, [{ ...text("x"), rsv }]]);
    specs.push([`RSV ${rsv} on ping`, [{ ...ping(), rsv }]]);
  }
  const codes = [0, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011];
  codes.push(1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 3000, 3999, 4000, 4999, 5000, 65535);
  for (const code of codes) {
    specs.push([`close code ${code}`, [close(code, "r")], { eof: true }]);
  }
  const cases: Case[] = [];
  let seed = 1;
  for (const role of ["server", "client"] as const) {
    for (const [name, frames, options] of specs) {
      const stream = encode(role, frames, prng(seed));
      cases.push(...chopped({
        name: `${role}: ${name}`,
        role,
        mode: "frames",
        stream,
        eof: options?.eof ?? false,
        answer: options?.answer ?? true,
      }, seed++));
    }
  }
  return cases;
}

const ALPHABET = ["a", "b", " ", "é", "κ", "€", "𝄞", "\uFEFF", "\u0000", "z"];

function randomMessageFrames(random: () => number): FrameSpec[] {
  const isText = random() < 0.5;
  const r = random();
  const size = r < 0.4
    ? Math.floor(random() * 20)
    : r < 0.8
    ? Math.floor(random() * 200)
    : r < 0.97
    ? 100 + Math.floor(random() * 3000)
    : 65000 + Math.floor(random() * 2000);
  let payload: Uint8Array;
  if (isText) {
    const parts: string[] = [];
    for (let length = 0; length < size;) {
      const char = ALPHABET[Math.floor(random() * ALPHABET.length)]!;
      parts.push(char);
      length += utf8(char).length;
    }
    payload = utf8(parts.join(""));
  } else {
    payload = Uint8Array.from({ length: size }, () => Math.floor(random() * 256));
  }
  const pieces = 1 + Math.floor(random() * 4);
  const splits = Array.from(
    { length: pieces - 1 },
    () => Math.floor(random() * (payload.length + 1)),
  )
    .sort((x, y) => x - y);
  const frames: FrameSpec[] = [];
  let from = 0;
  [...splits, payload.length].forEach((to, n) => {
    frames.push({
      opcode: n === 0 ? (isText ? 1 : 2) : 0,
      fin: n === pieces - 1,
      payload: payload.slice(from, to),
    });
    from = to;
    if (n < pieces - 1 && random() < 0.3) {
      const control = Uint8Array.from(
        { length: random() < 0.1 ? 125 : Math.floor(random() * 10) },
        () => Math.floor(random() * 256),
      );
      frames.push(random() < 0.6 ? ping(control) : pong(control));
    }
  });
  return frames;
}

function randomValidFrames(random: () => number): FrameSpec[] {
  const frames: FrameSpec[] = [];
  const messages = 1 + Math.floor(random() * 4);
  for (let i = 0; i < messages; i++) {
    if (random() < 0.2) frames.push(ping(Uint8Array.from({ length: 3 }, () => 7)));
    frames.push(...randomMessageFrames(random));
  }
  if (random() < 0.5) {
    const codes = [1000, 1001, 1003, 1008, 1011, 3000, 4999];
    const code = random() < 0.7
      ? codes[Math.floor(random() * codes.length)]!
      : 3000 + Math.floor(random() * 2000);
    frames.push(random() < 0.15 ? { opcode: 8 } : close(code, random() < 0.5 ? "" : "bye é"));
    if (random() < 0.3) frames.push(text("after close"));
  }
  return frames;
}

const BAD_UTF8 = [
  [0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0x80],
  [0xe2, 0x82],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xe0, 0x9f, 0x80],
];
const BAD_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535];

/** Mutate a valid frame list (or its bytes): one fault per stream. */
function mutate(
  role: "server" | "client",
  frames: FrameSpec[],
  random: () => number,
): { stream: Uint8Array; kind: string } {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const at = Math.floor(random() * frames.length);
  const frame = { ...frames[at]! };
  const kinds = [
    "bitflip",
    "headerflip",
    "truncate",
    "rsv",
    "opcode",
    "badlength",
    "badutf8",
    "badclose",
    "longcontrol",
    "fragcontrol",
    "mask",
    "orphan",
    "interleave",
  ];
  const kind = pick(kinds);
  const replace = (
    ...with_: FrameSpec[]
  ) => [...frames.slice(0, at), ...with_, ...frames.slice(at + 1)];
  switch (kind) {
    case "bitflip":
    case "truncate":
    case "headerflip": {
      const stream = encode(role, frames, random);
      if (kind === "truncate") {
        return { stream: stream.slice(0, Math.floor(random() * stream.length)), kind };
      }
      let position = Math.floor(random() * stream.length);
      if (kind === "headerflip") {
        // The first two bytes of a frame.
        const before = encode(role, frames.slice(0, at), prng(0)).length;
        position = before + Math.floor(random() * 2);
      }
      stream[position]! ^= 1 << Math.floor(random() * 8);
      return { stream, kind };
    }
    case "rsv":
      frame.rsv = 1 + Math.floor(random() * 7);
      return { stream: encode(role, replace(frame), random), kind };
    case "opcode":
      frame.opcode = Math.floor(random() * 16);
      return { stream: encode(role, replace(frame), random), kind };
    case "badlength": {
      const length = frame.payload?.length ?? 0;
      frame.lengthForm = length <= 125 ? pick([16, 64] as const) : 64;
      if (length > 0xffff) frame.declaredLength = length;
      return { stream: encode(role, replace(frame), random), kind };
    }
    case "badutf8": {
      const textAt = frames.findIndex((f) => f.opcode === 1);
      if (textAt < 0) break;
      const target = { ...frames[textAt]! };
      const payload = target.payload ?? new Uint8Array(0);
      const where = Math.floor(random() * (payload.length + 1));
      target.payload = concat(
        payload.slice(0, where),
        bytes(...pick(BAD_UTF8)),
        payload.slice(where),
      );
      return {
        stream: encode(
          role,
          [...frames.slice(0, textAt), target, ...frames.slice(textAt + 1)],
          random,
        ),
        kind,
      };
    }
    case "badclose": {
      const variant = random();
      const bad = variant < 0.5
        ? close(pick(BAD_CODES), "r")
        : variant < 0.7
        ? { opcode: 8, payload: bytes(3) }
        : variant < 0.85
        ? close(1000, bytes(0x61, ...pick(BAD_UTF8)))
        : close(Math.floor(random() * 65536), "");
      return {
        stream: encode(role, [...frames.slice(0, at), bad, ...frames.slice(at)], random),
        kind,
      };
    }
    case "longcontrol":
      return {
        stream: encode(
          role,
          replace({ opcode: pick([8, 9, 10]), payload: filled(126 + at) }),
          random,
        ),
        kind,
      };
    case "fragcontrol":
      return {
        stream: encode(role, replace({ opcode: pick([8, 9, 10]), fin: false }), random),
        kind,
      };
    case "mask":
      frame.wrongMask = true;
      return { stream: encode(role, replace(frame), random), kind };
    case "orphan":
      return {
        stream: encode(role, [
          ...frames.slice(0, at),
          text("c", random() < 0.5, 0),
          ...frames.slice(at),
        ], random),
        kind,
      };
    case "interleave":
      return {
        stream: encode(
          role,
          [...frames.slice(0, at), text("s", false), ...frames.slice(at)],
          random,
        ),
        kind,
      };
  }
  return { stream: encode(role, frames, random), kind: "none" };
}

function randomFrameCases(count: number, seed: number): Case[] {
  const cases: Case[] = [];
  for (let n = 0; n < count; n++) {
    const random = prng(seed + n);
    const role = n % 2 === 0 ? "server" : "client";
    const frames = randomValidFrames(random);
    const mutated = n % 3 !== 0;
    const { stream, kind } = mutated
      ? mutate(role, frames, random)
      : { stream: encode(role, frames, random), kind: "valid" };
    cases.push(...chopped(
      {
        name: `${role}: random #${seed + n} (${kind})`,
        role,
        mode: "frames",
        stream,
        eof: random() < 0.5,
        answer: random() < 0.8,
      },
      seed + n,
      300,
    ));
  }
  return cases;
}

// ----------------------------------------------------- handshake cases

const crlf = (...lines: string[]) => utf8(lines.join("\r\n") + "\r\n\r\n");
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const GOOD_REQUEST = [
  "GET /chat?x=1 HTTP/1.1",
  "Host: example.com:8000",
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Key: ${KEY}`,
  "Sec-WebSocket-Version: 13",
];
const without = (name: string) => GOOD_REQUEST.filter((line) => !line.startsWith(name + ":"));

function handshakeCases(): Case[] {
  const server: [string, Uint8Array, Partial<Case>?][] = [
    ["a good request", crlf(...GOOD_REQUEST)],
    [
      "header names and tokens in any case",
      crlf(
        "GET / HTTP/1.1",
        "host: example.com",
        "UPGRADE: WebSocket",
        "connection: keep-alive, upgrade",
        `sec-websocket-key: ${KEY}`,
        "sec-websocket-version: 13",
      ),
    ],
    [
      "subprotocols offered, one chosen",
      crlf(...GOOD_REQUEST, "Sec-WebSocket-Protocol: chat, superchat"),
      {
        subprotocol: "superchat",
      },
    ],
    [
      "extensions offered, none accepted",
      crlf(
        ...GOOD_REQUEST,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo",
      ),
    ],
    [
      "a request with frames behind it",
      concat(
        crlf(...GOOD_REQUEST),
        encode("server", [text("early"), ping(utf8("p"))], prng(5)),
      ),
    ],
    [
      "a request with frames behind it, wsproto as shipped",
      concat(
        crlf(...GOOD_REQUEST),
        encode("server", [text("early")], prng(6)),
      ),
      { rawTrailing: true, expect: "pipelined-frames" },
    ],
    ["no Upgrade header", crlf(...without("Upgrade"))],
    ["no Connection header", crlf(...without("Connection"))],
    ["no Sec-WebSocket-Key", crlf(...without("Sec-WebSocket-Key"))],
    ["no Sec-WebSocket-Version", crlf(...without("Sec-WebSocket-Version"))],
    [
      "Sec-WebSocket-Version 8",
      crlf(...without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8"),
    ],
    ["no Host", crlf(...without("Host"))],
    ["POST", crlf("POST / HTTP/1.1", ...GOOD_REQUEST.slice(1))],
    ["HTTP/1.0", crlf("GET / HTTP/1.0", ...GOOD_REQUEST.slice(1)), { expect: "http-1.0" }],
    [
      "a key that is not 16 bytes of base64",
      crlf(...without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: abc"),
      {
        expect: "bad-key",
      },
    ],
    [
      "a request that announces a body",
      concat(crlf(...GOOD_REQUEST, "Content-Length: 2"), utf8("hi")),
      { expect: "request-body" },
    ],
    [
      "a subprotocol offered twice, and one that is no token",
      crlf(...GOOD_REQUEST, 'Sec-WebSocket-Protocol: chat, "v2", chat'),
      { expect: "subprotocol-token" },
    ],
    ["garbage", utf8("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")],
    ["a header line without a colon", crlf(...GOOD_REQUEST, "Bogus")],
    ["an oversized header block", crlf(...GOOD_REQUEST, "X-Big: " + "a".repeat(20000))],
    ["end of stream inside the request", utf8("GET / HTTP/1.1\r\nHost: x\r\n"), { eof: true }],
  ];
  const client: [string, Uint8Array, Partial<Case>?][] = [
    [
      "a good response",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
      ),
    ],
    [
      "a good response with frames behind it",
      concat(
        crlf(
          "HTTP/1.1 101 Switching Protocols",
          "Upgrade: WebSocket",
          "Connection: upgrade",
          `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
        ),
        encode("client", [text("hi"), ping(utf8("x")), close(1000, "done")], prng(7)),
      ),
      { eof: true },
    ],
    [
      "a subprotocol that was offered",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
        "Sec-WebSocket-Protocol: chat",
      ),
    ],
    [
      "a subprotocol that was not offered",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
        "Sec-WebSocket-Protocol: other",
      ),
    ],
    [
      "an extension that was not offered",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
        "Sec-WebSocket-Extensions: x-foo",
      ),
    ],
    [
      "a wrong accept token",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
      ),
    ],
    [
      "no Upgrade header",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Connection: Upgrade",
        `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
      ),
    ],
    [
      "no Connection header",
      crlf(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        `Sec-WebSocket-Accept: ${PLACEHOLDER}`,
      ),
    ],
    [
      "a 404 with a body",
      concat(
        crlf("HTTP/1.1 404 Not Found", "Content-Type: text/plain", "Content-Length: 9"),
        utf8("not here\n"),
      ),
    ],
    ["a 400 with an empty body", crlf("HTTP/1.1 400 Bad Request", "Content-Length: 0")],
    [
      "a 403 with a chunked body",
      concat(
        crlf("HTTP/1.1 403 Forbidden", "Transfer-Encoding: chunked"),
        utf8("4\r\nno, \r\n3\r\nyou\r\n0\r\n\r\n"),
      ),
    ],
    [
      "a 200 with a body up to the end of the stream",
      concat(
        crlf("HTTP/1.1 200 OK", "Content-Type: text/plain"),
        utf8("hello"),
      ),
      { eof: true },
    ],
    ["garbage", utf8("SSH-2.0-OpenSSH_9.2\r\n\r\n")],
    ["end of stream inside the response", utf8("HTTP/1.1 101 Switching Protocols\r\n"), {
      eof: true,
    }],
  ];
  const cases: Case[] = [];
  let seed = 900;
  // Every stream read by `role` as a handshake, in its chunkings.
  const add = (role: Case["role"], streams: typeof server, common: Partial<Case>) => {
    for (const [name, stream, extra] of streams) {
      cases.push(...chopped(
        {
          name: `${role} handshake: ${name}`,
          role,
          mode: "handshake",
          stream,
          eof: false,
          answer: true,
          ...common,
          ...extra,
        },
        seed++,
        400,
      ));
    }
  };
  add("server", server, {});
  add("client", client, {
    request: { host: "example.com", target: "/chat", subprotocols: ["chat", "superchat"] },
  });
  return cases;
}

/**
 * Seeded variations of a request: header order and case, a required header
 * dropped now and then, extra headers, subprotocols, frames pipelined behind.
 */
function randomHandshakeCases(count: number, seed: number): Case[] {
  const cases: Case[] = [];
  for (let n = 0; n < count; n++) {
    const random = prng(seed + n);
    const headers = GOOD_REQUEST.slice(1).map((line) => {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon);
      const cased = random() < 0.3
        ? name.toUpperCase()
        : random() < 0.5
        ? name.toLowerCase()
        : name;
      return `${cased}:${random() < 0.2 ? "   " : " "}${line.slice(colon + 1).trim()}`;
    });
    if (random() < 0.3) headers.splice(Math.floor(random() * headers.length), 1);
    if (random() < 0.4) headers.push(`X-Extra-${n}: value ${n}`);
    let subprotocol: string | null = null;
    if (random() < 0.4) {
      headers.push("Sec-WebSocket-Protocol: a, b,c");
      subprotocol = random() < 0.5 ? "c" : null;
    }
    for (let i = headers.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [headers[i], headers[j]] = [headers[j]!, headers[i]!];
    }
    const target = random() < 0.5 ? "/" : `/path/${n}?q=${n}`;
    let stream: Uint8Array = crlf(`GET ${target} HTTP/1.1`, ...headers);
    if (random() < 0.3) {
      stream = concat(stream, encode("server", randomValidFrames(random), random));
    }
    cases.push(...chopped(
      {
        name: `server handshake: random #${seed + n}`,
        role: "server",
        mode: "handshake",
        stream,
        eof: random() < 0.3,
        answer: true,
        subprotocol,
      },
      seed + n,
      300,
    ));
  }
  return cases;
}

// ------------------------------------------------------------------ tests

const handshakes = handshakeCases();

const groups = {
  "hand-written frame cases": handFrameCases(),
  "seeded random streams": randomFrameCases(400, 10_000),
  "handshakes": handshakes,
  "seeded random handshake requests": randomHandshakeCases(40, 20_000),
};

Deno.test({
  name: "wsproto and this module agree on every stream of the corpus",
  ignore: !AVAILABLE && !IN_CI,
  async fn(t) {
    if (!AVAILABLE) {
      throw new Error(
        "CI=true but /usr/bin/python3 with wsproto is missing: .ci/run installs python3-wsproto",
      );
    }
    const all = Object.values(groups).flat();
    const theirs = await runWsproto(all);
    const seen = new Map<Rule, number>();
    for (const [group, cases] of Object.entries(groups)) {
      await t.step(group, async () => {
        const failures: string[] = [];
        for (const c of cases) {
          const result = theirs.get(c.id);
          assert(result !== undefined, `no answer from wsproto for ${c.name}`);
          if (result.crash !== undefined) {
            failures.push(`${c.name}: wsproto crashed: ${result.crash}`);
            continue;
          }
          const ours = await runOurs(c);
          const verdict = c.mode === "frames"
            ? compareFrames(ours, result)
            : compareHandshake(c, ours, result);
          for (const rule of verdict.rules) seen.set(rule, (seen.get(rule) ?? 0) + 1);
          if (verdict.mismatch !== null) {
            failures.push(
              `${c.name}\n    stream ${toHex(c.stream).slice(0, 400)}\n    ${verdict.mismatch}`,
            );
          }
        }
        assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases disagree`);
      });
    }
    await t.step("every recorded difference is still observed", () => {
      const unseen = Object.keys(RULES).filter((rule) => !seen.has(rule as Rule));
      assert.deepEqual(unseen, [], "a rule no case needs any more: remove it");
    });
  },
});
