/**
 * `deno task inspect`: explains a WebSocket byte stream the way this module
 * reads it: the handshake with its accept-token derivation, and every
 * frame's header bits, length form, masking key, payload and the event the
 * `Connection` yields for it.
 *
 * ```sh
 * printf '81 85 37 fa 21 3d 7f 9f 4d 51 58' | deno task inspect
 * deno task inspect --raw capture.bin
 * deno task inspect --proxy 9000 127.0.0.1:8080
 * ```
 *
 * The explaining is in `inspect/explain.ts`; this file reads arguments and
 * input, prints, and runs the proxy.
 *
 * @module
 */

import { decodeInput, type InputFormat } from "./inspect/input.ts";
import { explain, type ExplainOptions } from "./inspect/explain.ts";
import { type Direction, startProxy } from "./inspect/proxy.ts";
import type { InspectRecord, Role } from "./inspect/records.ts";
import { renderJson, renderText } from "./inspect/render.ts";

const USAGE = `Explain a WebSocket byte stream as @sansio/websocket reads it.

Usage:
  deno task inspect [options] [FILE]
  deno task inspect [options] --proxy LISTEN_PORT TARGET_HOST:TARGET_PORT

FILE holds one direction of a connection: hex text ("81 05 48 65 ..."),
base64 text, or the raw bytes of a capture. Without FILE, stdin is read.
A stream may start with the handshake request ("GET ...") or response
("HTTP/1.1 101 ...").

Options:
  --hex, --base64, --raw  the input's format (default: guessed from its characters)
  --role client|server    who sent the bytes (default: the handshake, else the first MASK bit)
  --deflate               inflate RSV1 messages as permessage-deflate (default: when the handshake says so)
  --key KEY               the request's Sec-WebSocket-Key, to check a response seen alone
  --bytes N               payload bytes to show in hex (default 16)
  --json                  one JSON object per line (handshake, frame, not read, end)
  --proxy PORT HOST:PORT  listen on 127.0.0.1:PORT, relay each connection to HOST:PORT
                          unchanged, and explain both directions as they flow
  -h, --help              this text

Colour is used on a terminal unless NO_COLOR is set.
`;

/** The command line, parsed. */
export interface Arguments {
  /** The input file, or `null` for stdin. */
  file: string | null;
  /** How the input is written. */
  format: InputFormat;
  /** Who sent the bytes, when forced. */
  role: Role | null;
  /** Inflate RSV1 messages whatever the handshake says. */
  deflate: boolean;
  /** The request's key, for a lone response. */
  key: string | null;
  /** Payload bytes shown. */
  bytes: number;
  /** Print JSON lines. */
  json: boolean;
  /** Live mode: where to listen and where to relay. */
  proxy: { port: number; hostname: string; targetPort: number } | null;
  /** Print the usage. */
  help: boolean;
}

/**
 * Parse the command line.
 *
 * @param args The arguments after the script name.
 * @returns The parsed arguments.
 * @throws {TypeError} With a one-line message on a bad argument.
 *
 * @example
 * ```ts
 * import { parseArguments } from "./inspect.ts";
 * const args = parseArguments(["--json", "--proxy", "9000", "127.0.0.1:8080"]);
 * console.assert(args.json && args.proxy?.targetPort === 8080);
 * ```
 */
