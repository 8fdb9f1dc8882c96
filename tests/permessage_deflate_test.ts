import assert from "node:assert/strict";
import * as pako from "pako";
import {
  PerMessageDeflate,
  type PerMessageDeflateOptions,
  resetInflater,
} from "../permessage_deflate.ts";
import { RemoteProtocolError } from "../errors.ts";
import { NO_RSV, Opcode, type RsvBits } from "../frame.ts";
import { bytes, concatAll, pointZStream, prng, randomBytes } from "./_util.ts";

// ---------------------------------------------------------------- helpers

const RSV1: RsvBits = { rsv1: true, rsv2: false, rsv3: false };
const TAIL = [0x00, 0x00, 0xff, 0xff];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const WORDS = (
  "the of and to in is that it for on was with as by at websocket frame message deflate " +
  "window context takeover server client compression payload extension negotiation"
).split(" ");

function textLike(size: number, seed = 1): Uint8Array {
  const random = prng(seed);
  let text = "";
  while (text.length < size) text += WORDS[Math.floor(random() * WORDS.length)] + " ";
  return encoder.encode(text.slice(0, size));
}

/** Run the handshake's extension steps; returns [client, server]. */
function negotiate(
  clientOptions: PerMessageDeflateOptions = {},
  serverOptions: PerMessageDeflateOptions = {},
): [PerMessageDeflate, PerMessageDeflate, string] {
  const client = new PerMessageDeflate(clientOptions);
  const server = new PerMessageDeflate(serverOptions);
  const answer = server.accept(client.offer());
  assert.notEqual(answer, null, "the server declined the offer");
  client.finalize(answer!);
  assert.ok(client.enabled() && server.enabled());
  return [client, server, answer!];
}

interface WireFrame {
  opcode: Opcode;
  rsv: RsvBits;
  data: Uint8Array;
  fin: boolean;
}

/** Send one message through the outbound hook, cut at the given sizes. */
function send(
  ext: PerMessageDeflate,
  opcode: Opcode.TEXT | Opcode.BINARY,
  message: Uint8Array,
  pieces = 1,
  random = prng(3),
): WireFrame[] {
  const cuts = new Set<number>();
  while (cuts.size < pieces - 1 && message.length > 1) {
    cuts.add(1 + Math.floor(random() * (message.length - 1)));
  }
  const bounds = [0, ...[...cuts].sort((a, b) => a - b), message.length];
  const frames: WireFrame[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const fin = i + 2 === bounds.length;
    const op = i === 0 ? opcode : Opcode.CONTINUATION;
    const { rsv, data } = ext.frameOutbound(
      op,
      NO_RSV,
      message.subarray(bounds[i], bounds[i + 1]),
      fin,
    );
    frames.push({ opcode: op, rsv, data, fin });
  }
  return frames;
}

/**
 * Feed frames to the inbound hooks the way the message layer does, each
 * payload in random slices and a ping between fragments.
 */
function receive(
  ext: PerMessageDeflate,
  frames: readonly WireFrame[],
  random = prng(4),
): Uint8Array {
  const out: Uint8Array[] = [];
  for (const [index, frame] of frames.entries()) {
    const accounted = ext.frameInboundHeader(frame.opcode, frame.rsv, frame.data.length);
    assert.equal(accounted.rsv1, frame.rsv.rsv1, "RSV1 is accounted for exactly when set");
    let offset = 0;
    while (offset < frame.data.length) {
      const size = 1 + Math.floor(random() * Math.min(frame.data.length - offset, 4096));
      out.push(ext.frameInboundPayloadData(frame.data.subarray(offset, offset + size)));
      offset += size;
    }
    const rest = ext.frameInboundComplete(frame.fin);
    if (rest !== null) out.push(rest);
    if (index === 0 && !frame.fin) {
      const ping = bytes(1, 2, 3);
      ext.frameInboundHeader(Opcode.PING, NO_RSV, 3);
      assert.equal(ext.frameInboundPayloadData(ping), ping);
      assert.equal(ext.frameInboundComplete(true), null);
    }
  }
  return concatAll(out);
}

function failure(fn: () => unknown): RemoteProtocolError {
  try {
    fn();
  } catch (error) {
    if (error instanceof RemoteProtocolError) return error;
    throw error;
  }
  assert.fail("expected a RemoteProtocolError");
}

function closeCode(fn: () => unknown): number | undefined {
  const error = failure(fn);
  return error.eventHint && "code" in error.eventHint ? error.eventHint.code : undefined;
}

/**
 * Whether a raw DEFLATE stream decodes with a window of `bits`: one byte of
 * output per call makes zlib check every distance against its window.
 */
function fitsWindow(bits: number, compressed: Uint8Array, expected: Uint8Array): boolean {
  const strm = new pako.ZStream();
  assert.equal(pako.zlibInflateInit2(strm, -bits), pako.Z_OK);
  strm.input = compressed;
  strm.next_in = 0;
  strm.avail_in = compressed.length;
  const one = new Uint8Array(1);
  let produced = 0;
  for (;;) {
    strm.output = one;
    strm.next_out = 0;
    strm.avail_out = 1;
    const status = pako.zlibInflate(strm, pako.Z_NO_FLUSH);
    if (strm.next_out === 1) {
      if (one[0] !== expected[produced]) return false;
      produced++;
    }
    if (status === pako.Z_DATA_ERROR) return false;
    if (status !== pako.Z_OK) break;
  }
  return produced === expected.length;
}

