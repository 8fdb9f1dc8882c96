// Run by faults_test.ts in a process of its own, with --expose-gc: one
// client sends one binary frame of TOTAL bytes to serve(), its payload
// written in the given pieces (cycled), a pause after each so that each is
// one read. Prints, as JSON, the server's growth in ArrayBuffer memory while
// the message is still incomplete (after collecting garbage), what was
// sent by then, and the length of the message delivered in the end.
//
//     deno run -A --v8-flags=--expose-gc tests/_held_by_pieces.ts TOTAL 8192,1,2049
import { serve } from "../server.ts";
import { delay, handshakeRequest, hasHead, readUntil, writeAll } from "./_drivers.ts";

const total = Number(Deno.args[0]);
const pieces = Deno.args[1]!.split(",").map(Number);
const collect = (): void => {
  for (let i = 0; i < 4; i++) (globalThis as unknown as { gc(): void }).gc();
};

const delivered = Promise.withResolvers<number>();
await using server = serve({ hostname: "127.0.0.1", port: 0 }, async (socket) => {
  for await (const message of socket) delivered.resolve(message.length);
});
const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
try {
  conn.setNoDelay(true);
  await writeAll(conn, handshakeRequest(server.addr.port));
  await readUntil(conn, hasHead);
  collect();
  const before = Deno.memoryUsage().external;
  // FIN, binary, a 64-bit length, masking key 0 (the payload as it is),
  // and a first piece large enough to make reads bulk.
  const header = [
    0x82,
    0xff,
    0,
    0,
    0,
    0,
    total >>> 24,
    (total >>> 16) & 0xff,
    (total >>> 8) & 0xff,
  ];
  const first = new Uint8Array(14 + 2049);
  first.set([...header, total & 0xff, 0, 0, 0, 0]);
  await writeAll(conn, first);
  let sent = 2049;
  for (let i = 0; sent < total / 2; i++) {
    await delay(1);
    const size = pieces[i % pieces.length]!;
    await writeAll(conn, new Uint8Array(size));
    sent += size;
  }
  await delay(20);
  collect();
  const held = Deno.memoryUsage().external - before;
  await writeAll(conn, new Uint8Array(total - sent));
  const length = await delivered.promise;
  Deno.stdout.writeSync(new TextEncoder().encode(`${JSON.stringify({ sent, held, length })}\n`));
} finally {
  conn.close();
}
