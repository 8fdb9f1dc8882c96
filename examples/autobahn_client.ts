/**
 * Drives this module's client through a fuzzing server that speaks the
 * Autobahn TestSuite protocol (`wstest -m fuzzingserver`):
 *
 *     deno run -A examples/autobahn_client.ts --url ws://H:N --agent NAME
 *
 * Asks `URL/getCaseCount` for the number of cases, runs each one at
 * `URL/runCase?case=i&agent=NAME` by echoing every message with its type
 * until the server closes, then asks `URL/updateReports?agent=NAME` to
 * write the reports. A case whose connection fails (the fuzzer breaks the
 * protocol on purpose) is logged and the run goes on; the exit code is 0
 * once the run completes, 1 when the case count cannot be read, 2 for bad
 * arguments.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { connect, type ConnectOptions } from "../client.ts";
import type { MessageData, Socket } from "../socket.ts";

interface Args {
  url: string;
  agent: string;
}

function parseArgs(argv: readonly string[]): Args {
  let url: string | undefined;
  let agent: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=")
      ? arg.split(/=(.*)/s, 2) as [string, string]
      : [arg, undefined];
    const value = (): string => {
      const next = inline ?? argv[++i];
      if (next === undefined) throw new TypeError(`${flag} needs a value`);
      return next;
    };
    if (flag === "--url") url = value();
    else if (flag === "--agent") agent = value();
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  if (url === undefined) throw new TypeError("--url ws://H:N is required");
  if (agent === undefined || agent === "") throw new TypeError("--agent NAME is required");
  const parsed = new URL(url);
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`--url must be a ws:// or wss:// URL, got ${url}`);
  }
  // The endpoints hang off the URL's root; a trailing slash must not double.
  return { url: url.replace(/\/+$/, ""), agent };
}

// Autobahn's 9.x cases send messages of up to 16 MiB (and time them);
// 12.x/13.x need permessage-deflate offered. The limits leave room for
// the largest case with a margin, and the decompressed size of a 12.x
// message is bounded by the same `maxMessageSize`.
const OPTIONS: ConnectOptions = {
  deflate: true,
  limits: { maxMessageSize: 128 << 20, maxFrameSize: 128 << 20 },
  handshakeTimeout: 30_000,
};

// Replies may queue behind the write in flight and go out together; only a
// reader that lets this much pile up makes us wait.
const HIGH_WATER = 1 << 20;

async function echo(socket: Socket): Promise<void> {
  try {
    for await (const message of socket) {
      const sent = socket.send(message);
      if (socket.bufferedAmount > HIGH_WATER) await sent;
    }
  } catch {
    // The fuzzer closed (or broke the connection) mid-send; `closed` says how.
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function getCaseCount(url: string): Promise<number> {
  const socket = await connect(`${url}/getCaseCount`, OPTIONS);
  let text: MessageData;
  try {
    text = await socket.receive({ timeout: 30_000 });
  } finally {
    await socket.close().catch(() => {});
  }
  const count = typeof text === "string" ? Number(text) : NaN;
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new TypeError(`The case count is not a number: ${JSON.stringify(text)}`);
  }
  return count;
}

async function runCase(url: string, agent: string, index: number): Promise<number | null> {
  const socket = await connect(
    `${url}/runCase?case=${index}&agent=${encodeURIComponent(agent)}`,
    OPTIONS,
  );
  await echo(socket);
  // The driver answered the fuzzer's close (or sent 1002/1007/1009 on a
  // protocol error); wait until the transport is released.
  const { code } = await socket.closed;
  return code;
}

async function updateReports(url: string, agent: string): Promise<void> {
  const socket = await connect(`${url}/updateReports?agent=${encodeURIComponent(agent)}`, OPTIONS);
  // The server writes the reports, then closes; nothing is sent our way.
  await echo(socket);
  await socket.closed;
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(Deno.args);
  } catch (error) {
    console.error(describe(error));
    console.error("usage: deno run -A examples/autobahn_client.ts --url ws://H:N --agent NAME");
    return 2;
  }
  const { url, agent } = args;

  let count: number;
  try {
    count = await getCaseCount(url);
  } catch (error) {
    console.error(`cannot read the case count from ${url}/getCaseCount: ${describe(error)}`);
    return 1;
  }
  console.log(`running ${count} cases against ${url} as ${agent}`);

  const codes = new Map<string, number>();
  const started = performance.now();
  for (let i = 1; i <= count; i++) {
    const caseStart = performance.now();
    let outcome: string;
    try {
      const code = await runCase(url, agent, i);
      outcome = `closed ${code}`;
    } catch (error) {
      // The fuzzer may refuse or garble a handshake on purpose: one line, next case.
      outcome = `failed: ${describe(error)}`;
    }
    const key = outcome.startsWith("failed") ? "connection failed" : outcome;
    codes.set(key, (codes.get(key) ?? 0) + 1);
    console.log(
      `case ${i}/${count}: ${outcome} (${(performance.now() - caseStart).toFixed(0)} ms)`,
    );
  }

  try {
    await updateReports(url, agent);
    console.log(`reports updated for ${agent}`);
  } catch (error) {
    console.error(`updateReports failed: ${describe(error)}`);
  }
  const tally = [...codes].map(([outcome, n]) => `${n} ${outcome}`).join(", ");
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`ran ${count} cases in ${seconds} s${tally === "" ? "" : `: ${tally}`}`);
  return 0;
}

Deno.exit(await main());
