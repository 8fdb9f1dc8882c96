import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import {
  deriveAccept,
  explain,
  Explainer,
  type ExplainOptions,
  type FrameRecord,
  type HandshakeRecord,
  type InspectRecord,
  newSession,
} from "../tools/inspect/explain.ts";
import { decodeInput } from "../tools/inspect/input.ts";
import { type Direction, startProxy } from "../tools/inspect/proxy.ts";
import { renderJson, renderText } from "../tools/inspect/render.ts";
import { parseArguments } from "../tools/inspect.ts";
import { withTimeout, writeAll } from "./_drivers.ts";
import { concatAll, utf8 } from "./_util.ts";

const hex = (text: string): Uint8Array => decodeInput(new TextEncoder().encode(text), "hex");

function frames(records: readonly InspectRecord[]): FrameRecord[] {
  return records.filter((record): record is FrameRecord => record.kind === "frame");
}

function handshake(records: readonly InspectRecord[]): HandshakeRecord {
  const found = records.find((record): record is HandshakeRecord => record.kind === "handshake");
  assert.ok(found !== undefined, "a handshake record");
  return found;
}

function field(frame: FrameRecord, name: string) {
  const found = frame.fields.find((candidate) => candidate.name === name);
  assert.ok(found !== undefined, `field ${name}`);
  return found;
}

// ---- RFC 6455 §5.7 ----

Deno.test("Inspector explains the masked Hello of RFC 6455 §5.7 bit by bit", () => {
  const bytes = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
  const before = bytes.slice();
  const records = explain(bytes);
  assert.deepEqual(bytes, before, "the input is not unmasked in place");
  const [frame] = frames(records);
  assert.ok(frame !== undefined);
  assert.equal(frame.from, "client");
  assert.equal(frame.header, "81 85 37 fa 21 3d");
  assert.equal(frame.opcodeName, "TEXT");
  assert.equal(frame.lengthForm, 7);
  assert.equal(frame.payloadLength, 5);
  assert.equal(frame.maskingKey, "37 fa 21 3d");
  assert.deepEqual(
    frame.fields.map((f) => [f.name, f.offset, f.bit, f.width, f.bits]),
    [
      ["FIN", 0, 0, 1, "1"],
      ["RSV1", 0, 1, 1, "0"],
      ["RSV2", 0, 2, 1, "0"],
      ["RSV3", 0, 3, 1, "0"],
      ["opcode", 0, 4, 4, "0001"],
      ["MASK", 1, 0, 1, "1"],
      ["payload length", 1, 1, 7, "0000101"],
      ["masking key", 2, 0, 32, "00110111 11111010 00100001 00111101"],
    ],
  );
  assert.deepEqual(frame.payload, {
    offset: 6,
    length: 5,
    masked: "7f 9f 4d 51 58",
    unmasked: "48 65 6c 6c 6f",
    ascii: "Hello",
    shown: 5,
  });
  assert.deepEqual(frame.events, [
    { type: "TextMessage", data: "Hello", length: 5, frameFinished: true, messageFinished: true },
  ]);
  assert.equal(frame.error, null);
  // No close frame came: at end of stream the module reports 1006.
  const end = records.at(-1);
  assert.ok(end?.kind === "end");
  assert.deepEqual(end.events, [
    { type: "CloseConnection", code: 1006, codeName: "ABNORMAL_CLOSURE", reason: "" },
  ]);
});

Deno.test("Inspector reads an unmasked frame as sent by a server", () => {
  const [frame] = frames(explain(hex("81 05 48 65 6c 6c 6f")));
  assert.equal(frame?.from, "server");
  assert.equal(frame.masked, false);
  assert.equal(frame.payload?.masked, null);
  assert.equal(frame.events[0]?.type === "TextMessage" && frame.events[0].data, "Hello");
});

Deno.test("Inspector shows the 16-bit and 64-bit length forms of RFC 6455 §5.7", () => {
  const short = concatAll([hex("82 7e 01 00"), new Uint8Array(256)]);
  const long = concatAll([hex("82 7f 00 00 00 00 00 01 00 00"), new Uint8Array(65536)]);
  const [sixteen, sixtyFour] = frames(explain(concatAll([short, long])));
  assert.equal(sixteen?.lengthForm, 16);
  assert.equal(sixteen.payloadLength, 256);
  assert.equal(field(sixteen, "extended payload length").bits, "00000001 00000000");
  assert.equal(sixtyFour?.lengthForm, 64);
  assert.equal(sixtyFour.payloadLength, 65536);
  assert.equal(field(sixtyFour, "extended payload length").width, 64);
  assert.equal(sixtyFour.offset, short.length);
  const event = sixtyFour.events[0];
  assert.ok(event?.type === "BytesMessage" && event.length === 65536 && event.messageFinished);
});

