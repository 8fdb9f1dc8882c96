import assert from "node:assert/strict";
import * as ws from "../mod.ts";
import {
  bytes,
  chopStyles,
  concat,
  feed,
  normalize,
  type Plain,
  rawFrame,
  utf8,
  VALID_CLOSE_CODES,
} from "./_util.ts";

const { CLIENT, SERVER } = ws.ConnectionType;
const { OPEN, REMOTE_CLOSING, LOCAL_CLOSING, CLOSED } = ws.ConnectionState;

/** Events from a client's stream at a server, identical however the stream is chopped. */
function serverEvents(
  stream: Uint8Array,
  limits: Partial<ws.Limits> = {},
  endOfStream = false,
): Plain[] {
  let reference: Plain[] | null = null;
  for (const [style, chunks] of chopStyles(stream)) {
    const events = normalize(feed(new ws.Connection(SERVER, { limits }), chunks, endOfStream));
    if (reference === null) reference = events;
    else assert.deepEqual(events, reference, `chopped ${style}`);
  }
  return reference!;
}

const text = (data: string, fin = true, opcode = 1) =>
  rawFrame({ opcode, fin, payload: utf8(data) });
const close = (code: number, reason = "") =>
  rawFrame({ opcode: 8, payload: concat(bytes(code >> 8, code & 0xff), utf8(reason)) });
const lastCode = (events: Plain[]) => {
  const last = events.at(-1);
  assert.ok(last !== undefined && last.type === "close", "the stream ends in a close");
  return last.code;
};

Deno.test("Connection yields messages, pings and pongs in order", () => {
  const stream = concat(
    text("Hel", false),
    rawFrame({ opcode: 9, payload: utf8("p") }),
    text("lo", true, 0),
    rawFrame({ opcode: 2, payload: bytes(1, 2, 3) }),
    rawFrame({ opcode: 10 }),
  );
  // The ping splits the normal form of the message in two; the pieces still join to "Hello".
  assert.deepEqual(serverEvents(stream), [
    { type: "text", data: "Hel", end: false },
    { type: "ping", payload: [...utf8("p")] },
    { type: "text", data: "lo", end: true },
    { type: "bytes", data: [1, 2, 3], end: true },
    { type: "pong", payload: [] },
  ]);
});

Deno.test("Connection keeps text fragments of a code point together", () => {
  const euro = utf8("€"); // e2 82 ac
  const stream = concat(
    rawFrame({ opcode: 1, fin: false, payload: euro.subarray(0, 1) }),
    rawFrame({ opcode: 0, fin: false, payload: euro.subarray(1, 2) }),
    rawFrame({ opcode: 0, fin: true, payload: euro.subarray(2) }),
  );
  assert.deepEqual(serverEvents(stream), [{ type: "text", data: "€", end: true }]);
});

Deno.test("Connection fails a message-rule violation with its close code", async (t) => {
  const cases: [string, Uint8Array, number][] = [
    ["continuation without a started message", text("x", true, 0), 1002],
    ["a new text frame inside a fragmented message", concat(text("a", false), text("b")), 1002],
    [
      "a new binary frame inside a fragmented message",
      concat(text("a", false), rawFrame({ opcode: 2 })),
      1002,
    ],
    [
      "invalid UTF-8 in a text message",
      rawFrame({ opcode: 1, payload: bytes(0xce, 0xba, 0xff) }),
      1007,
    ],
    [
      "invalid UTF-8 split across fragments",
      concat(
        rawFrame({ opcode: 1, fin: false, payload: bytes(0xed) }),
        rawFrame({ opcode: 0, payload: bytes(0xa0, 0x80) }),
      ),
      1007,
    ],
    [
      "a text message ending inside a code point",
      rawFrame({ opcode: 1, payload: bytes(0xe2, 0x82) }),
      1007,
    ],
    ["a close with a one-byte payload", rawFrame({ opcode: 8, payload: bytes(0x03) }), 1002],
    [
      "a close reason that is not UTF-8",
      rawFrame({ opcode: 8, payload: bytes(0x03, 0xe8, 0xff) }),
      1007,
    ],
    ...[0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535].map((
      code,
    ): [string, Uint8Array, number] => [
      `close code ${code}`,
      close(code),
      1002,
    ]),
    [
      "a message over the size limit",
      concat(text("a".repeat(600), false), text("a".repeat(500), true, 0)),
      1009,
    ],
    [
      "a message of too many fragments",
      concat(
        text("", false),
        ...Array.from({ length: 8 }, () => text("", false, 0)),
        text("", true, 0),
      ),
      1009,
    ],
  ];
  for (const [name, stream, code] of cases) {
    await t.step(name, () => {
      const events = serverEvents(stream, { maxMessageSize: 1000, maxFragments: 8 });
      assert.equal(lastCode(events), code);
    });
  }
});

