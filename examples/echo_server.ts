/**
 * An echo server on a raw `Deno.listen` socket, for conformance and load
 * testing: every message comes back with its type.
 *
 *     deno run -A examples/echo_server.ts --port N [--hostname H] [--deflate]
 *       [--deflate-lean] [--no-release]
 *
 * `--deflate` accepts permessage-deflate with its defaults; `--deflate-lean`
 * compresses with a 12-bit window and `memoryLevel` 5, as Python's
 * websockets does, so that the buffers our compressor keeps for a
 * connection between messages take 32 KiB, not 256.
 *
 * Prints `listening on ws://H:N/` once ready (N is the real port when
 * `--port 0`), and shuts down cleanly on SIGINT or SIGTERM.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import type { PerMessageDeflateOptions } from "../permessage_deflate.ts";
import { serve } from "../server.ts";
import type { Handler } from "../socket.ts";

interface Args {
  port: number;
  hostname: string;
  deflate: boolean | PerMessageDeflateOptions;
  /** Whether each message's buffer is given back once echoed (`Socket.release`). */
  release: boolean;
}

const LEAN_DEFLATE: PerMessageDeflateOptions = { serverMaxWindowBits: 12, memoryLevel: 5 };

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { port: NaN, hostname: "127.0.0.1", deflate: false, release: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=")
      ? arg.split("=", 2) as [string, string]
      : [arg, undefined];
    const value = (): string => {
      const next = inline ?? argv[++i];
      if (next === undefined) throw new TypeError(`${flag} needs a value`);
      return next;
    };
    if (flag === "--port") {
      // Digits only: Number() also takes "", "0x50" and "1e3".
      const text = value();
      args.port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
    } else if (flag === "--hostname") args.hostname = value();
    else if (flag === "--deflate") args.deflate = true;
    else if (flag === "--deflate-lean") args.deflate = LEAN_DEFLATE;
    else if (flag === "--no-release") args.release = false;
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new TypeError("--port N is required: a number from 0 to 65535 (0 picks a free port)");
  }
  return args;
}

// Keep one write in flight and let replies queue behind it, so replies to
// pipelined messages coalesce; wait only when a slow reader lets too much
// pile up.
const HIGH_WATER = 1 << 20;

const echo = (release: boolean): Handler => async (socket) => {
  try {
    for await (const message of socket) {
      const sent = socket.send(message);
      // send() encoded a copy, so the next message may be read into this
      // one's buffer: no fresh 64 KiB per large message.
      if (release) socket.release(message);
      if (socket.bufferedAmount > HIGH_WATER) await sent;
    }
  } catch {
    // the connection died mid-send; `closed` has the details
  }
};

let args: Args;
try {
  args = parseArgs(Deno.args);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  console.error(
    "usage: deno run -A examples/echo_server.ts --port N [--hostname H] [--deflate] [--deflate-lean] [--no-release]",
  );
  Deno.exit(2);
}

const server = serve({
  hostname: args.hostname,
  port: args.port,
  deflate: args.deflate,
  // An IPv6 address goes in brackets in a URL (RFC 3986 §3.2.2).
  onListen: ({ hostname, port }) =>
    console.log(
      `listening on ws://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}/`,
    ),
  onError: () => {},
}, echo(args.release));

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    server.shutdown().then(() => Deno.exit(0));
  });
}
await server.finished;
