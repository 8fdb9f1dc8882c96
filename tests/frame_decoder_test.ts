import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import { encodeFrame } from "../frame_encoder.ts";
import { NO_RSV } from "../frame.ts";
import {
  assertSameBytes,
  bytes,
  chopStyles,
  concat,
  prng,
  randomBytes,
  rawFrame,
  utf8,
} from "./_util.ts";

const { CLIENT, SERVER } = ws.ConnectionType;

function decodeAll(
  type: ws.ConnectionType,
  chunks: readonly Uint8Array[],
  options: ws.FrameDecoderOptions = {},
): ws.Frame[] {
  const decoder = new ws.FrameDecoder(type, options);
  const frames: ws.Frame[] = [];
  for (const chunk of chunks) {
    decoder.receiveBytes(chunk);
    for (let frame = decoder.processBuffer(); frame !== null; frame = decoder.processBuffer()) {
      frames.push(frame);
    }
  }
  return frames;
}

/** Whole frames: pieces of one frame joined, keeping opcode, FIN and payload. */
function wholeFrames(
  frames: readonly ws.Frame[],
): { opcode: number; fin: boolean; payload: number[] }[] {
  const out: { opcode: number; fin: boolean; payload: number[] }[] = [];
  let current: { opcode: number; fin: boolean; payload: number[] } | null = null;
  for (const frame of frames) {
    if (current === null) {
      current = { opcode: frame.opcode, fin: frame.messageFinished, payload: [] };
      out.push(current);
    }
    for (const byte of frame.payload) current.payload.push(byte);
    if (frame.frameFinished) current = null;
  }
  return out;
}

/** An extension that claims no bit and changes nothing, but for the hooks a test watches. */
function plainExtension(hooks: Partial<ws.Extension>): ws.Extension {
  return {
    name: "x-plain",
    enabled: () => true,
    offer: () => null,
    accept: () => null,
    finalize: () => {},
    frameInboundHeader: () => NO_RSV,
    frameInboundPayloadData: (data) => data,
    frameInboundComplete: () => null,
    frameOutbound: (_opcode, rsv, data) => ({ rsv, data }),
    ...hooks,
  };
}

function decodeError(type: ws.ConnectionType, stream: Uint8Array): number | null {
  const codes = new Set<number | null>();
  for (const [, chunks] of chopStyles(stream)) {
    try {
      decodeAll(type, chunks, { maxFrameSize: 1 << 20 });
      codes.add(null);
    } catch (error) {
      assert.ok(error instanceof ws.RemoteProtocolError, `untyped error ${error}`);
      assert.ok(error.eventHint instanceof ws.CloseConnection);
      codes.add(error.eventHint.code);
    }
  }
  assert.equal(codes.size, 1, "chopping changed the outcome");
  return [...codes][0]!;
}

// RFC 6455 §5.7, byte for byte.
const RFC_EXAMPLES: {
  name: string;
  type: ws.ConnectionType;
  wire: Uint8Array;
  frames: { opcode: number; fin: boolean; payload: number[] }[];
}[] = [
  {
    name: "a single-frame unmasked text message",
    type: CLIENT,
    wire: bytes(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f),
    frames: [{ opcode: 1, fin: true, payload: [...utf8("Hello")] }],
  },
  {
    name: "a single-frame masked text message",
    type: SERVER,
    wire: bytes(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58),
    frames: [{ opcode: 1, fin: true, payload: [...utf8("Hello")] }],
  },
  {
    name: "a fragmented unmasked text message",
    type: CLIENT,
    wire: bytes(0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f),
    frames: [
      { opcode: 1, fin: false, payload: [...utf8("Hel")] },
      { opcode: 0, fin: true, payload: [...utf8("lo")] },
    ],
  },
  {
    name: "an unmasked ping",
    type: CLIENT,
    wire: bytes(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f),
    frames: [{ opcode: 9, fin: true, payload: [...utf8("Hello")] }],
  },
  {
    name: "a masked pong",
    type: SERVER,
    wire: bytes(0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58),
    frames: [{ opcode: 10, fin: true, payload: [...utf8("Hello")] }],
  },
  {
    name: "256 bytes of binary in one unmasked frame",
    type: CLIENT,
    wire: concat(bytes(0x82, 0x7e, 0x01, 0x00), new Uint8Array(256).fill(0xab)),
    frames: [{ opcode: 2, fin: true, payload: new Array(256).fill(0xab) }],
  },
  {
    name: "64 KiB of binary in one unmasked frame",
    type: CLIENT,
    wire: concat(bytes(0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0), new Uint8Array(65536).fill(7)),
    frames: [{ opcode: 2, fin: true, payload: new Array(65536).fill(7) }],
  },
];