Deno.test("Inspector explains a fragmented message with a ping between its fragments", () => {
  // §5.7's fragmented "Hello" with §5.7's ping in the middle (§5.4 allows it).
  const records = explain(hex("01 03 48 65 6c  89 05 48 65 6c 6c 6f  80 02 6c 6f"));
  const [first, ping, last] = frames(records);
  assert.equal(first?.fin, false);
  assert.equal(field(first, "FIN").meaning, "more frames of this message follow");
  assert.deepEqual(first.events, [
    { type: "TextMessage", data: "Hel", length: 3, frameFinished: true, messageFinished: false },
  ]);
  assert.equal(ping?.opcodeName, "PING");
  assert.deepEqual(ping.events, [{ type: "Ping", data: "48 65 6c 6c 6f", length: 5 }]);
  assert.equal(last?.opcodeName, "CONTINUATION");
  assert.deepEqual(last.events, [
    { type: "TextMessage", data: "lo", length: 2, frameFinished: true, messageFinished: true },
  ]);
});

Deno.test("Inspector explains a close with a code and a reason, and what follows it", () => {
  // A client's close, 1001 "going away", masked, then a frame nobody reads.
  const key = new Uint8Array([1, 2, 3, 4]);
  const payload = concatAll([new Uint8Array([0x03, 0xe9]), utf8("going away")]);
  const masked = payload.slice();
  ws.mask(masked, key);
  const bytes = concatAll([
    new Uint8Array([0x88, 0x80 | payload.length]),
    key,
    masked,
    hex("81 80 00 00 00 00"),
  ]);
  const records = explain(bytes);
  const [close] = frames(records);
  assert.deepEqual(close?.events, [
    { type: "CloseConnection", code: 1001, codeName: "GOING_AWAY", reason: "going away" },
  ]);
  assert.equal(close.error, null);
  assert.ok(close.notes.some((note) => note.includes("03 e9 = 1001 (GOING_AWAY)")));
  const ignored = records.find((record) => record.kind === "ignored");
  assert.ok(ignored?.kind === "ignored" && ignored.offset === 18 && ignored.length === 6);
  assert.deepEqual(records.at(-1), {
    kind: "end",
    offset: 24,
    note: "End of stream; the module had already stopped reading.",
    events: [],
  });
});

// ---- Extensions ----

Deno.test("Inspector inflates the permessage-deflate example of RFC 7692 §7.2.3.1", () => {
  const bytes = hex("c1 07 f2 48 cd c9 c9 07 00");
  const [inflated] = frames(explain(bytes, { deflate: true }));
  assert.equal(inflated?.rsv1, true);
  assert.deepEqual(inflated.events, [
    { type: "TextMessage", data: "Hello", length: 5, frameFinished: true, messageFinished: true },
  ]);
  assert.ok(inflated.notes.some((note) => note.includes("compressed")));
  // Without the extension the same RSV1 bit is a protocol error at byte 1.
  const [refused] = frames(explain(bytes));
  assert.equal(refused?.error?.offset, 1);
  assert.equal(refused.error.code, 1002);
});

