/**
 * The driver's own cost per echoed message, without a kernel: `RawSocket`
 * (inbox, async iteration, write batching, read-buffer management) over
 * in-memory connections, against the bare engine in the plainest loop a
 * user would write over the same connections (read into one buffer, pass
 * `receiveData` a `slice()`, `send` each message, await each write). One
 * message is in flight at a time, handed round robin to 1 or 256 sockets,
 * so the 256 row shows what touching a different connection's state for
 * every message costs. Real sockets add the kernel and Deno's ops to both
 * (bench/echo.ts measures those); this is the part of a server's time per
 * message that this module's TypeScript decides, measured without the
 * kernel's noise. Times are per iteration of 256 messages.
 *
 * Run: deno bench -A bench/driver_bench.ts
 *
 * @module
 */

import { WSConnection } from "../connection.ts";
import { AcceptConnection, BytesMessage, Request as WsRequest } from "../events.ts";
import { FrameEncoder } from "../frame_encoder.ts";
import { RawSocket } from "../raw_socket.ts";
import { ConnectionType } from "../state.ts";

const REQUEST = new WSConnection(ConnectionType.CLIENT).send(
  new WsRequest({ host: "localhost", target: "/" }),
);
const FRAME = new FrameEncoder(ConnectionType.CLIENT).encodeData(new Uint8Array(32), true);
// A server's binary frame with up to 125 bytes of payload starts so.
const ECHO_FIRST_BYTE = 0x82;

/** One end of an in-memory connection: what the peer delivers is read. */
class MemoryConn {
  readonly remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
  readonly #ring: Ring;
  #waiting: { buffer: Uint8Array; resolve: (n: number | null) => void } | null = null;
  #queued: Uint8Array | null = null;

  constructor(ring: Ring) {
    this.#ring = ring;
  }

  deliver(bytes: Uint8Array): void {
    const waiting = this.#waiting;
    if (waiting === null) {
      this.#queued = bytes;
      return;
    }
    this.#waiting = null;
    waiting.buffer.set(bytes);
    waiting.resolve(bytes.length);
  }

  read(buffer: Uint8Array): Promise<number | null> {
    const queued = this.#queued;
    if (queued !== null) {
      this.#queued = null;
      buffer.set(queued);
      return Promise.resolve(queued.length);
    }
    return new Promise((resolve) => this.#waiting = { buffer, resolve });
  }

  write(bytes: Uint8Array): Promise<number> {
    if (bytes[0] === ECHO_FIRST_BYTE) this.#ring.echoed();
    return Promise.resolve(bytes.length);
  }

  close(): void {}
}

/** The peer of every connection: one message in flight, round robin. */
class Ring {
  readonly conns: MemoryConn[] = [];
  #turn = 0;
  #left = 0;
  #done: (() => void) | null = null;

  constructor(size: number) {
    for (let i = 0; i < size; i++) this.conns.push(new MemoryConn(this));
  }

  /** Open every connection's handshake. */
  greet(): void {
    for (const conn of this.conns) conn.deliver(REQUEST);
  }

  /** Send `count` messages, one after another's echo; resolves after the last. */
  run(count: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#left = count;
    this.#done = resolve;
    this.#next();
    return promise;
  }

  echoed(): void {
    if (--this.#left > 0) this.#next();
    else this.#done?.();
  }

  #next(): void {
    const conn = this.conns[this.#turn]!;
    this.#turn = (this.#turn + 1) % this.conns.length;
    conn.deliver(FRAME);
  }
}

function rawSocketEcho(conn: MemoryConn): void {
  const socket = new RawSocket(conn as unknown as Deno.Conn, { type: ConnectionType.SERVER });
  (async () => {
    for await (const message of socket) socket.send(message);
  })();
}

function engineEcho(conn: MemoryConn): void {
  const engine = new WSConnection(ConnectionType.SERVER);
  const buffer = new Uint8Array(4096);
  (async () => {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      engine.receiveData(buffer.slice(0, n));
      for (const event of engine.events()) {
        if (event instanceof WsRequest) await conn.write(engine.send(new AcceptConnection()));
        else if (event instanceof BytesMessage) {
          await conn.write(engine.send(new BytesMessage({ data: event.data })));
        }
      }
    }
  })();
}

const MESSAGES = 256;

for (const size of [1, 256]) {
  const group = `echo, ${size} connection${size === 1 ? "" : "s"}, ${MESSAGES} x 32 B`;
  for (
    const [name, serve, baseline] of [
      ["bare engine in a read/write loop", engineEcho, true],
      ["RawSocket (serve()'s driver)", rawSocketEcho, false],
    ] as const
  ) {
    let ring: Ring | null = null;
    Deno.bench({
      name,
      group,
      baseline,
      async fn() {
        if (ring === null) {
          ring = new Ring(size);
          for (const conn of ring.conns) serve(conn);
          ring.greet();
        }
        await ring.run(MESSAGES);
      },
    });
  }
}