export function parseArguments(args: readonly string[]): Arguments {
  const parsed: Arguments = {
    file: null,
    format: "auto",
    role: null,
    deflate: false,
    key: null,
    bytes: 16,
    json: false,
    proxy: null,
    help: false,
  };
  const take = (name: string, index: number): string => {
    const value = args[index];
    if (value === undefined) throw new TypeError(`${name} needs a value`);
    return value;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    switch (arg) {
      case "-h":
      case "--help":
        parsed.help = true;
        break;
      case "--hex":
      case "--base64":
      case "--raw":
        parsed.format = arg.slice(2) as InputFormat;
        break;
      case "--role": {
        const role = take(arg, ++i);
        if (role !== "client" && role !== "server") {
          throw new TypeError(`--role is client or server, not ${JSON.stringify(role)}`);
        }
        parsed.role = role;
        break;
      }
      case "--deflate":
        parsed.deflate = true;
        break;
      case "--key":
        parsed.key = take(arg, ++i);
        break;
      case "--bytes": {
        const value = Number(take(arg, ++i));
        if (!Number.isSafeInteger(value) || value < 0) {
          throw new TypeError("--bytes takes a whole number");
        }
        parsed.bytes = value;
        break;
      }
      case "--json":
        parsed.json = true;
        break;
      case "--proxy": {
        const port = parsePort(take(arg, ++i));
        const target = take(arg, ++i);
        const colon = target.lastIndexOf(":");
        if (colon <= 0) throw new TypeError("--proxy needs TARGET_HOST:TARGET_PORT");
        parsed.proxy = {
          port,
          hostname: target.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
          targetPort: parsePort(target.slice(colon + 1)),
        };
        break;
      }
      default:
        if (arg.startsWith("-") && arg !== "-") throw new TypeError(`Unknown option ${arg}`);
        if (parsed.file !== null) throw new TypeError("Give at most one input file");
        parsed.file = arg === "-" ? null : arg;
    }
  }
  return parsed;
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^[0-9]+$/.test(text) || port > 65535) {
    throw new TypeError(`Bad port ${JSON.stringify(text)}`);
  }
  return port;
}

const encoder = new TextEncoder();

function write(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += stream.writeSync(bytes.subarray(written));
}

async function main(argv: readonly string[]): Promise<number> {
  let args: Arguments;
  try {
    args = parseArguments(argv);
  } catch (error) {
    write(Deno.stderr, `inspect: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    write(Deno.stdout, USAGE);
    return 0;
  }
  const color = !args.json && Deno.stdout.isTerminal() && Deno.env.get("NO_COLOR") === undefined;
  const options: ExplainOptions = { deflate: args.deflate, previewBytes: args.bytes };
  if (args.key !== null) options.key = args.key;

  if (args.proxy !== null) return await runProxy(args, options, color);

  if (args.file === null && Deno.stdin.isTerminal()) {
    write(Deno.stderr, `inspect: give a FILE, or pipe the bytes in\n\n${USAGE}`);
    return 2;
  }
  let bytes: Uint8Array;
  try {
    const input = args.file === null
      ? await new Response(Deno.stdin.readable).bytes()
      : await Deno.readFile(fromCallerDirectory(args.file));
    bytes = decodeInput(input, args.format);
  } catch (error) {
    write(Deno.stderr, `inspect: ${(error as Error).message}\n`);
    return 1;
  }
  if (args.role !== null) options.role = args.role;
  for (const record of explain(bytes, options)) {
    write(Deno.stdout, args.json ? renderJson(record) : renderText(record, { color }));
  }
  return 0;
}

async function runProxy(args: Arguments, options: ExplainOptions, color: boolean): Promise<number> {
  const { port, hostname, targetPort } = args.proxy!;
  const print = (id: number, direction: Direction, record: InspectRecord) => {
    write(
      Deno.stdout,
      args.json
        ? renderJson(record, { connection: id, direction })
        : renderText(record, { color, label: `#${id} ` }),
    );
  };
  let proxy;
  try {
    proxy = startProxy({
      listenPort: port,
      targetHostname: hostname,
      targetPort,
      explain: options,
      onRecord: print,
      onError: (id, error) => write(Deno.stderr, `#${id} ${(error as Error).message ?? error}\n`),
    });
  } catch (error) {
    write(Deno.stderr, `inspect: ${(error as Error).message}\n`);
    return 1;
  }
  // Where to connect goes to stderr in JSON mode, so stdout stays JSON lines.
  write(
    args.json ? Deno.stderr : Deno.stdout,
    `inspector proxy on ws://127.0.0.1:${proxy.port}/ relaying to ${hostname}:${targetPort}\n`,
  );
  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  await stopped.promise;
  for (const signal of signals) Deno.removeSignalListener(signal, stop);
  await proxy.close();
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exitCode = await main(Deno.args);
  } catch (error) {
    // A reader that went away (`| head`) is not an error worth a trace.
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}

// `deno task` runs in the folder of deno.json, and says where it was called
// from in INIT_CWD: a relative path is the caller's.
function fromCallerDirectory(file: string): string {
  const caller = Deno.env.get("INIT_CWD");
  if (caller === undefined || file.startsWith("/")) return file;
  return `${caller.replace(/\/$/, "")}/${file}`;
}