Deno.test("Inspector inflates messages when the handshake negotiated permessage-deflate", () => {
  const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
  const server = new ws.WSConnection(ws.ConnectionType.SERVER);
  const request = client.send(
    new ws.Request({ host: "example.com", target: "/", extensions: [new ws.PerMessageDeflate()] }),
  );
  server.receiveData(request.slice());
  assert.ok([...server.events()][0] instanceof ws.Request);
  const response = server.send(
    new ws.AcceptConnection({ extensions: [new ws.PerMessageDeflate({ threshold: 0 })] }),
  );
  client.receiveData(response.slice());
  assert.ok([...client.events()][0] instanceof ws.AcceptConnection);
  const text = "Hello, deflate! ".repeat(8);
  const clientFrames = concatAll([
    client.send(new ws.TextMessage({ data: text })),
    client.send(new ws.CloseConnection({ code: 1000 })),
  ]);
  const serverFrames = server.send(new ws.TextMessage({ data: "short" }));

  // As the proxy sees them: request, response, then the client's frames.
  const session = newSession();
  const up = new Explainer({ session });
  const down = new Explainer({ session });
  const records = [...up.push(request), ...down.push(concatAll([response, serverFrames]))];
  records.push(...up.push(clientFrames), ...up.end(), ...down.end());

  const [requestRecord, responseRecord] = records.filter((r) =>
    r.kind === "handshake"
  ) as HandshakeRecord[];
  assert.equal(requestRecord?.verdict.ok, true);
  assert.equal(responseRecord?.verdict.event, "AcceptConnection");
  assert.equal(responseRecord.accept?.correct, true);
  assert.match(responseRecord.deflate ?? "", /^permessage-deflate/);
  const sent = frames(records).filter((frame) => frame.from === "client");
  assert.equal(sent[0]?.rsv1, true, "the client compressed its message");
  assert.ok(sent[0].payloadLength! < text.length);
  assert.deepEqual(sent[0].events, [
    {
      type: "TextMessage",
      data: text.slice(0, 80),
      length: text.length,
      frameFinished: true,
      messageFinished: true,
    },
  ]);
  assert.equal(sent[1]?.events[0]?.type, "CloseConnection");
  const received = frames(records).filter((frame) => frame.from === "server");
  assert.equal(received[0]?.rsv1, true, "the server compressed even a short message");
  assert.equal(
    received[0].events[0]?.type === "TextMessage" && received[0].events[0].data,
    "short",
  );
});

// ---- Errors ----

Deno.test("Inspector shows each protocol error at the byte where the module fails", async (t) => {
  const cases: [string, string, ExplainOptions, number, number, RegExp][] = [
    ["a reserved opcode", "83 00", {}, 1, 1002, /Reserved opcode 0x3/],
    ["an unmasked frame from a client", "81 00", { role: "client" }, 1, 1002, /Unmasked/],
    ["a masked frame from a server", "81 80 00 00 00 00", { role: "server" }, 1, 1002, /Masked/],
    ["a length not minimally encoded", "82 7e 00 05 00 00 00 00 00", {}, 3, 1002, /minimally/],
    ["a fragmented ping", "09 00", {}, 1, 1002, /Fragmented control/],
    ["a continuation without a message", "80 01 61", {}, 2, 1002, /Continuation/],
    ["invalid UTF-8 in text", "81 05 68 65 ff 6c 6f", {}, 4, 1007, /UTF-8/],
    ["a close with a one-byte payload", "88 01 03", {}, 2, 1002, /one-byte/],
    ["a close code that may not be sent", "88 02 03 ed", {}, 3, 1002, /Invalid close code 1005/],
  ];
  for (const [name, bytes, options, offset, code, reason] of cases) {
    await t.step(name, () => {
      const records = explain(hex(bytes), options);
      const [frame] = frames(records);
      assert.equal(frame?.error?.offset, offset);
      assert.equal(frame.error.code, code);
      assert.match(frame.error.reason, reason);
      // The event is the close the module answers with.
      const close = frame.events.at(-1);
      assert.ok(close?.type === "CloseConnection" && close.code === code);
    });
  }
});

Deno.test("Inspector finds an invalid byte in a masked text payload after valid frames", () => {
  const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
  const payload = utf8("ok\u00e9!");
  payload[3] = 0x41; // é is c3 a9: a9 becomes "A", so c3 is not continued
  ws.mask(payload, key);
  const bytes = concatAll([
    hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
    new Uint8Array([0x81, 0x85]),
    key,
    payload,
  ]);
  const records = explain(bytes);
  const [good, bad] = frames(records);
  assert.equal(good?.error, null);
  assert.equal(bad?.error?.offset, 11 + 6 + 3, "the byte after the lone c3");
  assert.equal(bad.error.byte, 0x41, "the unmasked value");
  assert.equal(bad.error.code, 1007);
  const text = renderText(bad, { color: false });
  assert.match(text, /✗ @20 {2}payload byte 3 \(41 unmasked\).*close 1007/);
});