Deno.test("Connection accepts the close codes a peer may send", () => {
  for (const code of VALID_CLOSE_CODES) {
    assert.deepEqual(serverEvents(close(code, "why")), [{ type: "close", code, reason: "why" }]);
  }
  assert.deepEqual(serverEvents(rawFrame({ opcode: 8 })), [{
    type: "close",
    code: 1005,
    reason: "",
  }]);
});

Deno.test("Connection limits are inclusive: exactly the limit passes", () => {
  const stream = concat(
    text("a".repeat(100), false),
    ...Array.from({ length: 6 }, () => text("a".repeat(100), false, 0)),
    text("a".repeat(300), true, 0),
  );
  assert.deepEqual(serverEvents(stream, { maxMessageSize: 1000, maxFragments: 8 }), [
    { type: "text", data: "a".repeat(1000), end: true },
  ]);
});

Deno.test("Connection finds invalid UTF-8 at the first bad byte", () => {
  // A frame announcing 1000 bytes whose third byte is already invalid: the
  // error comes before the rest of the frame arrives.
  const conn = new ws.Connection(CLIENT);
  const header = bytes(0x81, 0x7e, 0x03, 0xe8);
  conn.receiveData(concat(header, bytes(0xce, 0xba, 0xc0)));
  const events = [...conn.events()];
  assert.equal(lastCode(normalize(events)), 1007);
});

Deno.test("Connection.bytesExpected is the rest of the frame in progress, 0 once failed", () => {
  const conn = new ws.Connection(CLIENT);
  conn.receiveData(concat(bytes(0x81, 0x7e, 0x03, 0xe8), utf8("abc")));
  [...conn.events()];
  assert.equal(conn.bytesExpected, 997);
  conn.receiveData(bytes(0xc0)); // invalid UTF-8: the frame will never finish
  assert.equal(lastCode(normalize([...conn.events()])), 1007);
  assert.equal(conn.bytesExpected, 0);
});

Deno.test("Connection answers a received close and ends CLOSED", () => {
  const conn = new ws.Connection(SERVER);
  conn.receiveData(close(1001, "going"));
  const [event] = conn.events();
  assert.ok(event instanceof ws.CloseConnection);
  assert.equal(conn.state, REMOTE_CLOSING);
  const answer = conn.send(event.response());
  assert.deepEqual(answer, concat(bytes(0x88, 0x07, 0x03, 0xe9), utf8("going")));
  assert.equal(conn.state, CLOSED);
  assert.throws(() => conn.send(new ws.TextMessage({ data: "late" })), ws.LocalProtocolError);
});

Deno.test("Connection echoes an empty close with an empty close", () => {
  const conn = new ws.Connection(SERVER);
  conn.receiveData(rawFrame({ opcode: 8 }));
  const [event] = conn.events();
  assert.ok(event instanceof ws.CloseConnection && event.code === 1005);
  assert.deepEqual(conn.send(event.response()), bytes(0x88, 0x00));
});

Deno.test("Connection started close waits for the peer's close", () => {
  const conn = new ws.Connection(CLIENT);
  conn.send(new ws.CloseConnection({ code: 1000 }));
  assert.equal(conn.state, LOCAL_CLOSING);
  assert.throws(() => conn.send(new ws.TextMessage({ data: "x" })), ws.LocalProtocolError);
  // Messages the peer sent before seeing our close still arrive.
  conn.receiveData(rawFrame({ opcode: 1, payload: utf8("late"), maskKey: null }));
  conn.receiveData(rawFrame({ opcode: 8, payload: bytes(0x03, 0xe8), maskKey: null }));
  assert.deepEqual(normalize([...conn.events()]), [
    { type: "text", data: "late", end: true },
    { type: "close", code: 1000, reason: "" },
  ]);
  assert.equal(conn.state, CLOSED);
});