Deno.test("FrameDecoder decodes the RFC 6455 §5.7 examples however they are chopped", async (t) => {
  for (const example of RFC_EXAMPLES) {
    await t.step(example.name, () => {
      for (const [style, chunks] of chopStyles(example.wire)) {
        assert.deepEqual(wholeFrames(decodeAll(example.type, chunks)), example.frames, style);
      }
    });
  }
});

Deno.test("encodeFrame produces the unmasked RFC 6455 §5.7 examples byte for byte", () => {
  for (const example of RFC_EXAMPLES.filter((e) => e.type === CLIENT)) {
    const frames = example.frames.map((f) =>
      encodeFrame(f.opcode, new Uint8Array(f.payload), f.fin, NO_RSV, false)
    );
    assert.deepEqual(concat(...frames), example.wire, example.name);
  }
});

Deno.test("FrameDecoder streams a large data frame as pieces without waiting for all of it", () => {
  const decoder = new ws.FrameDecoder(CLIENT);
  const wire = concat(bytes(0x82, 0x7e, 0x01, 0x00), new Uint8Array(256).fill(1));
  decoder.receiveBytes(wire.slice(0, 100));
  const first = decoder.processBuffer();
  assert.ok(first !== null);
  assert.equal(first.opcode, ws.Opcode.BINARY);
  assert.equal(first.payload.length, 96);
  assert.equal(first.frameFinished, false);
  assert.equal(decoder.processBuffer(), null);
  decoder.receiveBytes(wire.slice(100));
  const second = decoder.processBuffer();
  assert.ok(second !== null);
  assert.equal(second.opcode, ws.Opcode.CONTINUATION);
  assert.equal(second.payload.length, 160);
  assert.equal(second.frameFinished, true);
  assert.equal(second.messageFinished, true);
});

Deno.test("FrameDecoder.bytesExpected counts what the frame in progress still lacks", () => {
  const decoder = new ws.FrameDecoder(CLIENT);
  const wire = concat(
    bytes(0x82, 0x7e, 0x01, 0x00),
    new Uint8Array(256).fill(1),
    bytes(0x89, 0x00),
  );
  decoder.receiveBytes(wire.slice(0, 3)); // an incomplete header says nothing yet
  assert.equal(decoder.processBuffer(), null);
  assert.equal(decoder.bytesExpected, 0);
  decoder.receiveBytes(wire.slice(3, 100));
  assert.equal(decoder.processBuffer()?.payload.length, 96);
  assert.equal(decoder.bytesExpected, 160);
  decoder.receiveBytes(wire.slice(100, 200)); // buffered bytes count as arrived
  assert.equal(decoder.bytesExpected, 60);
  decoder.receiveBytes(wire.slice(200));
  assert.equal(decoder.processBuffer()?.frameFinished, true);
  assert.equal(decoder.bytesExpected, 0);
  assert.equal(decoder.processBuffer()?.opcode, ws.Opcode.PING);
  assert.equal(decoder.bytesExpected, 0);
});

