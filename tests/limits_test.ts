// Every engine-level limit of limits.ts, just at it and just over it:
// header bytes and header count through WSConnection (both roles), frame
// size, message size and fragments through Connection (both roles), and
// the decompressed size through PerMessageDeflate on a connection. The
// time limits (handshakeTimeout, closeTimeout) belong to the drivers.
import assert from "node:assert/strict";
import * as pako from "pako";
import * as ws from "../mod.ts";
import { PerMessageDeflate } from "../permessage_deflate.ts";
import { acceptToken } from "../handshake.ts";
import { canon, encodeFrame } from "./_fuzz.ts";
import { concat, utf8 } from "./_util.ts";

const ROLES = [ws.ConnectionType.SERVER, ws.ConnectionType.CLIENT] as const;
const ZERO_KEY = new Uint8Array(4);

/** A frame as the peer of `role` sends it (masked towards a server). */
function frame(
  role: ws.ConnectionType,
  fin: boolean,
  opcode: number,
  payload: Uint8Array,
  rsv = 0,
): Uint8Array {
  const masked = role === ws.ConnectionType.SERVER;
  return encodeFrame({ fin, rsv, opcode, masked, maskKey: ZERO_KEY, payload });
}

/** Feed a stream in large pieces (the payloads are big) and return the canonical events. */
function receive(conn: ws.Connection, stream: Uint8Array) {
  const events: ws.Event[] = [];
  for (let at = 0; at < stream.length; at += 1 << 20) {
    conn.receiveData(stream.slice(at, at + (1 << 20)));
    for (const event of conn.events()) events.push(event);
  }
  return canon(events);
}

const kinds = (events: ReturnType<typeof canon>) =>
  events.map((e) =>
    e.type === "Close" ? `Close ${e["code"]}` : `${e.type} ${e["end"] ?? ""}`.trim()
  );

Deno.test("DEFAULT_LIMITS documents every limit with its default", () => {
  assert.deepEqual({ ...ws.DEFAULT_LIMITS }, {
    maxHeaderBytes: 16 * 1024,
    maxHeaderCount: 100,
    maxFrameSize: 64 * 1024 * 1024,
    maxMessageSize: 64 * 1024 * 1024,
    maxFragments: 131072,
    handshakeTimeout: 10_000,
    closeTimeout: 5_000,
  });
  assert.ok(Object.isFrozen(ws.DEFAULT_LIMITS));
});

Deno.test("limits that are not non-negative integers are refused", () => {
  for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(
      () => new ws.Connection(ws.ConnectionType.SERVER, { limits: { maxFrameSize: bad } }),
      RangeError,
    );
    assert.throws(
      () => new ws.WSConnection(ws.ConnectionType.SERVER, { limits: { maxHeaderBytes: bad } }),
      RangeError,
    );
  }
});

// ------------------------------------------------------------ the handshake

/** A request head of exactly `size` bytes, padded in one header. */
function requestOfSize(size: number, extraFields = 0): Uint8Array {
  let head = "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n" +
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
    "Sec-WebSocket-Version: 13\r\n";
  for (let i = 0; i < extraFields; i++) head += `X-${i}: ${i}\r\n`;
  const bare = head.length + "X-Pad: \r\n\r\n".length;
  assert.ok(size >= bare, `a request needs ${bare} bytes`);
  return utf8(`${head}X-Pad: ${"p".repeat(size - bare)}\r\n\r\n`);
}

function serverOutcome(request: Uint8Array, limits: Partial<ws.Limits>, chunk: number): string {
  const server = new ws.WSConnection(ws.ConnectionType.SERVER, { limits });
  try {
    for (let at = 0; at < request.length; at += chunk) {
      server.receiveData(request.slice(at, at + chunk));
    }
    const events = [...server.events()];
    return events[0] instanceof ws.Request ? "Request" : `events ${events.length}`;
  } catch (error) {
    if (error instanceof ws.RemoteProtocolError && error.eventHint instanceof ws.RejectConnection) {
      return `Reject ${error.eventHint.statusCode}`;
    }
    throw error;
  }
}