Deno.test("Connection reports 1006 when the stream ends before a close", () => {
  assert.deepEqual(serverEvents(text("hi"), {}, true), [
    { type: "text", data: "hi", end: true },
    { type: "close", code: 1006, reason: "" },
  ]);
  const conn = new ws.Connection(SERVER);
  conn.receiveData(null);
  assert.equal(conn.state, CLOSED);
  assert.throws(() => conn.receiveData(bytes(1)), ws.LocalProtocolError);
});

Deno.test("Connection ignores everything after a protocol error", () => {
  const conn = new ws.Connection(SERVER);
  conn.receiveData(concat(rawFrame({ opcode: 3 }), text("after")));
  const events = [...conn.events()];
  assert.equal(events.length, 1);
  assert.ok(events[0] instanceof ws.CloseConnection && events[0].code === 1002);
  assert.equal(conn.state, REMOTE_CLOSING);
  conn.receiveData(text("more"));
  assert.deepEqual([...conn.events()], []);
  conn.send(events[0].response());
  assert.equal(conn.state, CLOSED);
});

Deno.test("Connection ignores data after the peer's close", () => {
  assert.deepEqual(serverEvents(concat(close(1000), text("after"))), [{
    type: "close",
    code: 1000,
    reason: "",
  }]);
});

Deno.test("Connection events() resumes where it stopped", () => {
  const conn = new ws.Connection(SERVER);
  const stream = concat(text("one"), text("two"));
  conn.receiveData(stream.slice(0, 10));
  assert.deepEqual(normalize([...conn.events()]), [{ type: "text", data: "one", end: true }]);
  conn.receiveData(stream.slice(10));
  assert.deepEqual(normalize([...conn.events()]), [{ type: "text", data: "two", end: true }]);
  assert.equal(conn.state, OPEN);
});

Deno.test("WSConnection refuses misuse with a LocalProtocolError", async (t) => {
  await t.step("a message before the handshake", () => {
    const conn = new ws.WSConnection(SERVER);
    assert.throws(() => conn.send(new ws.TextMessage({ data: "x" })), /before the handshake/);
  });
  await t.step("a ping or a pong after the peer's close", () => {
    // RFC 6455 §5.5.3: a ping is answered "unless it already received a
    // Close frame"; the close's answer is all that is left to send.
    const conn = new ws.Connection(SERVER);
    conn.receiveData(new Uint8Array([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]));
    assert.ok(conn.nextEvent() instanceof ws.CloseConnection);
    assert.throws(() => conn.send(new ws.Pong()), /state REMOTE_CLOSING/);
    assert.throws(() => conn.send(new ws.Ping()), /state REMOTE_CLOSING/);
  });
  await t.step("a close twice", () => {
    const conn = new ws.Connection(SERVER);
    conn.send(new ws.CloseConnection({ code: 1000 }));
    assert.throws(() => conn.send(new ws.CloseConnection({ code: 1000 })), ws.LocalProtocolError);
  });
  await t.step("a handshake event on an open connection", () => {
    const conn = new ws.Connection(SERVER);
    assert.throws(() => conn.send(new ws.AcceptConnection()), /handshake is over/);
  });
  await t.step("an invalid close code", () => {
    const conn = new ws.Connection(SERVER);
    for (const code of [0, 999, 1004, 1016, 2999, 5000, 1000.5, NaN]) {
      assert.throws(() => conn.send(new ws.CloseConnection({ code })), ws.LocalProtocolError);
    }
    assert.equal(conn.state, OPEN);
  });
});