Deno.test("FrameDecoder waits for a whole control frame", () => {
  const decoder = new ws.FrameDecoder(CLIENT);
  const wire = rawFrame({ opcode: 9, payload: utf8("abcdef"), maskKey: null });
  decoder.receiveBytes(wire.slice(0, 5));
  assert.equal(decoder.processBuffer(), null);
  decoder.receiveBytes(wire.slice(5));
  assert.deepEqual([...decoder.processBuffer()!.payload], [...utf8("abcdef")]);
});

Deno.test("FrameDecoder rejects each protocol violation with its close code", async (t) => {
  const key = bytes(1, 2, 3, 4);
  const cases: [string, ws.ConnectionType, Uint8Array, number][] = [
    [
      "an unmasked frame from a client",
      SERVER,
      rawFrame({ opcode: 1, payload: utf8("hi"), maskKey: null }),
      1002,
    ],
    [
      "a masked frame from a server",
      CLIENT,
      rawFrame({ opcode: 1, payload: utf8("hi"), maskKey: key }),
      1002,
    ],
    ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((
      opcode,
    ): [string, ws.ConnectionType, Uint8Array, number] => [
      `reserved opcode 0x${opcode.toString(16)}`,
      SERVER,
      rawFrame({ opcode, payload: utf8("x") }),
      1002,
    ]),
    ...[1, 2, 3, 4, 5, 6, 7].map((rsv): [string, ws.ConnectionType, Uint8Array, number] => [
      `RSV bits ${rsv.toString(2).padStart(3, "0")} with no extension`,
      SERVER,
      rawFrame({ opcode: 1, rsv, payload: utf8("x") }),
      1002,
    ]),
    ["a fragmented ping", SERVER, rawFrame({ opcode: 9, fin: false }), 1002],
    ["a fragmented close", SERVER, rawFrame({ opcode: 8, fin: false }), 1002],
    ["a ping of 126 bytes", SERVER, rawFrame({ opcode: 9, payload: new Uint8Array(126) }), 1002],
    [
      "a pong of 125 bytes in the 16-bit form",
      SERVER,
      rawFrame({ opcode: 10, payload: new Uint8Array(125), lengthForm: 16 }),
      1002,
    ],
    [
      "a 16-bit length that fits in 7 bits",
      SERVER,
      rawFrame({ opcode: 2, payload: new Uint8Array(125), lengthForm: 16 }),
      1002,
    ],
    [
      "a 64-bit length that fits in 16 bits",
      SERVER,
      rawFrame({ opcode: 2, payload: new Uint8Array(65535), lengthForm: 64 }),
      1002,
    ],
    ["a 64-bit length of zero", SERVER, rawFrame({ opcode: 2, lengthForm: 64 }), 1002],
    [
      "a 64-bit length with its top bit set",
      CLIENT,
      concat(bytes(0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0)),
      1002,
    ],
    [
      "a frame over the size limit",
      SERVER,
      rawFrame({ opcode: 2, declaredLength: (1 << 20) + 1 }),
      1009,
    ],
    [
      "a 64-bit length of 2^63 - 1",
      CLIENT,
      bytes(0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
      1009,
    ],
  ];
  for (const [name, type, stream, code] of cases) {
    await t.step(name, () => assert.equal(decodeError(type, stream), code));
  }
});

Deno.test("FrameDecoder shows each header to the extensions once, however it is chopped", () => {
  // Masked frames of each length form: the key is the last of the header to come.
  const stream = concat(
    rawFrame({ opcode: 0x1, payload: utf8("hi") }),
    rawFrame({ opcode: 0x2, payload: new Uint8Array(200) }),
    rawFrame({ opcode: 0x9, payload: bytes(1) }),
    rawFrame({ opcode: 0x2, payload: new Uint8Array(70_000) }),
  );
  for (const [style, chunks] of chopStyles(stream)) {
    const seen: string[] = [];
    const watcher = plainExtension({
      frameInboundHeader: (opcode, _rsv, length) => {
        seen.push(`${opcode}:${length}`);
        return NO_RSV;
      },
    });
    decodeAll(SERVER, chunks, { extensions: [watcher] });
    assert.deepEqual(seen, ["1:2", "2:200", "9:1", "2:70000"], style);
  }
});

Deno.test("FrameDecoder accepts a frame of exactly the size limit", () => {
  const frames = decodeAll(SERVER, [rawFrame({ opcode: 2, payload: new Uint8Array(1000) })], {
    maxFrameSize: 1000,
  });
  assert.equal(wholeFrames(frames)[0]!.payload.length, 1000);
  assert.throws(
    () =>
      decodeAll(SERVER, [rawFrame({ opcode: 2, payload: new Uint8Array(1001) })], {
        maxFrameSize: 1000,
      }),
    (error) =>
      error instanceof ws.RemoteProtocolError &&
      error.eventHint?.constructor === ws.CloseConnection,
  );
});

Deno.test("Random frames round-trip through the encoder and the decoder in both roles", () => {
  const random = prng(42);
  for (const sender of [CLIENT, SERVER]) {
    const receiver = sender === CLIENT ? SERVER : CLIENT;
    const expected: { opcode: number; fin: boolean; payload: number[] }[] = [];
    const wire: Uint8Array[] = [];
    for (let i = 0; i < 60; i++) {
      const control = random() < 0.3;
      const form = random();
      const length = control
        ? Math.floor(random() * 126)
        : form < 0.4
        ? Math.floor(random() * 126)
        : form < 0.8
        ? 126 + Math.floor(random() * (65536 - 126))
        : 65536 + Math.floor(random() * 100_000);
      const opcode = control
        ? [8, 9, 10][Math.floor(random() * 3)]!
        : [0, 1, 2][Math.floor(random() * 3)]!;
      const fin = control || random() < 0.5;
      const payload = randomBytes(random, length);
      expected.push({ opcode, fin, payload: [...payload] });
      wire.push(encodeFrame(opcode, payload, fin, NO_RSV, sender === CLIENT));
    }
    const stream = concat(...wire);
    for (const [style, chunks] of chopStyles(stream, 3).filter(([s]) => s !== "byte by byte")) {
      assert.deepEqual(wholeFrames(decodeAll(receiver, chunks)), expected, `${sender} ${style}`);
    }
  }
});

Deno.test("Client frames carry fresh masking keys", () => {
  const encoder = new ws.FrameEncoder(CLIENT);
  const keys = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const frame = encoder.encodeData(new Uint8Array(4), true);
    assert.equal(frame[1]! & 0x80, 0x80);
    keys.add(frame.subarray(2, 6).join());
  }
  // 2000 draws from 2^32 collide with probability about 0.05%.
  assert.ok(keys.size >= 1998);
});