for (const limit of [ws.DEFAULT_LIMITS.maxHeaderBytes, 300]) {
  const limits = limit === ws.DEFAULT_LIMITS.maxHeaderBytes ? {} : { maxHeaderBytes: limit };
  Deno.test(`a server takes a request head of maxHeaderBytes (${limit}) and answers one byte more with 431`, () => {
    for (const chunk of [1 << 20, 1, 7]) {
      assert.equal(serverOutcome(requestOfSize(limit), limits, chunk), "Request", `chunk ${chunk}`);
      assert.equal(serverOutcome(requestOfSize(limit - 1), limits, chunk), "Request");
      assert.equal(serverOutcome(requestOfSize(limit + 1), limits, chunk), "Reject 431");
    }
  });
}

for (const count of [ws.DEFAULT_LIMITS.maxHeaderCount, 8]) {
  const limits = count === ws.DEFAULT_LIMITS.maxHeaderCount ? {} : { maxHeaderCount: count };
  Deno.test(`a server takes maxHeaderCount (${count}) header fields and answers one more with 431`, () => {
    // The base request has 6 fields with X-Pad: fill up to the limit.
    const size = (fields: number) => requestOfSize(2000, fields - 6);
    for (const chunk of [1 << 20, 3]) {
      assert.equal(serverOutcome(size(count), limits, chunk), "Request");
      assert.equal(serverOutcome(size(count + 1), limits, chunk), "Reject 431");
    }
  });
}

function clientOutcome(
  pad: (accept: string) => Uint8Array,
  limits: Partial<ws.Limits>,
): string {
  const client = new ws.WSConnection(ws.ConnectionType.CLIENT, { limits });
  const request = new TextDecoder().decode(
    client.send(new ws.Request({ host: "example.com", target: "/" })),
  );
  const key = /Sec-WebSocket-Key: (\S+)/.exec(request)![1]!;
  try {
    client.receiveData(pad(acceptToken(key)));
    const events = [...client.events()];
    return events[0] instanceof ws.AcceptConnection ? "Accept" : `events ${events.length}`;
  } catch (error) {
    if (error instanceof ws.RemoteProtocolError && error.eventHint === null) return "Error";
    throw error;
  }
}

