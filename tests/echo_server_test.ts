// The echo server example, run as its command line in DESIGN.md (conformance
// and load are measured through it): it listens where it says, echoes
// every message with its type, negotiates what its flags ask for, and
// exits 0 on SIGTERM.
import assert from "node:assert/strict";
import { connect } from "../client.ts";
import { handshakeRequest, hasHead, readUntil, withTimeout } from "./_drivers.ts";

const EXAMPLE = new URL("../examples/echo_server.ts", import.meta.url);
const STEP_TIMEOUT = 20_000;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface Exited {
  code: number;
  stdout: string;
  stderr: string;
}

interface RunningExample {
  port: number;
  /** SIGTERM; resolves once the process exited. */
  stop(): Promise<Exited>;
}

/**
 * Collects a stream's text (`done`); `line` resolves with the first match of
 * `pattern`, or `null` if the stream ends without one (or there is none).
 */
function collect(stream: ReadableStream<Uint8Array>, pattern?: RegExp) {
  let text = "";
  const { promise: line, resolve } = Promise.withResolvers<RegExpExecArray | null>();
  const done = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      const match = pattern?.exec(text) ?? null;
      if (match !== null) resolve(match);
    }
    resolve(null);
    return text;
  })();
  return { line, done };
}

async function startExample(flags: string[]): Promise<RunningExample> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", EXAMPLE.pathname, "--port", "0", ...flags],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(child.stdout, /listening on ws:\/\/127\.0\.0\.1:(\d+)\//);
  const stderr = collect(child.stderr);
  const stop = async (): Promise<Exited> => {
    try {
      child.kill("SIGTERM");
    } catch {
      // it exited already
    }
    const status = await withTimeout(child.status, STEP_TIMEOUT, "the example's exit");
    return { code: status.code, stdout: await stdout.done, stderr: await stderr.done };
  };
  const listening = await withTimeout(stdout.line, STEP_TIMEOUT, "the example's first line");
  if (listening === null) {
    const exited = await stop();
    assert.fail(`the example exited ${exited.code} without listening: ${exited.stderr}`);
  }
  return { port: Number(listening[1]), stop };
}

/** The `Sec-WebSocket-Extensions` answer to a browser's usual offer, or `null`. */
async function extensionsAnswer(port: number): Promise<string | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = decoder.decode(handshakeRequest(port)).replace(
      "\r\n\r\n",
      "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    );
    await conn.write(encoder.encode(request));
    const { bytes } = await readUntil(conn, hasHead);
    const head = decoder.decode(bytes);
    assert.match(head, /^HTTP\/1\.1 101 /);
    return /^sec-websocket-extensions: *(.*?)\r$/im.exec(head)?.[1] ?? null;
  } finally {
    conn.close();
  }
}

const RUNS: { flags: string[]; answer: string | null }[] = [
  { flags: [], answer: null },
  { flags: ["--deflate"], answer: "permessage-deflate" },
  { flags: ["--deflate-lean"], answer: "permessage-deflate; server_max_window_bits=12" },
];

for (const { flags, answer } of RUNS) {
  Deno.test(`the echo server example ${flags.join(" ") || "without flags"} echoes and stops on SIGTERM`, async () => {
    const example = await startExample(flags);
    let exited: Exited | null = null;
    try {
      assert.equal(await extensionsAnswer(example.port), answer);
      const socket = await connect(`ws://127.0.0.1:${example.port}/`, { deflate: true });
      try {
        assert.deepEqual(socket.extensions, answer === null ? [] : ["permessage-deflate"]);
        const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
        for (const message of ["hello", "é".repeat(40_000), new Uint8Array([1, 2, 3]), big]) {
          void socket.send(message);
          const echoed = await withTimeout(socket.receive(), STEP_TIMEOUT, "an echo");
          assert.deepEqual(echoed, message);
        }
        await socket.close(1000, "done");
        assert.deepEqual(await socket.closed, { code: 1000, reason: "done" });
      } finally {
        await socket[Symbol.asyncDispose]();
      }
    } finally {
      exited = await example.stop();
    }
    assert.equal(exited.code, 0, `stdout:\n${exited.stdout}\nstderr:\n${exited.stderr}`);
  });
}

Deno.test("the echo server example exits 2 on bad arguments", async () => {
  // Number() took "" as 0 and "0x50" as 80.
  const ports = ["x", "", "0x50", "1e3", "65536"].map((port) => ["--port", port]);
  for (const args of [[], ["--port", "0", "--deflate-leaner"], ...ports]) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", EXAMPLE.pathname, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 2, args.join(" "));
    assert.match(decoder.decode(output.stderr), /usage: /);
  }
});