Deno.test("FrameEncoder uses the minimal length form at each boundary", () => {
  const encoder = new ws.FrameEncoder(SERVER);
  for (
    const [length, headerLength] of [[0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10]] as const
  ) {
    const frame = encoder.encodeData(new Uint8Array(length), true);
    assert.equal(frame.length, length + headerLength, `length ${length}`);
  }
});

Deno.test("FrameEncoder sends a fragmented message as TEXT then CONTINUATION frames", () => {
  const encoder = new ws.FrameEncoder(SERVER);
  const first = encoder.encodeData("Hel", false);
  const last = encoder.encodeData("lo", true);
  assert.deepEqual(
    concat(first, last),
    bytes(0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f),
  );
  encoder.encodeData("a", false);
  assert.throws(() => encoder.encodeData(new Uint8Array(1), true), ws.LocalProtocolError);
});

Deno.test("FrameEncoder encodes text of every kind into frames that stay intact", () => {
  // Short text goes through a reused buffer into its frame, long text
  // straight into a frame sized for one byte per unit, grown when it does
  // not fit: each frame must be a copy, whatever the length and characters,
  // and match TextEncoder.
  const texts = [
    "",
    "hi",
    "é".repeat(500),
    "\u{1F600}x".repeat(3000),
    "lone \ud800 surrogate \udc00",
    "x".repeat(16 * 1024),
    "y".repeat(16 * 1024 + 1),
    "€".repeat(40_000),
    "z".repeat(65_535), // the longest 16-bit length
    "z".repeat(65_536),
    "a".repeat(20_000) + "é", // one byte over the first guess
    "b".repeat(19_999) + "\u{1F600}", // a surrogate pair where the first guess ends
    "c".repeat(20_000) + "\ud800", // a lone surrogate there: U+FFFD
    "é" + "d".repeat(70_000),
  ];
  for (const type of [SERVER, CLIENT]) {
    const encoder = new ws.FrameEncoder(type);
    const frames = texts.map((text) => encoder.encodeData(text, true));
    const decoded = decodeAll(type === SERVER ? CLIENT : SERVER, [concat(...frames)]);
    assert.equal(decoded.length, texts.length);
    for (const [i, frame] of decoded.entries()) {
      assertSameBytes(frame.payload, new TextEncoder().encode(texts[i]), `text ${i}`);
    }
  }
});

