// The Extension hooks as an extension of the application's own sees them:
// their order with several extensions (RFC 6455 §9.1), bytes given at a
// frame's end, control frames, a hook that throws, and the server's answer.
import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import { choppingsBy, feed } from "./_util.ts";

const NONE: ws.RsvBits = { rsv1: false, rsv2: false, rsv3: false };
const RSV2: ws.RsvBits = { rsv1: false, rsv2: true, rsv3: false };
const RSV3: ws.RsvBits = { rsv1: false, rsv2: false, rsv3: true };
const text = new TextEncoder();

/**
 * Puts one letter in front of each data frame's payload, and takes it off
 * inbound; `hold` keeps inbound bytes until the frame's end, and gives them
 * all then.
 */
class Letter implements ws.Extension {
  readonly name: string;
  readonly #letter: number;
  readonly #bit: ws.RsvBits;
  readonly #hold: boolean;
  #enabled = false;
  #active = false;
  #first = true;
  #held: Uint8Array[] = [];
  failNextOutbound = false;

  constructor(letter: string, bit: ws.RsvBits, hold = false) {
    this.name = `x-${letter.toLowerCase()}`;
    this.#letter = letter.charCodeAt(0);
    this.#bit = bit;
    this.#hold = hold;
  }
  enabled(): boolean {
    return this.#enabled;
  }
  offer(): string {
    return this.name;
  }
  accept(offer: string): string {
    this.#enabled = true;
    return offer;
  }
  finalize(): void {
    this.#enabled = true;
  }
  frameInboundHeader(opcode: ws.Opcode, rsv: ws.RsvBits): ws.RsvBits {
    this.#active = opcode < 8 && (this.#bit.rsv2 ? rsv.rsv2 : rsv.rsv3);
    this.#first = true;
    return this.#active ? this.#bit : NONE;
  }
  frameInboundPayloadData(data: Uint8Array): Uint8Array {
    if (!this.#active) return data;
    if (this.#first && data.length > 0) {
      assert.equal(data[0], this.#letter, `${this.name} sees its own letter first`);
      this.#first = false;
      data = data.subarray(1);
    }
    if (!this.#hold) return data;
    this.#held.push(data.slice());
    return new Uint8Array(0);
  }
  frameInboundComplete(): Uint8Array | null {
    if (!this.#active || !this.#hold) return null;
    const held = new Uint8Array(this.#held.reduce((size, piece) => size + piece.length, 0));
    let at = 0;
    for (const piece of this.#held.splice(0)) {
      held.set(piece, at);
      at += piece.length;
    }
    return held;
  }
  frameOutbound(opcode: ws.Opcode, rsv: ws.RsvBits, data: Uint8Array): ws.OutboundFrame {
    if (this.failNextOutbound) {
      this.failNextOutbound = false;
      throw new Error(`${this.name} failed`);
    }
    if (opcode >= 8) return { rsv, data };
    const out = new Uint8Array(data.length + 1);
    out[0] = this.#letter;
    out.set(data, 1);
    return {
      rsv: { rsv1: rsv.rsv1, rsv2: rsv.rsv2 || this.#bit.rsv2, rsv3: rsv.rsv3 || this.#bit.rsv3 },
      data: out,
    };
  }
}

// The text of the messages among `events`, which may come in pieces.
function textOf(events: ws.Event[]): string {
  return events.map((event) => event instanceof ws.TextMessage ? event.data : "").join("");
}

// A client and a server that agreed on `client` and `server` extensions.
function pair(client: ws.Extension[], server: ws.Extension[]) {
  const clientConn = new ws.WSConnection(ws.ConnectionType.CLIENT);
  const serverConn = new ws.WSConnection(ws.ConnectionType.SERVER);
  serverConn.receiveData(
    clientConn.send(new ws.Request({ host: "h", target: "/", extensions: client })),
  );
  assert.ok(serverConn.nextEvent() instanceof ws.Request);
  clientConn.receiveData(serverConn.send(new ws.AcceptConnection({ extensions: server })));
  assert.ok(clientConn.nextEvent() instanceof ws.AcceptConnection);
  return { client: clientConn, server: serverConn };
}

Deno.test("Extensions apply in the order the server listed them: bar(foo(data))", () => {
  // RFC 6455 §9.1: with "x-f, x-b" listed, the wire carries B(F(data)).
  const { client, server } = pair(
    [new Letter("F", RSV2), new Letter("B", RSV3)],
    [new Letter("F", RSV2), new Letter("B", RSV3)],
  );
  const frame = server.send(new ws.TextMessage({ data: "hi" }));
  assert.deepEqual([...frame.subarray(2)], [...text.encode("BFhi")]);
  for (const [how, pieces] of choppingsBy(frame, [1, 2], 3)) {
    const { client: reader } = pair(
      [new Letter("F", RSV2), new Letter("B", RSV3)],
      [new Letter("F", RSV2), new Letter("B", RSV3)],
    );
    assert.equal(textOf(feed(reader, pieces, false)), "hi", how);
  }
  assert.ok(client.state === ws.ConnectionState.OPEN);
});

Deno.test("What an extension gives at a frame's end passes the extensions after it", () => {
  // The holding extension is nearest the wire; what it gives at the end
  // went up without the other's hook, and "Fhi" came out.
  for (const order of ["hold last", "hold first"]) {
    const make = () =>
      order === "hold last"
        ? [new Letter("F", RSV2), new Letter("H", RSV3, true)]
        : [new Letter("H", RSV3, true), new Letter("F", RSV2)];
    const { server } = pair(make(), make());
    const frame = server.send(new ws.TextMessage({ data: "hi" }));
    for (const [how, pieces] of choppingsBy(frame, [1, 2], 3)) {
      const { client } = pair(make(), make());
      assert.equal(textOf(feed(client, pieces, false)), "hi", `${order}, ${how}`);
    }
  }
});

Deno.test("A control frame an extension makes longer than 125 bytes fails with 1009", () => {
  // It came up as a 126-byte Ping whose response() could not be sent.
  class Grow extends Letter {
    override frameInboundHeader(): ws.RsvBits {
      return NONE;
    }
    override frameInboundPayloadData(data: Uint8Array): Uint8Array {
      return data;
    }
    override frameInboundComplete(): Uint8Array | null {
      return new Uint8Array([1]);
    }
  }
  const grow = new Grow("G", RSV2);
  grow.accept("x-g");
  const conn = new ws.Connection(ws.ConnectionType.SERVER, { extensions: [grow] });
  const ping = new Uint8Array(6 + 125);
  ping.set([0x89, 0x80 | 125]);
  conn.receiveData(ping);
  const event = conn.nextEvent();
  assert.ok(event instanceof ws.CloseConnection, String(event?.constructor.name));
  assert.equal(event.code, 1009);
});

Deno.test("A send whose extension threw leaves no message begun", () => {
  // The next message went out as the failed one's continuation.
  const letter = new Letter("F", RSV2);
  const { server } = pair([new Letter("F", RSV2)], [letter]);
  letter.failNextOutbound = true;
  assert.throws(
    () => server.send(new ws.TextMessage({ data: "first", messageFinished: false })),
    /x-f failed/,
  );
  const frame = server.send(new ws.TextMessage({ data: "second" }));
  assert.equal(frame[0]! & 0x0f, ws.Opcode.TEXT);
});

Deno.test("A server extension's answer must be an element of its own name", () => {
  // An empty answer enabled it on the server and nothing on the client.
  for (const answer of ["", "x-other", "x-a; =1"]) {
    const extension = new Letter("A", RSV2);
    extension.accept = () => answer;
    const client = new ws.WSConnection(ws.ConnectionType.CLIENT);
    const server = new ws.WSConnection(ws.ConnectionType.SERVER);
    server.receiveData(
      client.send(new ws.Request({ host: "h", target: "/", extensions: [new Letter("A", RSV2)] })),
    );
    server.nextEvent();
    assert.throws(
      () => server.send(new ws.AcceptConnection({ extensions: [extension] })),
      ws.LocalProtocolError,
      JSON.stringify(answer),
    );
    assert.equal(server.state, ws.ConnectionState.CONNECTING);
  }
});