/** The raw DEFLATE stream of one message as sent, tail restored. */
function stream(frames: readonly WireFrame[]): Uint8Array {
  return concatAll([...frames.map((f) => f.data), bytes(...TAIL)]);
}

// ------------------------------------------------------------ negotiation

Deno.test("PerMessageDeflate offers a bare client_max_window_bits by default", () => {
  assert.equal(new PerMessageDeflate().offer(), "permessage-deflate; client_max_window_bits");
});

Deno.test("PerMessageDeflate offers every parameter its options set", () => {
  const ext = new PerMessageDeflate({
    clientMaxWindowBits: 10,
    serverMaxWindowBits: 12,
    clientNoContextTakeover: true,
    serverNoContextTakeover: true,
  });
  assert.equal(
    ext.offer(),
    "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12; " +
      "client_no_context_takeover; server_no_context_takeover",
  );
  assert.equal(ext.enabled(), false);
});

Deno.test("PerMessageDeflate as a server answers each offer parameter", () => {
  const cases: [PerMessageDeflateOptions, string, string | null][] = [
    [{}, "permessage-deflate", "permessage-deflate"],
    [{}, "permessage-deflate; client_max_window_bits", "permessage-deflate"],
    [
      {},
      "permessage-deflate; client_max_window_bits=12",
      "permessage-deflate; client_max_window_bits=12",
    ],
    [
      { clientMaxWindowBits: 10 },
      "permessage-deflate; client_max_window_bits",
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      { clientMaxWindowBits: 10 },
      "permessage-deflate; client_max_window_bits=12",
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      { clientMaxWindowBits: 14 },
      "permessage-deflate; client_max_window_bits=12",
      "permessage-deflate; client_max_window_bits=12",
    ],
    [{ clientMaxWindowBits: 10 }, "permessage-deflate", null],
    [{ clientMaxWindowBits: 15 }, "permessage-deflate", "permessage-deflate"],
    [
      {},
      "permessage-deflate; server_max_window_bits=10",
      "permessage-deflate; server_max_window_bits=10",
    ],
    [
      { serverMaxWindowBits: 12 },
      "permessage-deflate",
      "permessage-deflate; server_max_window_bits=12",
    ],
    [
      { serverMaxWindowBits: 12 },
      "permessage-deflate; server_max_window_bits=9",
      "permessage-deflate; server_max_window_bits=9",
    ],
    [
      { serverMaxWindowBits: 9 },
      "permessage-deflate; server_max_window_bits=12",
      "permessage-deflate; server_max_window_bits=9",
    ],
    [
      {},
      "permessage-deflate; server_no_context_takeover",
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      {},
      "permessage-deflate; client_no_context_takeover",
      "permessage-deflate; client_no_context_takeover",
    ],
    [
      { serverNoContextTakeover: true },
      "permessage-deflate",
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      { clientNoContextTakeover: true },
      "permessage-deflate",
      "permessage-deflate; client_no_context_takeover",
    ],
    [
      {},
      "permessage-deflate; client_no_context_takeover; server_no_context_takeover; " +
      "server_max_window_bits=8; client_max_window_bits=8",
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " +
      "server_max_window_bits=8; client_max_window_bits=8",
    ],
    [
      {},
      'permessage-deflate; client_max_window_bits="10"',
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      {},
      'permessage-deflate;server_max_window_bits="1\\1"',
      "permessage-deflate; server_max_window_bits=11",
    ],
    [
      {},
      "  Permessage-Deflate ;  Server_No_Context_Takeover ",
      "permessage-deflate; server_no_context_takeover",
    ],
  ];
  for (const [options, offer, expected] of cases) {
    const ext = new PerMessageDeflate(options);
    assert.equal(ext.accept(offer), expected, `${JSON.stringify(options)} ${offer}`);
    assert.equal(ext.enabled(), expected !== null);
  }
});

Deno.test("PerMessageDeflate as a server accepts every window size from 8 to 15", () => {
  for (let bits = 8; bits <= 15; bits++) {
    const server = new PerMessageDeflate();
    assert.equal(
      server.accept(
        `permessage-deflate; server_max_window_bits=${bits}; client_max_window_bits=${bits}`,
      ),
      `permessage-deflate; server_max_window_bits=${bits}; client_max_window_bits=${bits}`,
    );
  }
});