Deno.test("FrameEncoder lends an extension the text's bytes, and frames what it returns", () => {
  // The bytes are lent for the call (a buffer the next message reuses):
  // what the extension sees then is the text, and the frame is a copy of
  // what it returns, never a view of the lent buffer.
  const seen: string[] = [];
  const lent: Uint8Array[] = [];
  const upper = plainExtension({
    frameOutbound: (_opcode, rsv, data) => {
      seen.push(new TextDecoder().decode(data));
      lent.push(data);
      return { rsv, data };
    },
  });
  const encoder = new ws.FrameEncoder(SERVER, { extensions: [upper] });
  const first = encoder.encodeData("first", true);
  const long = "€".repeat(20_000); // over the shared buffer's reach
  const other = encoder.encodeData(long, true);
  assert.deepEqual(seen, ["first", long]);
  assert.deepEqual(first, bytes(0x81, 5, ...utf8("first")));
  assertSameBytes(other.subarray(4), utf8(long), "the long text's frame");
  assert.ok(lent.every((data, i) => data.buffer !== [first, other][i]!.buffer));
});

Deno.test("FrameEncoder refuses control payloads over 125 bytes", () => {
  const encoder = new ws.FrameEncoder(SERVER);
  assert.throws(
    () => encoder.encodeControl(ws.Opcode.PING, new Uint8Array(126)),
    ws.LocalProtocolError,
  );
  assert.equal(encoder.encodeControl(ws.Opcode.PING, new Uint8Array(125)).length, 127);
});

Deno.test("FrameEncoder cuts a long close reason at a character boundary", () => {
  const encoder = new ws.FrameEncoder(SERVER);
  const frame = encoder.encodeClose(1000, "é".repeat(100));
  assert.equal(frame[1], 2 + 122);
  assert.equal(new TextDecoder("utf-8", { fatal: true }).decode(frame.subarray(4)), "é".repeat(61));
  const noCode = encoder.encodeClose(1005, "");
  assert.deepEqual(noCode, bytes(0x88, 0x00));
  assert.deepEqual(encoder.encodeClose(1006, "").subarray(0, 4), bytes(0x88, 0x02, 0x03, 0xe8));
});

Deno.test("nextHeaderByte shows the next frame's first byte before it is decoded, and only then", () => {
  const decoder = new ws.FrameDecoder(ws.ConnectionType.CLIENT);
  assert.equal(decoder.nextHeaderByte, -1, "nothing buffered");
  decoder.receiveBytes(new Uint8Array([0x01, 0x03, 0x61]));
  assert.equal(decoder.nextHeaderByte, 0x01, "a header buffered, not decoded");
  assert.equal(decoder.processBuffer()?.opcode, ws.Opcode.TEXT);
  assert.equal(decoder.nextHeaderByte, -1, "inside a frame, its rest awaited");
  decoder.receiveBytes(new Uint8Array([0x62, 0x63, 0x88]));
  decoder.processBuffer();
  assert.equal(decoder.nextHeaderByte, 0x88, "the close behind it");
});