Deno.test("After its own close, a connection still answers pings, and sends no message", () => {
  // RFC 6455 §5.5.3: a ping is answered until the peer's close arrives;
  // §5.5.1 bars only data frames after our close. A peer whose heartbeat
  // crossed our close would otherwise drop the connection unanswered.
  const conn = new ws.Connection(SERVER);
  conn.send(new ws.CloseConnection({ code: 1000 }));
  conn.receiveData(new Uint8Array([0x89, 0x82, 0, 0, 0, 0, 1, 2]));
  const ping = conn.nextEvent();
  assert.ok(ping instanceof ws.Ping);
  assert.deepEqual([...conn.send(ping.response())], [0x8a, 2, 1, 2]);
  assert.deepEqual([...conn.send(new ws.Ping())], [0x89, 0]);
  assert.throws(() => conn.send(new ws.TextMessage({ data: "x" })), /state LOCAL_CLOSING/);
  assert.equal(conn.state, LOCAL_CLOSING);
});

Deno.test("Connection and WSConnection take received bytes as a Uint8Array only", () => {
  // An ArrayBuffer made the byte count NaN for good; a Uint16Array or a
  // string was read as bytes it is not.
  const wrong: [unknown, RegExp][] = [
    [new ArrayBuffer(2), /not ArrayBuffer$/],
    [new Uint16Array([0x8881]), /not Uint16Array$/],
    [new DataView(new ArrayBuffer(2)), /not DataView$/],
    ["\x81\x80", /not string$/],
    [undefined, /not undefined$/],
  ];
  const open = new ws.Connection(SERVER);
  const handshaking = new ws.WSConnection(SERVER);
  const decoder = new ws.FrameDecoder(SERVER);
  for (const [data, message] of wrong) {
    for (
      const receive of [open, handshaking].map((conn) => (bytes: unknown) =>
        conn.receiveData(bytes as Uint8Array)
      )
    ) {
      assert.throws(
        () => receive(data),
        (error) =>
          error instanceof TypeError && /^Received data is a Uint8Array/.test(error.message) &&
          message.test(error.message),
      );
    }
    assert.throws(() => decoder.receiveBytes(data as Uint8Array), TypeError);
  }
  // Nothing was taken in: both still read what comes next.
  open.receiveData(new Uint8Array([0x81, 0x81, 0, 0, 0, 0, 0x78]));
  assert.equal((open.nextEvent() as ws.TextMessage).data, "x");
  handshaking.receiveData(
    new ws.WSConnection(CLIENT).send(new ws.Request({ host: "h", target: "/" })),
  );
  assert.ok(handshaking.nextEvent() instanceof ws.Request);
});

Deno.test("Connection refuses a close code or reason of the wrong type, and a non-event", () => {
  const conn = new ws.Connection(SERVER);
  const cases: [() => unknown, RegExp][] = [
    // "1000" was refused as a code that may not be sent, 42 sent as "42".
    [
      () => conn.send(new ws.CloseConnection({ code: "1000" as never })),
      /^A close code is a number, not string$/,
    ],
    [
      () => conn.send(new ws.CloseConnection({ code: 1000, reason: 42 as never })),
      /^A close reason is a string, not number$/,
    ],
    [() => conn.send(null as never), /^send\(\) takes an event, not null$/],
    [
      () => new ws.WSConnection(SERVER).send(undefined as never),
      /^send\(\) takes an event, not undefined$/,
    ],
  ];
  for (const [send, message] of cases) {
    assert.throws(send, (error) => error instanceof TypeError && message.test(error.message));
  }
  assert.equal(conn.state, OPEN);
});