Deno.test("PerMessageDeflate as a server declines offers with unknown, duplicate or invalid parameters", () => {
  const offers = [
    "x-webkit-deflate-frame",
    "permessage-deflate; x_foo",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",
    "permessage-deflate; server_max_window_bits=abc",
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; server_max_window_bits="1 0"',
    "permessage-deflate; client_max_window_bits=0",
    "permessage-deflate; client_max_window_bits=9.5",
    "permessage-deflate; server_no_context_takeover=true",
    'permessage-deflate; client_no_context_takeover=""',
    "permessage-deflate;",
    "permessage-deflate; ; server_no_context_takeover",
    "permessage-deflate; server max_window_bits=10",
  ];
  for (const offer of offers) {
    const ext = new PerMessageDeflate();
    assert.equal(ext.accept(offer), null, offer);
    assert.equal(ext.enabled(), false, offer);
  }
});

Deno.test("PerMessageDeflate as a client accepts each valid response parameter", () => {
  const cases: [PerMessageDeflateOptions, string][] = [
    [{}, "permessage-deflate"],
    [{}, "permessage-deflate; server_no_context_takeover"],
    [{}, "permessage-deflate; client_no_context_takeover"],
    [{}, "permessage-deflate; server_max_window_bits=8"],
    [{}, "permessage-deflate; client_max_window_bits=8"],
    [{ serverMaxWindowBits: 10 }, "permessage-deflate; server_max_window_bits=10"],
    [{ serverMaxWindowBits: 10 }, "permessage-deflate; server_max_window_bits=9"],
    [{ clientMaxWindowBits: 10 }, "permessage-deflate; client_max_window_bits=10"],
    [{ clientMaxWindowBits: 10 }, "permessage-deflate; client_max_window_bits=9"],
    [{}, 'permessage-deflate; client_max_window_bits="15"; server_max_window_bits=15'],
  ];
  for (const [options, answer] of cases) {
    const ext = new PerMessageDeflate(options);
    ext.offer();
    ext.finalize(answer);
    assert.ok(ext.enabled(), answer);
  }
});