function responseOfSize(size: number, fields = 4): (accept: string) => Uint8Array {
  return (accept) => {
    let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n`;
    for (let i = 4; i < fields; i++) head += `X-${i}: ${i}\r\n`;
    const bare = head.length + "X-Pad: \r\n\r\n".length;
    return utf8(`${head}X-Pad: ${"p".repeat(size - bare)}\r\n\r\n`);
  };
}

Deno.test("a client takes a response head of maxHeaderBytes and fails on one byte more", () => {
  for (
    const [limit, limits] of [[ws.DEFAULT_LIMITS.maxHeaderBytes, {}], [400, {
      maxHeaderBytes: 400,
    }]] as const
  ) {
    assert.equal(clientOutcome(responseOfSize(limit), limits), "Accept");
    assert.equal(clientOutcome(responseOfSize(limit + 1), limits), "Error");
  }
});

Deno.test("a client takes maxHeaderCount response fields and fails on one more", () => {
  for (
    const [count, limits] of [[ws.DEFAULT_LIMITS.maxHeaderCount, {}], [6, {
      maxHeaderCount: 6,
    }]] as const
  ) {
    // Three fields, X-4 to X-(fields - 1), then X-Pad: `fields` fields in all.
    assert.equal(clientOutcome(responseOfSize(3000, count), limits), "Accept");
    assert.equal(clientOutcome(responseOfSize(3000, count + 1), limits), "Error");
  }
});

// ------------------------------------------------------------------ frames

for (const role of ROLES) {
  Deno.test(`${role}: a frame of maxFrameSize passes and one byte more closes with 1009`, () => {
    for (const max of [0, 125, 126, 0xffff, 0x10000, 1000]) {
      const conn = () => new ws.Connection(role, { limits: { maxFrameSize: max } });
      assert.deepEqual(kinds(receive(conn(), frame(role, true, 2, new Uint8Array(max)))), [
        "Bytes true",
      ]);
      assert.deepEqual(kinds(receive(conn(), frame(role, true, 2, new Uint8Array(max + 1)))), [
        "Close 1009",
      ]);
    }
  });

  Deno.test(`${role}: the default maxFrameSize (64 MiB) is enforced at the header`, () => {
    const max = ws.DEFAULT_LIMITS.maxFrameSize;
    const header = (length: number) =>
      encodeFrame({
        fin: true,
        rsv: 0,
        opcode: 2,
        masked: role === ws.ConnectionType.SERVER,
        maskKey: ZERO_KEY,
        payload: new Uint8Array(0),
        length: { form: 64, value: BigInt(length) },
      });
    const at = new ws.Connection(role);
    assert.deepEqual(kinds(receive(at, header(max))), []); // waiting for the payload
    const over = new ws.Connection(role);
    assert.deepEqual(kinds(receive(over, header(max + 1))), ["Close 1009"]);
  });

  Deno.test(`${role}: a message of maxMessageSize passes and one byte more closes with 1009`, () => {
    const max = 1000;
    const limits = { maxMessageSize: max };
    const fragmented = (total: number) =>
      concat(
        frame(role, false, 1, utf8("a".repeat(400))),
        frame(role, false, 0, utf8("b".repeat(400))),
        frame(role, true, 0, utf8("c".repeat(total - 800))),
      );
    for (
      const [name, make] of [
        ["one frame", (n: number) => frame(role, true, 2, new Uint8Array(n))],
        ["three fragments", fragmented],
      ] as const
    ) {
      const at = receive(new ws.Connection(role, { limits }), make(max));
      assert.deepEqual(kinds(at), [name === "one frame" ? "Bytes true" : "Text true"], name);
      const over = receive(new ws.Connection(role, { limits }), make(max + 1));
      assert.deepEqual(kinds(over), ["Close 1009"], name);
    }
  });

  Deno.test(`${role}: the default maxMessageSize (64 MiB) passes at the limit and closes one byte over`, () => {
    const max = ws.DEFAULT_LIMITS.maxMessageSize;
    // Headers built by hand, payloads fed as zeros (the mask key is zero).
    const feed = (conn: ws.Connection, fin: boolean, opcode: number, length: number) => {
      conn.receiveData(encodeFrame({
        fin,
        rsv: 0,
        opcode,
        masked: role === ws.ConnectionType.SERVER,
        maskKey: ZERO_KEY,
        payload: new Uint8Array(0),
        length: { form: length <= 125 ? 7 : length <= 0xffff ? 16 : 64, value: BigInt(length) },
      }));
      const events: ws.Event[] = [...conn.events()];
      for (let left = length; left > 0; left -= 8 << 20) {
        conn.receiveData(new Uint8Array(Math.min(left, 8 << 20)));
        for (const event of conn.events()) events.push(event);
      }
      return events;
    };
    const at = new ws.Connection(role);
    const atEvents = feed(at, true, 2, max);
    assert.equal(atEvents.reduce((n, e) => n + (e as ws.BytesMessage).data.length, 0), max);
    assert.ok((atEvents.at(-1) as ws.BytesMessage).messageFinished);
    const over = new ws.Connection(role);
    feed(over, false, 2, max);
    const overEvents = feed(over, true, 0, 1);
    assert.deepEqual(kinds(canon(overEvents)), ["Close 1009"]);
  });

  Deno.test(`${role}: a message of maxFragments frames passes and one more closes with 1009`, () => {
    for (const max of [1, 2, 5]) {
      const limits = { maxFragments: max };
      const message = (n: number) =>
        concat(
          ...Array.from({ length: n }, (_, i) =>
            concat(
              frame(role, i === n - 1, i === 0 ? 1 : 0, utf8("x")),
              // Control frames between fragments do not count.
              frame(role, true, 9, new Uint8Array(0)),
            )),
        );
      const at = kinds(receive(new ws.Connection(role, { limits }), message(max)));
      assert.equal(at.filter((k) => k === "Text true").length, 1, `${max}: ${at}`);
      assert.ok(!at.some((k) => k.startsWith("Close")), `${max}: ${at}`);
      const over = kinds(receive(new ws.Connection(role, { limits }), message(max + 1)));
      assert.equal(over.at(-1), "Close 1009", `${max}: ${over}`);
    }
  });

  Deno.test(`${role}: the default maxFragments (131072) passes at the limit and closes one over`, () => {
    const max = ws.DEFAULT_LIMITS.maxFragments;
    const middle = frame(role, false, 0, new Uint8Array(0));
    const message = (n: number) => {
      const out = new Uint8Array(middle.length * n);
      for (let i = 0; i < n; i++) out.set(middle, i * middle.length);
      out.set(frame(role, false, 2, new Uint8Array(0)), 0);
      out.set(frame(role, true, 0, new Uint8Array(0)), (n - 1) * middle.length);
      return out;
    };
    const at = kinds(receive(new ws.Connection(role), message(max)));
    assert.equal(at.length, 1);
    assert.equal(at[0], "Bytes true");
    assert.deepEqual(kinds(receive(new ws.Connection(role), message(max + 1))), ["Close 1009"]);
  });

  // ------------------------------------------------- decompressed size

  /** A connection of `role` with permessage-deflate, and the encoder of its peer. */
  const deflatePair = (options: { maxMessageSize?: number; limits?: Partial<ws.Limits> }) => {
    const local = new PerMessageDeflate(
      options.maxMessageSize === undefined ? {} : { maxMessageSize: options.maxMessageSize },
    );
    const peer = new PerMessageDeflate({ threshold: 0 });
    const [client, server] = role === ws.ConnectionType.CLIENT ? [local, peer] : [peer, local];
    client.finalize(server.accept(client.offer())!);
    const peerType = role === ws.ConnectionType.SERVER
      ? ws.ConnectionType.CLIENT
      : ws.ConnectionType.SERVER;
    return {
      conn: new ws.Connection(role, { extensions: [local], limits: options.limits ?? {} }),
      encoder: new ws.FrameEncoder(peerType, { extensions: [peer] }),
      local,
    };
  };

  Deno.test(`${role}: the connection's maxMessageSize bounds what permessage-deflate inflates`, () => {
    // 8 MiB of zeros in 8 KiB: the extension's own limit (64 MiB) lets it all through.
    const bomb = pako.deflateRaw(new Uint8Array(8 << 20), { level: 9 });
    const { conn, local } = deflatePair({ limits: { maxMessageSize: 1024 } });
    const inflate = local.frameInboundPayloadData.bind(local);
    let inflated = 0;
    local.frameInboundPayloadData = (data, room) => {
      const out = inflate(data, room);
      inflated += out.length;
      return out;
    };
    assert.equal(kinds(receive(conn, frame(role, true, 2, bomb, 4))).at(-1), "Close 1009");
    assert.ok(inflated <= 1025, `${inflated} bytes inflated`);
  });

  Deno.test(`${role}: a compressed message inflating to maxMessageSize passes and one byte more closes with 1009`, () => {
    for (const max of [0, 1, 1000, 70_000]) {
      for (const where of ["extension", "connection"] as const) {
        const options = where === "extension"
          ? { maxMessageSize: max }
          : { limits: { maxMessageSize: max } };
        const at = deflatePair(options);
        const atEvents = kinds(receive(at.conn, at.encoder.encodeData(new Uint8Array(max), true)));
        assert.deepEqual(
          atEvents.filter((k) => k !== "Bytes false"),
          ["Bytes true"],
          `${where} ${max}`,
        );
        const over = deflatePair(options);
        const overEvents = kinds(
          receive(over.conn, over.encoder.encodeData(new Uint8Array(max + 1), true)),
        );
        assert.equal(overEvents.at(-1), "Close 1009", `${where} ${max}: ${overEvents}`);
      }
    }
  });

  Deno.test(`${role}: the decompressed limit counts the whole message across fragments`, () => {
    const max = 5000;
    const message = (encoder: ws.FrameEncoder, total: number) =>
      concat(
        encoder.encodeData(new Uint8Array(2000), false),
        encoder.encodeData(new Uint8Array(2000), false),
        encoder.encodeData(new Uint8Array(total - 4000), true),
      );
    const at = deflatePair({ maxMessageSize: max });
    assert.deepEqual(
      kinds(receive(at.conn, message(at.encoder, max))).filter((k) => k !== "Bytes false"),
      ["Bytes true"],
    );
    const over = deflatePair({ maxMessageSize: max });
    assert.equal(kinds(receive(over.conn, message(over.encoder, max + 1))).at(-1), "Close 1009");
  });
}
