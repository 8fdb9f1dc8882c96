/**
 * Heap growth and allocation per frame on the hot receive path: a million
 * masked 125-byte binary frames through `Connection`, fed 1000 to a chunk;
 * then what a server handshake allocates and what an opened engine keeps.
 *
 *     deno run --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/heap_growth.ts
 *
 * Figures:
 * - retained: `heapUsed` after a full GC, before and after the million
 *   frames (a leak per frame would show as ~bytes × 1e6);
 * - allocated per frame: `heapUsed` grows by what a batch allocates when
 *   no GC runs during it (a large new space makes sure of that; a batch
 *   whose figure is negative saw a GC and is dropped), taking events with
 *   `events()` and with `nextEvent()`. It is compared with the floor: the
 *   event object and the payload view, made directly. What `nextEvent()`
 *   adds to it is the decoder's `Frame` record.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { Connection, WSConnection } from "../connection.ts";
import { AcceptConnection, BytesMessage, Request } from "../events.ts";
import { Opcode } from "../frame.ts";
import { ConnectionType } from "../state.ts";
import { BROWSER_REQUEST, clientFrames } from "./_frames.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error(
    "Run with --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64",
  );
  Deno.exit(2);
}

const PER_CHUNK = 1000;
const TOTAL = 1_000_000;
const BATCH = 20_000;
const { stream } = clientFrames(Opcode.BINARY, 125, PER_CHUNK);

const server = new Connection(ConnectionType.SERVER);
let events = 0;
let sink = 0;

// Binary payloads: unmasking the same bytes again only toggles them, so
// one stream can be fed again and again without a copy.
function feed(frames: number): void {
  for (let i = 0; i < frames; i += PER_CHUNK) {
    server.receiveData(stream);
    for (const event of server.events()) {
      events++;
      sink ^= (event as BytesMessage).data.length;
    }
  }
}

// The same, one event at a time: no generator and no iterator results.
function feedByNextEvent(frames: number): void {
  for (let i = 0; i < frames; i += PER_CHUNK) {
    server.receiveData(stream);
    let event;
    while ((event = server.nextEvent()) !== null) {
      events++;
      sink ^= (event as BytesMessage).data.length;
    }
  }
}

// The floor: per frame, an event and its payload view, nothing else. The
// last event is kept so that the compiler cannot optimise the object away.
let kept: BytesMessage | null = null;
function floor(frames: number): void {
  for (let i = 0; i < frames; i++) {
    const event = new BytesMessage({
      data: stream.subarray(i & 0xff, (i & 0xff) + 125),
      frameFinished: true,
      messageFinished: true,
    });
    kept = event;
    sink ^= event.data.length;
  }
}

// A server's opening handshake on the engine: the request in, its event
// out, the 101 written; the opened engines are kept (for the retained
// figure), so each batch starts from an empty list.
let opened: WSConnection[] = [];
function handshakes(count: number): void {
  opened = [];
  for (let i = 0; i < count; i++) {
    const conn = new WSConnection(ConnectionType.SERVER);
    conn.receiveData(BROWSER_REQUEST.slice());
    for (const event of conn.events()) {
      if (event instanceof Request) sink ^= conn.send(new AcceptConnection()).length;
    }
    opened.push(conn);
  }
}

function allocatedPerFrame(run: (frames: number) => void, batch = BATCH): number {
  const samples: number[] = [];
  for (let i = 0; i < 15; i++) {
    gc!();
    const before = Deno.memoryUsage().heapUsed;
    run(batch);
    const grown = Deno.memoryUsage().heapUsed - before;
    if (grown > 0) samples.push(grown / batch);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1] ?? NaN;
}

// Warm up, so that compiled code, not the interpreter, is measured.
feed(200_000);
floor(200_000);
gc();
gc();
const retainedBefore = Deno.memoryUsage().heapUsed;
const started = performance.now();
feed(TOTAL);
const seconds = (performance.now() - started) / 1000;
gc();
gc();
const retainedAfter = Deno.memoryUsage().heapUsed;

const ours = allocatedPerFrame(feed);
const oneByOne = allocatedPerFrame(feedByNextEvent);
const least = allocatedPerFrame(floor);
console.log(
  `frames: ${events.toLocaleString("en-US")} (${(TOTAL / seconds / 1e6).toFixed(2)} M/s)`,
);
console.log(
  `retained heap growth over ${TOTAL.toLocaleString("en-US")} frames: ${
    ((retainedAfter - retainedBefore) / 1024).toFixed(1)
  } KiB (${((retainedAfter - retainedBefore) / TOTAL).toFixed(3)} bytes per frame)`,
);
console.log(`allocated per frame, event + payload view alone: ${least.toFixed(1)} bytes`);
for (const [name, bytes] of [["events()", ours], ["nextEvent()", oneByOne]] as const) {
  console.log(
    `allocated per frame, Connection.${name}: ${bytes.toFixed(1)} bytes, ${
      (bytes - least).toFixed(1)
    } beyond the floor`,
  );
}

// The handshake: a connection storm's garbage is what grows the young
// generation, and so the resident size per connection.
const HANDSHAKES = 2_000;
handshakes(20_000); // warm up
const perHandshake = allocatedPerFrame(handshakes, HANDSHAKES);
opened = [];
gc();
gc();
const beforeOpen = Deno.memoryUsage().heapUsed;
handshakes(HANDSHAKES);
gc();
gc();
const perOpen = (Deno.memoryUsage().heapUsed - beforeOpen) / HANDSHAKES;
console.log(
  `allocated per server handshake (browser request in, 101 out): ${perHandshake.toFixed(0)} bytes`,
);
console.log(`retained per opened engine (WSConnection): ${perOpen.toFixed(0)} bytes`);
if (sink === -1) console.log(sink, kept); // keep the results alive
