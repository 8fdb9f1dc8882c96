/**
 * The floor in bench/echo.ts (`--floor`): the least work any WebSocket echo
 * server written for Deno does per message, with nothing of a protocol
 * library. One read buffer and one write buffer per connection, reused
 * for every read (grown once a frame does not fit); each frame is unmasked
 * with this module's `mask()` and sent back under a server header, the
 * replies to one read in one write; no events, no queues, no checks beyond
 * finding frame boundaries. It is not a WebSocket server anyone should run
 * (it trusts its peer completely); it shows how fast Deno's
 * `conn.read`/`conn.write` and the kernel let an echo go on this machine.
 * Its buffers are also what it cannot afford: 512 KiB per connection, and
 * a message is overwritten by the next read, which no library that hands
 * messages to an application may do. It reads and writes in turn, never
 * both at once: with messages of hundreds of KiB that, not CPU, limits its
 * rate, and its CPU per message is the column to compare.
 *
 *     deno run -A bench/floor_echo_server.ts --port N [--hostname H]
 *
 * Prints `listening on ws://H:N/` once ready and exits on SIGTERM or SIGINT.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { acceptToken } from "../handshake.ts";
import { mask } from "../mask.ts";
import { serverAddress } from "./_server_args.ts";

const { port, hostname } = serverAddress();

// Room for a 64 KiB frame and its header several times over, so that a read
// never has to wait for room; a larger frame grows both buffers to fit.
const BUFFER = 256 * 1024;
const encoder = new TextEncoder();

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Reads the request head into `buffer`; answers 101; returns the bytes read past it. */
async function handshake(conn: Deno.Conn, buffer: Uint8Array): Promise<number> {
  let held = 0;
  while (held < buffer.length) {
    const n = await conn.read(buffer.subarray(held));
    if (n === null) return -1;
    held += n;
    const head = new TextDecoder().decode(buffer.subarray(0, held));
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const key = /^sec-websocket-key:\s*(\S+)/im.exec(head.slice(0, end))?.[1] ?? "";
    await writeAll(
      conn,
      encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${acceptToken(key)}\r\n\r\n`,
      ),
    );
    const rest = held - (end + 4);
    buffer.copyWithin(0, end + 4, held);
    return rest;
  }
  return -1;
}

async function echo(conn: Deno.Conn): Promise<void> {
  let input = new Uint8Array(BUFFER);
  let output = new Uint8Array(BUFFER);
  let view = new DataView(input.buffer);
  try {
    let held = await handshake(conn, input);
    while (held >= 0) {
      // Every whole frame held: unmask in place, copy out under a server
      // header (same first byte, no mask).
      let at = 0;
      let out = 0;
      let closing = false;
      let need = 0;
      while (held - at >= 2) {
        const second = input[at + 1]! & 0x7f;
        const lengthBytes = second === 126 ? 2 : second === 127 ? 8 : 0;
        const headerLength = 2 + lengthBytes + 4;
        if (held - at < headerLength) break;
        const length = second === 126
          ? view.getUint16(at + 2)
          : second === 127
          ? Number(view.getBigUint64(at + 2))
          : second;
        if (held - at < headerLength + length) {
          need = headerLength + length;
          break;
        }
        const payload = input.subarray(at + headerLength, at + headerLength + length);
        mask(payload, input.subarray(at + headerLength - 4, at + headerLength));
        output[out] = input[at]!;
        output[out + 1] = second;
        if (lengthBytes > 0) output.set(input.subarray(at + 2, at + 2 + lengthBytes), out + 2);
        output.set(payload, out + 2 + lengthBytes);
        out += 2 + lengthBytes + length;
        if ((input[at]! & 0x0f) === 0x8) closing = true;
        at += headerLength + length;
      }
      if (out > 0) await writeAll(conn, output.subarray(0, out));
      if (closing) break;
      input.copyWithin(0, at, held);
      held -= at;
      if (need > input.length) {
        const grown = new Uint8Array(need);
        grown.set(input.subarray(0, held));
        input = grown;
        output = new Uint8Array(need);
        view = new DataView(input.buffer);
      }
      const n = await conn.read(input.subarray(held));
      if (n === null) break;
      held += n;
    }
  } catch {
    // the peer went away
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

const listener = Deno.listen({ hostname, port });
console.log(`listening on ws://${hostname}:${(listener.addr as Deno.NetAddr).port}/`);
(async () => {
  for await (const conn of listener) echo(conn);
})();

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => Deno.exit(0));
}