Deno.test("PerMessageDeflate as a client rejects a response it did not ask for", () => {
  const cases: [PerMessageDeflateOptions, string][] = [
    [{}, "permessage-deflate; x_foo"],
    [{}, "x-webkit-deflate-frame"],
    [{}, "permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
    [{}, "permessage-deflate; client_max_window_bits"],
    [{}, "permessage-deflate; client_max_window_bits=16"],
    [{}, "permessage-deflate; server_max_window_bits=7"],
    [{}, "permessage-deflate; server_max_window_bits"],
    [{}, "permessage-deflate; client_no_context_takeover=1"],
    [{ serverMaxWindowBits: 10 }, "permessage-deflate; server_max_window_bits=11"],
    // RFC 7692 §7.1.1.1, §7.1.2.1: taken only by answering with it.
    [{ serverMaxWindowBits: 10 }, "permessage-deflate"],
    [{ serverNoContextTakeover: true }, "permessage-deflate"],
    [{ serverNoContextTakeover: true }, "permessage-deflate; client_no_context_takeover"],
    [{ clientMaxWindowBits: 10 }, "permessage-deflate; client_max_window_bits=12"],
  ];
  for (const [options, answer] of cases) {
    const ext = new PerMessageDeflate(options);
    ext.offer();
    const error = failure(() => ext.finalize(answer));
    assert.equal(error.eventHint, null, answer);
    assert.equal(ext.enabled(), false, answer);
  }
});

Deno.test("PerMessageDeflate rejects options outside their ranges", () => {
  const bad: PerMessageDeflateOptions[] = [
    { clientMaxWindowBits: 7 },
    { clientMaxWindowBits: 16 },
    { serverMaxWindowBits: 9.5 },
    { compressionLevel: 10 },
    { compressionLevel: -1 },
    { memoryLevel: 0 },
    { memoryLevel: 10 },
    { memoryLevel: 4.5 },
    { threshold: -1 },
    { maxMessageSize: Number.NaN },
  ];
  for (const options of bad) {
    assert.throws(() => new PerMessageDeflate(options), RangeError, JSON.stringify(options));
  }
});

Deno.test("PerMessageDeflate compresses within every agreed window, 8 bits included", () => {
  const message = textLike(16 * 1024, 7);
  for (let bits = 8; bits <= 15; bits++) {
    const [client, server] = negotiate(
      { serverMaxWindowBits: bits, threshold: 0 },
      { clientMaxWindowBits: bits, threshold: 0 },
    );
    for (const [from, to] of [[client, server], [server, client]] as const) {
      const frames = send(from, Opcode.TEXT, message);
      assert.ok(fitsWindow(bits, stream(frames), message), `${bits} bits`);
      assert.deepEqual(receive(to, frames), message);
    }
  }
  // The check has teeth: a 15-bit stream does not fit an 8-bit window.
  const [client] = negotiate({ threshold: 0 });
  assert.equal(fitsWindow(8, stream(send(client, Opcode.TEXT, message)), message), false);
});

Deno.test("PerMessageDeflate as a server enforces the client's agreed window", () => {
  const server = new PerMessageDeflate();
  assert.equal(
    server.accept("permessage-deflate; client_max_window_bits=9"),
    "permessage-deflate; client_max_window_bits=9",
  );
  // A client that ignores the agreement and compresses with 15 bits.
  const rogue = new PerMessageDeflate({ threshold: 0 });
  rogue.finalize("permessage-deflate");
  const frames = send(rogue, Opcode.TEXT, textLike(64 * 1024, 9));
  assert.equal(closeCode(() => receive(server, frames)), 1007);
});

// --------------------------------------------------------------- examples

Deno.test("PerMessageDeflate compresses the RFC 7692 §7.2.3.1 and §7.2.3.2 examples byte for byte", () => {
  const [client] = negotiate({ threshold: 0 });
  const hello = encoder.encode("Hello");
  const first = client.frameOutbound(Opcode.TEXT, NO_RSV, hello, true);
  assert.deepEqual(first.rsv, RSV1);
  assert.deepEqual(first.data, bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
  const second = client.frameOutbound(Opcode.TEXT, NO_RSV, hello, true);
  assert.deepEqual(second.data, bytes(0xf2, 0x00, 0x11, 0x00, 0x00));
});

Deno.test("PerMessageDeflate without context takeover compresses each message afresh", () => {
  const [client] = negotiate({ threshold: 0, clientNoContextTakeover: true });
  const hello = encoder.encode("Hello");
  for (let i = 0; i < 3; i++) {
    const frame = client.frameOutbound(Opcode.TEXT, NO_RSV, hello, true);
    assert.deepEqual(frame.data, bytes(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
  }
});

Deno.test("PerMessageDeflate decompresses the RFC 7692 §7.2.3 examples", () => {
  const examples: [string, number[][][]][] = [
    ["§7.2.3.1", [[[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]]]],
    ["§7.2.3.1 fragmented", [[[0xf2, 0x48, 0xcd], [0xc9, 0xc9, 0x07, 0x00]]]],
    ["§7.2.3.2", [[[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]], [[0xf2, 0x00, 0x11, 0x00, 0x00]]]],
    ["§7.2.3.3", [[[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]]]],
    ["§7.2.3.4", [[[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]]]],
    // BFINAL ends zlib's stream; the next message still shares the window.
    ["§7.2.3.4 then §7.2.3.2", [[[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]], [[
      0xf2,
      0x00,
      0x11,
      0x00,
      0x00,
    ]]]],
    ["§7.2.3.5", [[[
      0xf2,
      0x48,
      0x05,
      0x00,
      0x00,
      0x00,
      0xff,
      0xff,
      0xca,
      0xc9,
      0xc9,
      0x07,
      0x00,
    ]]]],
  ];
  for (const [name, messages] of examples) {
    const server = new PerMessageDeflate();
    server.accept("permessage-deflate");
    for (const fragments of messages) {
      const frames = fragments.map((payload, i): WireFrame => ({
        opcode: i === 0 ? Opcode.TEXT : Opcode.CONTINUATION,
        rsv: i === 0 ? RSV1 : NO_RSV,
        data: new Uint8Array(payload),
        fin: i + 1 === fragments.length,
      }));
      assert.equal(decoder.decode(receive(server, frames)), "Hello", name);
    }
  }
});

Deno.test("PerMessageDeflate sends an empty message as one 00 byte (RFC 7692 §7.2.3.6)", () => {
  const [client, server] = negotiate({ threshold: 0 });
  const empty = client.frameOutbound(Opcode.BINARY, NO_RSV, new Uint8Array(), true);
  assert.deepEqual(empty, { rsv: RSV1, data: bytes(0x00) });
  // After a flushed fragment, an empty final fragment is 00 as well.
  const first = client.frameOutbound(Opcode.TEXT, NO_RSV, encoder.encode("Hel"), false);
  assert.deepEqual(first.data.subarray(-4), bytes(...TAIL), "a non-final frame keeps its tail");
  const last = client.frameOutbound(Opcode.CONTINUATION, NO_RSV, new Uint8Array(), true);
  assert.deepEqual(last, { rsv: NO_RSV, data: bytes(0x00) });

  assert.deepEqual(
    receive(server, [{ opcode: Opcode.BINARY, rsv: RSV1, data: bytes(0), fin: true }]),
    new Uint8Array(),
  );
  const frames: WireFrame[] = [
    { opcode: Opcode.TEXT, ...first, fin: false },
    { opcode: Opcode.CONTINUATION, ...last, fin: true },
  ];
  assert.equal(decoder.decode(receive(server, frames)), "Hel");
});

// -------------------------------------------------------------- round trips

Deno.test("PerMessageDeflate round-trips messages of every size both ways, fragmented or not", () => {
  const sizes = [0, 1, 125, 64 * 1024, 1024 * 1024];
  const modes: [string, PerMessageDeflateOptions][] = [
    ["context takeover", {}],
    ["no context takeover", { clientNoContextTakeover: true, serverNoContextTakeover: true }],
  ];
  for (const [mode, options] of modes) {
    const [client, server] = negotiate({ ...options, threshold: 0 }, { threshold: 0 });
    const random = prng(42);
    for (const size of sizes) {
      for (
        const [kind, message] of [["text", textLike(size)], [
          "random",
          randomBytes(prng(2), size),
        ]] as const
      ) {
        for (const pieces of [1, 4]) {
          for (const [from, to] of [[client, server], [server, client]]) {
            const label = `${mode}, ${kind} ${size} B in ${pieces} frames`;
            const opcode = kind === "text" ? Opcode.TEXT : Opcode.BINARY;
            const frames = send(from!, opcode, message, pieces, random);
            assert.ok(frames[0]!.rsv.rsv1, label);
            assert.ok(frames.slice(1).every((f) => !f.rsv.rsv1), label);
            const received = receive(to!, frames, random);
            assert.ok(
              received.length === message.length && received.every((b, i) => b === message[i]),
              label,
            );
          }
        }
      }
    }
  }
});

Deno.test("PerMessageDeflate shrinks a repeated message only with context takeover", () => {
  const message = textLike(4096, 5);
  const [client, server] = negotiate({ threshold: 0 }, {
    serverNoContextTakeover: true,
    threshold: 0,
  });
  const sizes = (ext: PerMessageDeflate, peer: PerMessageDeflate) =>
    [0, 1].map(() => {
      const frames = send(ext, Opcode.TEXT, message);
      assert.deepEqual(receive(peer, frames), message);
      return frames[0]!.data.length;
    });
  const [clientFirst, clientSecond] = sizes(client, server);
  assert.ok(clientSecond! < clientFirst! / 10, `${clientSecond} vs ${clientFirst}`);
  const [serverFirst, serverSecond] = sizes(server, client);
  assert.equal(serverSecond, serverFirst);
});

Deno.test("PerMessageDeflate reuses zlib streams across connections without sharing history", () => {
  // Without context takeover a connection gives its zlib streams up after
  // each message, and another connection may take them: what one message
  // left in a window must never decode on another connection.
  const secret = textLike(2048, 6);
  const options = { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true };
  const [clientA, serverA] = negotiate(options, options);
  assert.deepEqual(receive(serverA, send(clientA, Opcode.TEXT, secret)), secret);
  assert.deepEqual(receive(clientA, send(serverA, Opcode.TEXT, secret)), secret);
  // A stream that copies its whole text from 2048 bytes back: only a
  // window that holds the secret decodes it.
  const copy = pako.deflateRaw(secret, { dictionary: secret });
  const frame = (data: Uint8Array): WireFrame[] => [
    { opcode: Opcode.TEXT, rsv: RSV1, data, fin: true },
  ];
  // Where the window does hold it (context takeover), it decodes.
  const [clientE, serverE] = negotiate({ threshold: 0 }, { threshold: 0 });
  assert.deepEqual(receive(serverE, send(clientE, Opcode.TEXT, secret)), secret);
  assert.deepEqual(receive(serverE, frame(copy)), secret);
  for (let i = 0; i < 2; i++) {
    const [clientB, serverB] = negotiate(options, options);
    assert.equal(closeCode(() => receive(serverB, frame(copy))), 1007, "server side");
    assert.equal(closeCode(() => receive(clientB, frame(copy))), 1007, "client side");
  }
  // Round trips keep working on connections that take turns.
  const [clientC, serverC] = negotiate(options, options);
  const [clientD, serverD] = negotiate(options, options);
  for (let i = 0; i < 6; i++) {
    const message = textLike(3000 + i, 10 + i);
    const [client, server] = i % 2 === 0 ? [clientC, serverC] : [clientD, serverD];
    assert.deepEqual(receive(server, send(client, Opcode.TEXT, message, 1 + (i % 3))), message);
    assert.deepEqual(receive(client, send(server, Opcode.TEXT, message, 1 + (i % 3))), message);
  }
});

Deno.test("PerMessageDeflate compresses at every memory level, its kept streams apart", () => {
  // Three 40 KiB messages: the window slides, which a smaller hash table
  // must survive as well as the default one.
  const messages = [0, 1, 2].map((seed) => textLike(40 * 1024, 20 + seed));
  const sizes = new Map<number, number>();
  for (let memoryLevel = 1; memoryLevel <= 9; memoryLevel++) {
    const [client, server] = negotiate({ threshold: 0 }, { threshold: 0, memoryLevel });
    let size = 0;
    for (const message of messages) {
      const frames = send(server, Opcode.TEXT, message, 2);
      assert.deepEqual(receive(client, frames), message, `memoryLevel ${memoryLevel}`);
      size += stream(frames).length;
    }
    sizes.set(memoryLevel, size);
  }
  // The level reaches zlib: a 256-entry hash table finds fewer matches.
  assert.ok(sizes.get(1)! > sizes.get(8)!, `${sizes.get(1)} vs ${sizes.get(8)} bytes`);
  // Below 8, with zlib's own hash, whose table the level sizes: pako's
  // newer hash keeps 2^15 entries at any level.
  for (let memoryLevel = 1; memoryLevel <= 9; memoryLevel++) {
    const strm = new pako.ZStream();
    const legacyHash = memoryLevel < 8;
    pako.zlibDeflateInit2(strm, 6, 8, -15, memoryLevel, pako.Z_DEFAULT_STRATEGY, legacyHash);
    const reference = pointZStream(strm, messages[0]!, new Uint8Array(64 * 1024));
    assert.equal(pako.zlibDeflate(strm, pako.Z_SYNC_FLUSH), pako.Z_OK);
    const [, server] = negotiate({}, { threshold: 0, memoryLevel });
    assert.deepEqual(
      stream(send(server, Opcode.TEXT, messages[0]!)),
      reference.subarray(0, strm.next_out),
      `memoryLevel ${memoryLevel}`,
    );
  }

  // A deflater given up after a message (no context takeover) serves only
  // connections that would have made it alike.
  const message = textLike(8 * 1024, 30);
  const options = { threshold: 0, serverNoContextTakeover: true };
  const sent = (memoryLevel: number): Uint8Array => {
    const [, server] = negotiate({}, { ...options, memoryLevel });
    return stream(send(server, Opcode.TEXT, message));
  };
  const expected = sent(8);
  const smaller = sent(1);
  assert.notDeepEqual(smaller, expected);
  // Take every kept deflater of the default level out of the pool, so that
  // the next one kept is the one made at level 1.
  for (let i = 0; i < 4; i++) {
    const [, server] = negotiate({}, options);
    server.frameOutbound(Opcode.TEXT, NO_RSV, message, false);
  }
  assert.deepEqual(sent(1), smaller);
  assert.deepEqual(sent(8), expected);
});

Deno.test("resetInflater leaves an inflater as pako's own resets do, code tables kept", async (t) => {
  // resetInflater writes pako's inflate state itself, to keep the tables
  // pako's reset would allocate afresh: a pako whose reset sets more, or
  // other values, must fail here, not decode wrongly.
  const inflater = (): pako.ZStream => {
    const strm = new pako.ZStream();
    assert.equal(pako.zlibInflateInit2(strm, -15), pako.Z_OK);
    return strm;
  };
  const inflate = (strm: pako.ZStream, data: Uint8Array): Uint8Array => {
    const out = pointZStream(strm, data, new Uint8Array(1 << 16));
    const status = pako.zlibInflate(strm, pako.Z_SYNC_FLUSH);
    assert.ok(status === pako.Z_OK || status === pako.Z_STREAM_END, `status ${status}`);
    return out.slice(0, strm.next_out);
  };
  const TABLES = ["lencode", "lendyn", "distcode", "distdyn"];
  const comparable = (strm: pako.ZStream): Record<string, unknown> => {
    const state = strm.state as Record<string, unknown>;
    const fields: Record<string, unknown> = {
      total_in: strm.total_in,
      total_out: strm.total_out,
      msg: strm.msg,
      adler: strm.adler,
    };
    for (const [key, value] of Object.entries(state)) {
      if (key !== "strm" && !TABLES.includes(key)) fields[key] = value;
    }
    return fields;
  };
  // Dynamic blocks, so that both tables were built; each stream ends.
  const first = pako.deflateRaw(textLike(5000, 3));
  const second = pako.deflateRaw(textLike(7000, 4));
  for (const keepWindow of [false, true]) {
    await t.step(keepWindow ? "inflateResetKeep" : "inflateReset", () => {
      const theirs = inflater();
      const ours = inflater();
      assert.deepEqual(inflate(ours, first), inflate(theirs, first));
      const tables = TABLES.map((key) => (ours.state as Record<string, unknown>)[key]);
      const reset = keepWindow ? pako.zlibInflateResetKeep : pako.zlibInflateReset;
      assert.equal(reset(theirs), pako.Z_OK);
      resetInflater(ours, { keepWindow });
      assert.deepEqual(comparable(ours), comparable(theirs));
      const state = ours.state as Record<string, unknown>;
      assert.equal(state["lencode"], state["lendyn"]);
      assert.equal(state["distcode"], state["distdyn"]);
      assert.equal(state["lendyn"], tables[1], "the length table is kept");
      assert.equal(state["distdyn"], tables[3], "the distance table is kept");
      // And the next stream decodes alike, to the same state.
      assert.deepEqual(inflate(ours, second), textLike(7000, 4));
      assert.deepEqual(inflate(theirs, second), textLike(7000, 4));
      assert.deepEqual(comparable(ours), comparable(theirs));
    });
  }
});

Deno.test("PerMessageDeflate sends single-frame messages under the threshold uncompressed", () => {
  const [client, server] = negotiate({}, {});
  const short = textLike(31);
  const plain = client.frameOutbound(Opcode.TEXT, NO_RSV, short, true);
  assert.equal(plain.rsv, NO_RSV);
  assert.equal(plain.data, short);
  assert.deepEqual(receive(server, [{ opcode: Opcode.TEXT, ...plain, fin: true }]), short);

  assert.ok(client.frameOutbound(Opcode.TEXT, NO_RSV, textLike(32), true).rsv.rsv1);
  // A first fragment is compressed whatever its size: the message may grow.
  const first = client.frameOutbound(Opcode.TEXT, NO_RSV, textLike(3), false);
  assert.ok(first.rsv.rsv1);
  const last = client.frameOutbound(Opcode.CONTINUATION, NO_RSV, textLike(3), true);
  assert.equal(last.rsv.rsv1, false);
  assert.notDeepEqual(last.data, textLike(3));
});

Deno.test("PerMessageDeflate round-trips at compression level 0 and keeps RSV2 and RSV3", () => {
  const [client, server] = negotiate({ compressionLevel: 0, threshold: 0 }, {});
  const message = randomBytes(prng(2), 70_000);
  const frames = send(client, Opcode.BINARY, message, 3);
  assert.deepEqual(receive(server, frames), message);
  const rsv = { rsv1: false, rsv2: true, rsv3: true };
  assert.deepEqual(client.frameOutbound(Opcode.BINARY, rsv, message, true).rsv, {
    rsv1: true,
    rsv2: true,
    rsv3: true,
  });
});

Deno.test("PerMessageDeflate leaves control frames and uncompressed messages alone", () => {
  const [client, server] = negotiate({ threshold: 0 });
  const ping = bytes(1, 2, 3);
  assert.deepEqual(client.frameOutbound(Opcode.PING, NO_RSV, ping, true), {
    rsv: NO_RSV,
    data: ping,
  });
  assert.equal(server.frameInboundHeader(Opcode.BINARY, NO_RSV, 3), NO_RSV);
  assert.equal(server.frameInboundPayloadData(ping), ping);
  assert.equal(server.frameInboundComplete(true), null);
});

Deno.test("PerMessageDeflate does nothing until negotiation enables it", () => {
  const ext = new PerMessageDeflate({ threshold: 0 });
  const data = encoder.encode("Hello");
  assert.deepEqual(ext.frameOutbound(Opcode.TEXT, NO_RSV, data, true), { rsv: NO_RSV, data });
  assert.equal(ext.frameInboundHeader(Opcode.TEXT, RSV1, 5), NO_RSV);
  assert.equal(ext.frameInboundPayloadData(data), data);
  assert.equal(ext.frameInboundComplete(true), null);
});

// ----------------------------------------------------------------- failures

Deno.test("PerMessageDeflate fails with 1002 on RSV1 in a continuation or control frame", () => {
  const [, server] = negotiate();
  server.frameInboundHeader(Opcode.TEXT, RSV1, 3);
  assert.equal(closeCode(() => server.frameInboundHeader(Opcode.CONTINUATION, RSV1, 3)), 1002);
  for (const opcode of [Opcode.PING, Opcode.PONG, Opcode.CLOSE]) {
    const [, fresh] = negotiate();
    assert.equal(closeCode(() => fresh.frameInboundHeader(opcode, RSV1, 0)), 1002);
  }
});

Deno.test("PerMessageDeflate fails with 1007 on data that does not inflate", () => {
  const corrupt = [
    bytes(0xff, 0xff, 0xff), // reserved block type 11
    bytes(0x00, 0x05, 0x00, 0x00, 0x00), // stored block whose NLEN is not ~LEN
    bytes(0xf2, 0x00, 0x11, 0x00, 0x00), // §7.2.3.2 on a fresh window: a distance before the start
  ];
  for (const data of corrupt) {
    const [, server] = negotiate();
    assert.equal(
      closeCode(() => receive(server, [{ opcode: Opcode.BINARY, rsv: RSV1, data, fin: true }])),
      1007,
      data.join(),
    );
  }
});

Deno.test("PerMessageDeflate fails with 1007 on a message that does not end at a block boundary", () => {
  // "\x01..\x05" in a stored block, as a level-0 sender writes it, tail stripped.
  const stored = bytes(0x00, 0x05, 0x00, 0xfa, 0xff, 1, 2, 3, 4, 5, 0x00);
  const [, cut] = negotiate();
  const inside = { opcode: Opcode.BINARY, rsv: RSV1, data: stored.subarray(0, 7), fin: true };
  assert.equal(closeCode(() => receive(cut, [inside])), 1007);
  const [, server] = negotiate();
  const frame = { opcode: Opcode.BINARY, rsv: RSV1, data: stored, fin: true };
  assert.deepEqual(receive(server, [frame, frame]), bytes(1, 2, 3, 4, 5, 1, 2, 3, 4, 5));
});

Deno.test("PerMessageDeflate takes a message whose sender kept the tail, and the next after it", () => {
  // RFC 7692 §7.2.1 has a sender remove the 00 00 ff ff its sync flush
  // ends with; one that keeps it ends its data at a block's end, which
  // §7.2.2's receiver decodes (and ws takes). Our tail is then left out:
  // fed, it began a block no data finished (1007), and under context
  // takeover the next message would have been read as its rest.
  const stored = bytes(0x00, 0x05, 0x00, 0xfa, 0xff, 1, 2, 3, 4, 5, 0x00);
  const kept = concatAll([stored, bytes(...TAIL)]);
  const next = { opcode: Opcode.BINARY, rsv: RSV1, data: stored, fin: true };
  const whole = { opcode: Opcode.BINARY, rsv: RSV1, data: kept, fin: true };
  // Or in a fragment, with an empty final fragment behind it.
  const fragmented: WireFrame[] = [
    { opcode: Opcode.BINARY, rsv: RSV1, data: kept, fin: false },
    { opcode: Opcode.CONTINUATION, rsv: NO_RSV, data: bytes(), fin: true },
  ];
  for (const frames of [[whole], fragmented]) {
    const [, server] = negotiate();
    assert.deepEqual(receive(server, frames), bytes(1, 2, 3, 4, 5));
    assert.deepEqual(receive(server, [next]), bytes(1, 2, 3, 4, 5));
  }
  // pako's sync flush, as a sender that forgot to strip it sends it.
  const [client, server] = negotiate({ threshold: 0 });
  for (const text of ["Hello", "Hello again"]) {
    const { data } = client.frameOutbound(Opcode.TEXT, NO_RSV, encoder.encode(text), true);
    const withTail = concatAll([data, bytes(...TAIL)]);
    const frame = { opcode: Opcode.TEXT, rsv: RSV1, data: withTail, fin: true };
    assert.equal(decoder.decode(receive(server, [frame])), text);
  }
});

Deno.test("PerMessageDeflate takes a compressed message without any DEFLATE bytes as empty", () => {
  // No encoder makes one (they send 00), and RFC 7692 gives it no meaning;
  // ws and websockets take it as empty. Its tail alone, fed, left zlib
  // inside a stored block, and the next message came out as its own bytes.
  const [, server] = negotiate();
  const empty = { opcode: Opcode.BINARY, rsv: RSV1, data: bytes(), fin: true };
  const stored = { ...empty, data: bytes(0x00, 0x02, 0x00, 0xfd, 0xff, 7, 8, 0x00) };
  assert.deepEqual(receive(server, [empty]), bytes());
  assert.deepEqual(receive(server, [stored]), bytes(7, 8));
});

Deno.test("PerMessageDeflate goes on after a message that ends in a final block at its tail", () => {
  // A level-0 encoder finishing its stream: the stored block with BFINAL
  // set is only complete with the tail. The next message must not be lost.
  for (const level of [0, 6] as const) {
    const [, server] = negotiate();
    // As §7.2.1 has a sender do: a stream that ends in 00 00 ff ff loses them.
    const messages = ["", "Hello", "after"].map((text) => {
      const stream = pako.deflateRaw(encoder.encode(text), { level });
      return stream.join().endsWith(TAIL.join()) ? stream.subarray(0, -4) : stream;
    });
    const texts = messages.map((data) =>
      decoder.decode(receive(server, [{ opcode: Opcode.TEXT, rsv: RSV1, data, fin: true }]))
    );
    assert.deepEqual(texts, ["", "Hello", "after"], `level ${level}`);
  }
});

Deno.test("PerMessageDeflate fails a decompression bomb with 1009 without inflating it", () => {
  // Sync-flushed runs of zeros compress to identical 1036-byte blocks, so a
  // 1 GiB message costs about 1 MiB on the wire.
  const strm = new pako.ZStream();
  pako.zlibDeflateInit2(strm, 9, 8, -15, 8, pako.Z_DEFAULT_STRATEGY);
  const zeros = new Uint8Array(1 << 20);
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < 2; i++) {
    const out = pointZStream(strm, zeros, new Uint8Array(1 << 16));
    assert.equal(pako.zlibDeflate(strm, pako.Z_SYNC_FLUSH), pako.Z_OK);
    blocks.push(out.slice(0, strm.next_out));
  }
  const bomb = concatAll([blocks[0]!, ...Array<Uint8Array>(1023).fill(blocks[1]!)]);
  assert.ok(bomb.length < 1.1 * 1024 * 1024);

  const limit = 1024 * 1024;
  for (const slice of [bomb.length, 64 * 1024, 1000]) {
    const server = new PerMessageDeflate({ maxMessageSize: limit });
    server.accept("permessage-deflate");
    server.frameInboundHeader(Opcode.BINARY, RSV1, bomb.length);
    let passedUp = 0;
    const started = performance.now();
    const code = closeCode(() => {
      for (let offset = 0; offset < bomb.length; offset += slice) {
        passedUp += server.frameInboundPayloadData(bomb.subarray(offset, offset + slice)).length;
      }
      // The bytes up to the limit go up first; the error comes with the next hook call.
      server.frameInboundComplete(true);
    });
    assert.equal(code, 1009, `slices of ${slice}`);
    assert.ok(passedUp <= limit, `${passedUp} bytes passed up`);
    // Inflating the whole gigabyte would take seconds.
    assert.ok(performance.now() - started < 1000, "stopped early");
  }

  // The limit counts the whole message, across frames.
  const [client, server] = negotiate({ threshold: 0 }, { maxMessageSize: 100_000 });
  const frames = send(client, Opcode.BINARY, new Uint8Array(150_000), 3);
  assert.equal(closeCode(() => receive(server, frames)), 1009);
  const [client2, server2] = negotiate({ threshold: 0 }, { maxMessageSize: 100_000 });
  const exact = new Uint8Array(100_000);
  assert.deepEqual(receive(server2, send(client2, Opcode.BINARY, exact, 3)), exact);
});