Deno.test("Connection refuses message data of the wrong type with a TypeError naming it", () => {
  // What callers without TypeScript's checks may pass: nothing goes out,
  // and the connection stays usable.
  const conn = new ws.Connection(SERVER);
  const cases: [ws.Event, RegExp][] = [
    [new ws.BytesMessage({ data: [1, 2] as never }), /string \(text\) or a Uint8Array.*not Array$/],
    [new ws.BytesMessage({ data: undefined as never }), /not undefined$/],
    [new ws.BytesMessage({ data: null as never }), /not null$/],
    [new ws.BytesMessage({ data: new ArrayBuffer(2) as never }), /not ArrayBuffer$/],
    [
      new ws.BytesMessage({ data: "text" as never }),
      /BytesMessage's data is a Uint8Array, not string$/,
    ],
    [
      new ws.TextMessage({ data: new Uint8Array(2) as never }),
      /TextMessage's data is a string, not Uint8Array$/,
    ],
    [new ws.TextMessage({ data: 42 as never }), /TextMessage's data is a string, not number$/],
    [new ws.Ping({ payload: [1] as never }), /PING payload is a Uint8Array, not Array$/],
    [new ws.Pong({ payload: "x" as never }), /PONG payload is a Uint8Array, not string$/],
  ];
  for (const [event, message] of cases) {
    assert.throws(
      () => conn.send(event),
      (error) => error instanceof TypeError && message.test(error.message),
    );
  }
  // A fragmented message was not started by any of them.
  assert.deepEqual([...conn.send(new ws.TextMessage({ data: "ok" }))], [0x81, 2, 0x6f, 0x6b]);
  assert.equal(conn.state, OPEN);
});

Deno.test("A client and a server WSConnection talk in memory", () => {
  const server = new ws.WSConnection(SERVER);
  const client = new ws.WSConnection(CLIENT);
  server.receiveData(
    client.send(new ws.Request({ host: "localhost", target: "/chat", subprotocols: ["a", "b"] })),
  );
  const [request] = server.events();
  assert.ok(request instanceof ws.Request);
  assert.deepEqual(request.subprotocols, ["a", "b"]);
  client.receiveData(concat(
    server.send(new ws.AcceptConnection({ subprotocol: "b" })),
    server.send(new ws.TextMessage({ data: "welcome" })),
  ));
  const events = [...client.events()];
  assert.ok(events[0] instanceof ws.AcceptConnection && events[0].subprotocol === "b");
  assert.deepEqual(normalize(events.slice(1)), [{ type: "text", data: "welcome", end: true }]);
  assert.equal(client.state, OPEN);

  const big = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
  server.receiveData(client.send(new ws.BytesMessage({ data: big })));
  assert.deepEqual(
    normalize([...server.events()]),
    normalize([new ws.BytesMessage({ data: big })]),
  );

  server.receiveData(client.send(new ws.CloseConnection({ code: 4000, reason: "done" })));
  const [closeEvent] = server.events();
  assert.ok(closeEvent instanceof ws.CloseConnection);
  client.receiveData(server.send(closeEvent.response()));
  const [echoed] = client.events();
  assert.ok(
    echoed instanceof ws.CloseConnection && echoed.code === 4000 && echoed.reason === "done",
  );
  assert.equal(client.state, CLOSED);
  assert.equal(server.state, CLOSED);
});

Deno.test("nextEvent() and events() take from one queue, a protocol failure's close included", () => {
  const conn = new ws.Connection(SERVER);
  conn.receiveData(concat(text("one"), text("two"), rawFrame({ opcode: 3 }), text("after")));
  assert.deepEqual(normalize([conn.nextEvent()!]), [{ type: "text", data: "one", end: true }]);
  const [second] = conn.events();
  assert.deepEqual(normalize([second!]), [{ type: "text", data: "two", end: true }]);
  const failure = conn.nextEvent();
  assert.ok(failure instanceof ws.CloseConnection && failure.code === 1002);
  assert.equal(conn.state, REMOTE_CLOSING);
  assert.equal(conn.nextEvent(), null);
  assert.deepEqual([...conn.events()], []);
  conn.receiveData(null);
  assert.equal(conn.nextEvent(), null, "no 1006 after the failure's close");

  const ended = new ws.Connection(SERVER);
  ended.receiveData(text("last"));
  ended.receiveData(null);
  assert.deepEqual(normalize([ended.nextEvent()!, ended.nextEvent()!]), [
    { type: "text", data: "last", end: true },
    { type: "close", code: 1006, reason: "" },
  ]);
  assert.equal(ended.nextEvent(), null);

  const client = new ws.WSConnection(CLIENT);
  const server = new ws.WSConnection(SERVER);
  assert.equal(server.nextEvent(), null);
  server.receiveData(
    concat(client.send(new ws.Request({ host: "h", target: "/" })), text("early")),
  );
  assert.ok(server.nextEvent() instanceof ws.Request);
  assert.equal(server.nextEvent(), null, "no frames before the handshake is answered");
  server.send(new ws.AcceptConnection());
  assert.deepEqual(normalize([server.nextEvent()!]), [{ type: "text", data: "early", end: true }]);
  assert.equal(server.nextEvent(), null);
});

Deno.test("peekEvent() shows the next event without taking it; the state moves when it is taken", async (t) => {
  await t.step("a failure behind a message leaves the connection OPEN until taken", () => {
    const conn = new ws.Connection(SERVER);
    conn.receiveData(concat(text("one"), rawFrame({ opcode: 1, payload: bytes(0x48, 0xff) })));
    assert.ok(conn.nextEvent() instanceof ws.TextMessage);
    const failure = conn.peekEvent();
    assert.ok(failure instanceof ws.CloseConnection && failure.code === 1007);
    assert.equal(conn.peekEvent(), failure, "peeking again gives the same event");
    assert.equal(conn.state, OPEN);
    assert.ok(conn.send(new ws.TextMessage({ data: "one" })).length > 0, "answers still go out");
    assert.equal(conn.nextEvent(), failure);
    assert.equal(conn.state, REMOTE_CLOSING);
    assert.equal(conn.peekEvent(), null);
  });
  await t.step("bytes after a peeked close are dropped, as after a taken one", () => {
    const conn = new ws.Connection(SERVER);
    conn.receiveData(rawFrame({ opcode: 8, payload: bytes(3, 232) }));
    const close = conn.peekEvent();
    assert.ok(close instanceof ws.CloseConnection && close.code === 1000);
    conn.receiveData(
      rawFrame({ opcode: 2, fin: true, payload: new Uint8Array(300) }).subarray(0, 5),
    );
    assert.equal(conn.bytesExpected, 0);
    assert.equal(conn.nextHeaderByte, -1);
    assert.equal(conn.nextEvent(), close);
    assert.equal(conn.nextEvent(), null);
    assert.equal(conn.send(close.response()).length, 4);
    assert.equal(conn.state, CLOSED);
  });
  await t.step("finding nothing holds only until bytes or the end come", () => {
    const conn = new ws.Connection(SERVER);
    const frame = text("split");
    conn.receiveData(frame.slice(0, 3));
    assert.equal(conn.peekEvent(), null);
    assert.equal(conn.nextEvent(), null);
    assert.equal(conn.peekEvent(), null);
    conn.receiveData(frame.slice(3));
    assert.deepEqual(normalize([conn.nextEvent()!]), [{ type: "text", data: "split", end: true }]);
    assert.equal(conn.peekEvent(), null);
    conn.receiveData(null);
    assert.deepEqual(normalize([conn.peekEvent()!]), [{ type: "close", code: 1006, reason: "" }]);
  });
  await t.step("a message peeked before the stream ends comes first, then 1006", () => {
    const conn = new ws.Connection(SERVER);
    conn.receiveData(text("last"));
    assert.ok(conn.peekEvent() instanceof ws.TextMessage);
    conn.receiveData(null);
    assert.deepEqual(normalize([conn.nextEvent()!, conn.nextEvent()!]), [
      { type: "text", data: "last", end: true },
      { type: "close", code: 1006, reason: "" },
    ]);
    assert.equal(conn.peekEvent(), null);
  });
  await t.step("peeking before every take changes no event, however the stream is chopped", () => {
    const stream = concat(
      text("α and ω"),
      rawFrame({ opcode: 9, payload: utf8("ping") }),
      rawFrame({ opcode: 1, fin: false, payload: utf8("fra") }),
      rawFrame({ opcode: 0, fin: true, payload: utf8("gments") }),
      rawFrame({ opcode: 2, payload: new Uint8Array(200).fill(7) }),
      rawFrame({ opcode: 1, payload: bytes(0xce, 0xb1, 0xed, 0xa0, 0x80) }),
      text("never read"),
    );
    for (const [style, chunks] of chopStyles(stream)) {
      const peeking = new ws.Connection(SERVER);
      const events: ws.Event[] = [];
      for (const chunk of chunks) {
        peeking.receiveData(chunk);
        for (let next = peeking.peekEvent(); next !== null; next = peeking.peekEvent()) {
          assert.equal(peeking.nextEvent(), next, `chopped ${style}`);
          events.push(next);
        }
      }
      assert.deepEqual(normalize(events), serverEvents(stream), `chopped ${style}`);
    }
  });
  await t.step("WSConnection peeks at handshake events, then at frames", () => {
    const client = new ws.WSConnection(CLIENT);
    const server = new ws.WSConnection(SERVER);
    assert.equal(server.peekEvent(), null);
    server.receiveData(
      concat(client.send(new ws.Request({ host: "h", target: "/" })), text("early")),
    );
    const request = server.peekEvent();
    assert.ok(request instanceof ws.Request);
    assert.equal(server.nextEvent(), request);
    assert.equal(server.peekEvent(), null, "no frames before the handshake is answered");
    server.send(new ws.AcceptConnection());
    const early = server.peekEvent();
    assert.ok(early instanceof ws.TextMessage && early.data === "early");
    assert.equal(server.nextEvent(), early);
  });
});

Deno.test("WSConnection hands over from handshake to frames when events are taken one at a time", () => {
  // The handshake's state is let go once the connection is open and its
  // last event was taken; a reader that stops after each event must still
  // get every event, in order.
  const client = new ws.WSConnection(CLIENT);
  const server = new ws.WSConnection(SERVER);
  server.receiveData(client.send(new ws.Request({ host: "h", target: "/", subprotocols: ["p"] })));
  const [request] = server.events();
  assert.ok(request instanceof ws.Request);
  client.receiveData(concat(
    server.send(new ws.AcceptConnection({ subprotocol: "p" })),
    server.send(new ws.TextMessage({ data: "one" })),
    server.send(new ws.TextMessage({ data: "two" })),
  ));
  const taken: ws.Event[] = [];
  for (let i = 0; i < 4; i++) {
    const [event] = client.events();
    if (event !== undefined) taken.push(event);
  }
  assert.ok(taken[0] instanceof ws.AcceptConnection && taken[0].subprotocol === "p");
  assert.deepEqual(normalize(taken.slice(1)), [
    { type: "text", data: "one", end: true },
    { type: "text", data: "two", end: true },
  ]);
  assert.equal(client.state, OPEN);
  assert.deepEqual(client.extensions, []);
  assert.equal(server.state, OPEN);
  server.receiveData(client.send(new ws.TextMessage({ data: "back" })));
  assert.deepEqual(normalize([...server.events()]), [{ type: "text", data: "back", end: true }]);
});

Deno.test("A pipelined first frame behind the handshake request is delivered", () => {
  const client = new ws.WSConnection(CLIENT);
  const server = new ws.WSConnection(SERVER);
  const request = client.send(new ws.Request({ host: "h", target: "/" }));
  for (const [style, chunks] of chopStyles(concat(request, text("early")))) {
    const conn = new ws.WSConnection(SERVER);
    const events: ws.Event[] = [];
    for (const chunk of chunks) {
      conn.receiveData(chunk);
      for (const event of conn.events()) {
        if (event instanceof ws.Request) conn.send(new ws.AcceptConnection());
        events.push(event);
      }
    }
    assert.deepEqual(
      normalize(events.slice(1)),
      [{ type: "text", data: "early", end: true }],
      style,
    );
  }
  assert.equal(server.state, ws.ConnectionState.CONNECTING);
});

Deno.test("Connection reports no 1006 when the stream ends after the peer's close", () => {
  const conn = new ws.Connection(SERVER);
  conn.receiveData(close(1001, "bye"));
  assert.deepEqual(normalize([...conn.events()]), [{ type: "close", code: 1001, reason: "bye" }]);
  conn.receiveData(null);
  assert.deepEqual([...conn.events()], []);
  assert.equal(conn.state, CLOSED);
  // A failure already reported counts as the close.
  const failed = new ws.Connection(SERVER);
  failed.receiveData(rawFrame({ opcode: 3 }));
  assert.equal(normalize([...failed.events()]).length, 1);
  failed.receiveData(null);
  assert.deepEqual([...failed.events()], []);
});