Deno.test("Inspector reads a stream the same however it is chopped", () => {
  const stream = hex(
    "01 83 00 00 00 00 48 65 6c 89 80 01 02 03 04 80 82 05 06 07 08 69 6a 88 82 09 09 09 09 0a e1",
  );
  const whole = explain(stream);
  const explainer = new Explainer();
  const pieces: InspectRecord[] = [];
  for (const byte of stream) pieces.push(...explainer.push(Uint8Array.of(byte)));
  pieces.push(...explainer.end());
  assert.deepEqual(pieces, whole);
  assert.deepEqual(frames(whole).map((frame) => frame.events.map((event) => event.type)), [
    ["TextMessage"],
    ["Ping"],
    ["TextMessage"],
    ["CloseConnection"],
  ]);
});

// ---- The handshake ----

const RFC_REQUEST = [
  "GET /chat HTTP/1.1",
  "Host: server.example.com",
  "Upgrade: websocket",
  "Connection: Upgrade",
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
  "Origin: http://example.com",
  "Sec-WebSocket-Protocol: chat, superchat",
  "Sec-WebSocket-Version: 13",
  "",
  "",
].join("\r\n");

const rfcResponse = (accept: string) =>
  [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${accept}`,
    "Sec-WebSocket-Protocol: chat",
    "",
    "",
  ].join("\r\n");

Deno.test("Inspector derives the accept token of RFC 6455 §1.3 step by step", () => {
  assert.deepEqual(deriveAccept("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), {
    key: "dGhlIHNhbXBsZSBub25jZQ==",
    keyWithGuid: "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
    sha1Hex: "b37a4f2cc0624f1690f64606cf385945b2bec4ea",
    expected: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    received: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    correct: true,
  });
  const records = explain(concatAll([utf8(RFC_REQUEST), hex("81 85 37 fa 21 3d 7f 9f 4d 51 58")]));
  const request = handshake(records);
  assert.equal(request.from, "client");
  assert.equal(request.startLine, "GET /chat HTTP/1.1");
  assert.equal(request.headers.length, 7);
  assert.equal(request.verdict.event, "Request");
  assert.equal(request.accept?.expected, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const [frame] = frames(records);
  assert.equal(frame?.offset, RFC_REQUEST.length);
  assert.equal(frame.events[0]?.type === "TextMessage" && frame.events[0].data, "Hello");
});

Deno.test("Inspector marks a wrong Sec-WebSocket-Accept with the module's verdict", () => {
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const good = handshake(explain(utf8(rfcResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")), { key }));
  assert.equal(good.accept?.correct, true);
  assert.deepEqual(
    [good.verdict.checked, good.verdict.ok, good.verdict.event],
    [true, true, "AcceptConnection"],
  );
  const bad = handshake(explain(utf8(rfcResponse("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")), { key }));
  assert.equal(bad.accept?.correct, false);
  assert.equal(bad.verdict.ok, false);
  assert.match(bad.verdict.message, /Sec-WebSocket-Accept/);
  assert.match(renderText(bad, { color: false }), /received {4}AAAA\S+ {2}✗ wrong/);
  // Without the key there is nothing to check against.
  const alone = handshake(explain(utf8(rfcResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))));
  assert.equal(alone.accept, null);
  assert.equal(alone.verdict.checked, false);
});

Deno.test("Inspector reports the rejection the module answers a bad request with", () => {
  const request = RFC_REQUEST.replace("Sec-WebSocket-Version: 13\r\n", "");
  const record = handshake(explain(utf8(request)));
  assert.equal(record.verdict.ok, false);
  assert.equal(record.verdict.event, "RejectConnection");
  assert.equal(typeof record.verdict.status, "number");
  const refused = explain(utf8("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"));
  assert.equal(handshake(refused).verdict.status, 403);
  const body = refused.find((record) => record.kind === "ignored");
  assert.ok(body?.kind === "ignored" && body.length === 2);
});

// ---- Input and output ----

Deno.test("decodeInput reads hex, base64 and raw bytes", () => {
  const ping = [0x89, 0x00];
  for (const text of ["89 00", "0x89, 0x00", "89:00", "8900\n", "# a ping\n89 00  # empty\n"]) {
    assert.deepEqual([...decodeInput(utf8(text))], ping, text);
  }
  assert.deepEqual([...decodeInput(utf8("iQA="))], ping);
  assert.deepEqual([...decodeInput(utf8("iQA"), "base64")], ping);
  assert.deepEqual([...decodeInput(new Uint8Array(ping))], ping);
  assert.deepEqual([...decodeInput(utf8("89 00"), "raw")], [...utf8("89 00")]);
  assert.throws(() => decodeInput(utf8("zz"), "hex"), TypeError);
  // Spaced hex with a digit missing was read as base64, and explained as
  // some other frame.
  for (const text of ["81 8", "81 85 37 fa 5", "0x81, 0x8"]) {
    assert.throws(() => decodeInput(utf8(text)), /a byte is two digits, and one is missing/, text);
  }
});

Deno.test("Inspector shows a 64-bit length past 2^53 exactly", () => {
  const [frame] = frames(explain(hex("81 7f ff ff ff ff ff ff ff ff")));
  const length = field(frame!, "extended payload length");
  assert.equal(length.value, "18446744073709551615");
  assert.match(length.meaning, /^18446744073709551615 bytes/);
});

Deno.test("Rendering is plain without colour, coloured with it, and JSON per record", () => {
  const records = explain(hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"));
  const plain = records.map((record) => renderText(record, { color: false })).join("");
  assert.ok(!plain.includes("\x1b"));
  assert.match(
    plain,
    /^frame 1 {2}TEXT {2}client → server {2}@0 {2}11 bytes = header 6 \+ payload 5$/m,
  );
  assert.match(plain, /^ {2}@0 {4}81 {11}FIN {5}1\.{7} {2}1 /m);
  assert.match(plain, /^ {21}length {2}\.0000101 {2}5 {5}5 bytes \(7-bit form, 0-125\)$/m);
  assert.match(plain, /^ {8}XOR key {3}37 fa 21 3d 37$/m);
  assert.match(plain, /^ {8}unmasked {2}48 65 6c 6c 6f {2}\|Hello\|$/m);
  assert.match(plain, /^ {2}event {2}TextMessage "Hello"$/m);
  const colored = renderText(records[0]!, { color: true });
  assert.ok(colored.includes("\x1b["));
  const lines = records.map((record) => renderJson(record));
  assert.deepEqual(lines.map((line) => JSON.parse(line).kind), ["frame", "end"]);
});

Deno.test("parseArguments reads the options and the proxy target", () => {
  const args = parseArguments(["--role", "server", "--deflate", "--bytes", "4", "--raw", "in.bin"]);
  assert.deepEqual(
    [args.role, args.deflate, args.bytes, args.format, args.file],
    ["server", true, 4, "raw", "in.bin"],
  );
  assert.deepEqual(parseArguments(["--proxy", "9000", "localhost:8080"]).proxy, {
    port: 9000,
    hostname: "localhost",
    targetPort: 8080,
  });
  assert.throws(() => parseArguments(["--role", "peer"]), TypeError);
  assert.throws(() => parseArguments(["--proxy", "9000", "nohost"]), TypeError);
});

Deno.test("The inspect command prints plain text when piped, or JSON lines", async () => {
  const run = async (args: string[]) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../tools/inspect.ts", import.meta.url).pathname, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "" },
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(utf8("81 05 48 65 6c 6c 6f\n"));
    await writer.close();
    const { code, stdout, stderr } = await child.output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    return new TextDecoder().decode(stdout);
  };
  const text = await run([]);
  assert.ok(!text.includes("\x1b"), "no colour on a pipe");
  assert.match(text, /event {2}TextMessage "Hello"/);
  const json = (await run(["--json"])).trim().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(json.map((record) => record.kind), ["frame", "end"]);
  assert.equal(json[0].events[0].data, "Hello");
});

// ---- Live mode ----

/**
 * A plain TCP relay that records what it reads each way: put between the
 * proxy and the server, it sees exactly the bytes the proxy delivered.
 */
function startTap(targetPort: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const up: Uint8Array[] = [];
  const down: Uint8Array[] = [];
  const tasks: Promise<void>[] = [];
  const pipe = async (from: Deno.Conn, to: Deno.Conn, log: Uint8Array[]) => {
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        log.push(chunk);
        await writeAll(to, chunk);
      }
      await to.closeWrite();
    } catch {
      // The other side went away; both sockets are closed below.
    }
  };
  const relay = async (client: Deno.Conn) => {
    const server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    await Promise.all([pipe(client, server, up), pipe(server, client, down)]);
    client.close();
    server.close();
  };
  const accepting = (async () => {
    for (;;) {
      try {
        tasks.push(relay(await listener.accept()));
      } catch {
        return;
      }
    }
  })();
  return {
    port: listener.addr.port,
    up,
    down,
    async close() {
      listener.close();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

Deno.test("The proxy relays a native client and the module's echo server unchanged and explains both ways", async () => {
  const server = ws.serve({ hostname: "127.0.0.1", port: 0, onError: () => {} }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
  const tap = startTap(server.addr.port);
  const records: Record<Direction, InspectRecord[]> = { "client→server": [], "server→client": [] };
  const read: Record<Direction, Uint8Array[]> = { "client→server": [], "server→client": [] };
  const errors: unknown[] = [];
  const proxy = startProxy({
    listenPort: 0,
    targetHostname: "127.0.0.1",
    targetPort: tap.port,
    onRecord: (_id, direction, record) => records[direction].push(record),
    onChunk: (_id, direction, bytes) => read[direction].push(bytes.slice()),
    onError: (_id, error) => errors.push(error),
  });

  const big = "0123456789".repeat(7000); // 70000 bytes: the 64-bit length form
  const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const sent: (string | Uint8Array)[] = ["Hello", allBytes, "x".repeat(300), big];
  const client = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`);
  client.binaryType = "arraybuffer";
  const received: (string | Uint8Array)[] = [];
  const closed = new Promise<CloseEvent>((resolve) => client.onclose = resolve);
  const allEchoed = new Promise<void>((resolve) => {
    client.onmessage = (event) => {
      received.push(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
      if (received.length === sent.length) resolve();
    };
  });
  try {
    await withTimeout(
      new Promise((resolve) => client.onopen = resolve),
      5000,
      "the client opening",
    );
    for (const message of sent) client.send(message);
    await withTimeout(allEchoed, 5000, "the echoes");
    client.close(1000, "bye");
    const close = await withTimeout(closed, 5000, "the closing handshake");
    assert.equal(close.code, 1000);
  } finally {
    if (client.readyState !== WebSocket.CLOSED) {
      client.close();
      await withTimeout(closed, 5000, "the client closing");
    }
    await withTimeout(proxy.close(), 5000, "the proxy closing");
    await withTimeout(tap.close(), 5000, "the tap closing");
    await withTimeout(server.shutdown(), 5000, "the server shutting down");
  }
  assert.deepEqual(errors, []);
  assert.deepEqual(received, sent);

  // Every byte the proxy read was delivered, unchanged, in order.
  const upstream = concatAll(read["client→server"]);
  const downstream = concatAll(read["server→client"]);
  assert.deepEqual(concatAll(tap.up), upstream);
  assert.deepEqual(concatAll(tap.down), downstream);

  // And every byte is accounted for by a record.
  for (
    const [direction, bytes] of [["client→server", upstream], [
      "server→client",
      downstream,
    ]] as const
  ) {
    const list = records[direction];
    const covered = list.reduce(
      (n, record) =>
        n + (record.kind === "handshake" || record.kind === "frame" ? record.length : 0),
      0,
    );
    assert.equal(covered, bytes.length, `${direction} records cover the stream`);
  }

  const request = handshake(records["client→server"]);
  assert.equal(request.verdict.event, "Request");
  const response = handshake(records["server→client"]);
  assert.equal(response.verdict.event, "AcceptConnection");
  assert.equal(response.accept?.correct, true);
  assert.equal(response.accept.key, request.accept?.key);

  const summary = (direction: Direction) =>
    frames(records[direction]).map((frame) => {
      const event = frame.events[0];
      return [
        frame.masked,
        frame.lengthForm,
        event?.type,
        event?.type === "CloseConnection"
          ? event.code
          : event?.type === "TextMessage"
          ? event.length
          : event?.length,
      ];
    });
  const expected = (masked: boolean) => [
    [masked, 7, "TextMessage", 5],
    [masked, 16, "BytesMessage", 256],
    [masked, 16, "TextMessage", 300],
    [masked, 64, "TextMessage", 70000],
    [masked, 7, "CloseConnection", 1000],
  ];
  assert.deepEqual(summary("client→server"), expected(true));
  assert.deepEqual(summary("server→client"), expected(false));
});
