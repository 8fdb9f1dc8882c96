/**
 * End-to-end echo benchmark: this module's `serve()` on raw `Deno.listen`
 * (examples/echo_server.ts) against `Deno.serve` + `Deno.upgradeWebSocket`
 * (bench/native_echo_server.ts, Deno's native Rust WebSocket), both driven
 * by the same Node load client (bench/node/load_client.mjs) in its own
 * process.
 *
 *     deno run -A bench/echo.ts [--rounds 3] [--duration 2] [--warmup 1]
 *       [--only TEXT] [--text] [--deflate] [--against DIR] [--floor] [--kept]
 *       [--allocs] [--gc] [--json FILE]
 *
 * Every row starts a fresh server process per measurement, and the servers
 * alternate A/B, B/A over the rounds, so that the noise of a shared
 * two-core machine hits both alike. The ratio of a row is the median of the
 * per-round ratios (ours / native, each pair measured back to back); the
 * other columns are medians over the rounds. The messages are binary;
 * `--text` makes them text (JSON-ish chat, ASCII), which a server decodes
 * and checks as UTF-8 and encodes again. `--deflate` adds this module
 * with permessage-deflate on compressible text (native cannot negotiate it),
 * at its defaults and lean (`--deflate-lean` of the echo server: a 12-bit
 * window and `memoryLevel` 5 for its compressor).
 * `--against DIR` adds the echo server of another checkout of this module
 * (say, `git worktree add /tmp/before HEAD~3`), measured in the same rounds:
 * the way to tell a change's effect from this machine's drift. `--floor`
 * adds bench/floor_echo_server.ts, the least any echo server on Deno's
 * `conn.read`/`conn.write` does per message (fixed buffers, no protocol
 * library): its ratio to native is how far a target is reachable on this
 * machine at all, measured in the same rounds. Except on 1 × 32 B 32 deep,
 * where only its CPU per message is a floor: it answers each read with one
 * write, so the load client and it take turns, while a server that writes a
 * lone socket's replies a few at a time keeps both cores busy. `--kept` adds
 * this module's echo server with `--no-release`: every message's buffer left
 * to the garbage collector, as an application that keeps its messages would
 * (the `ours` server gives each back once echoed, `Socket.release`).
 * `--allocs` adds the server's `calloc` and `malloc` calls per message,
 * counted with `perf` probes on libc (Linux, root): in Deno every new typed
 * array is a buffer allocation (a calloc and a few mallocs), so these
 * columns show where a change adds or removes one; unlike timings they
 * barely move between runs. Each probe hit traps into the kernel, so a run
 * with `--allocs` is slow: take its allocation columns, not its timings.
 * `--gc` runs the servers with V8's `--trace-gc-nvp` and adds the bytes the
 * server's JS heap allocated per message and its full collections
 * (mark-compacts) per second: garbage per message is what a change to the
 * hot path moves first, and it is as steady across runs as the counts.
 *
 * Reading the p99 column at 256 connections: both processes then run flat
 * out, and Deno completes some connections' pending `conn.read`s many
 * turns late (thousands of other reads finish while one waits, its data
 * long arrived). The tail grows with the server's CPU per message while
 * p50 falls: the floor server given a few µs of busy work per message
 * shows it too, more than ours. Native Deno's WebSocket does not read
 * through `conn.read`, and its tail stays short.
 *
 * @module
 */

// deno-lint-ignore-file no-console

const HERE = new URL(".", import.meta.url);
const path = (relative: string): string => new URL(relative, HERE).pathname;

interface Options {
  rounds: number;
  duration: number;
  warmup: number;
  only: string;
  text: boolean;
  deflate: boolean;
  against: string;
  floor: boolean;
  kept: boolean;
  allocs: boolean;
  gc: boolean;
  json: string;
}

function parseOptions(argv: readonly string[]): Options {
  const options: Options = {
    rounds: 3,
    duration: 2,
    warmup: 1,
    only: "",
    text: false,
    deflate: false,
    against: "",
    floor: false,
    kept: false,
    allocs: false,
    gc: false,
    json: "",
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new TypeError(`${arg} needs a value`);
      return next;
    };
    if (arg === "--rounds") options.rounds = Number(value());
    else if (arg === "--duration") options.duration = Number(value());
    else if (arg === "--warmup") options.warmup = Number(value());
    else if (arg === "--only") options.only = value();
    else if (arg === "--text") options.text = true;
    else if (arg === "--deflate") options.deflate = true;
    else if (arg === "--against") options.against = value();
    else if (arg === "--floor") options.floor = true;
    else if (arg === "--kept") options.kept = true;
    else if (arg === "--allocs") options.allocs = true;
    else if (arg === "--gc") options.gc = true;
    else if (arg === "--json") options.json = value();
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  return options;
}

interface Row {
  name: string;
  conns: number;
  size: number;
  depth: number;
  /** The least ours/native ratio the issue asks for; 0 for none. */
  target: number;
}

const KIB = 1024;
const ROWS: Row[] = [];
for (const conns of [1, 16, 256]) {
  for (const size of [32, KIB, 64 * KIB]) {
    ROWS.push({
      name: `${conns} × ${label(size)}`,
      conns,
      size,
      depth: 1,
      target: size === 64 * KIB ? 1.3 : 1.0,
    });
  }
}
ROWS.push({ name: "1 × 32 B, 32 deep", conns: 1, size: 32, depth: 32, target: 5 });
ROWS.push({ name: "16 × 1 KiB, 16 deep", conns: 16, size: KIB, depth: 16, target: 5 });
// Beyond the issue's rows: messages past the 64 KiB a read buffer is made
// for, as file transfers send them.
ROWS.push({ name: "4 × 256 KiB", conns: 4, size: 256 * KIB, depth: 1, target: 0 });
ROWS.push({ name: "4 × 1 MiB", conns: 4, size: 1024 * KIB, depth: 1, target: 0 });
const IDLE_CONNS = 256;

function label(size: number): string {
  return size >= KIB ? `${size / KIB} KiB` : `${size} B`;
}

interface Server {
  name: string;
  script: string;
  args: string[];
  deflate: boolean;
}

const OURS: Server = {
  name: "ours",
  script: "../examples/echo_server.ts",
  args: [],
  deflate: false,
};
const NATIVE: Server = {
  name: "native",
  script: "native_echo_server.ts",
  args: [],
  deflate: false,
};
const FLOOR: Server = {
  name: "floor",
  script: "floor_echo_server.ts",
  args: [],
  deflate: false,
};
const OURS_KEPT: Server = {
  name: "ours, kept",
  script: "../examples/echo_server.ts",
  args: ["--no-release"],
  deflate: false,
};
const OURS_DEFLATE: Server = {
  name: "ours+deflate",
  script: "../examples/echo_server.ts",
  args: ["--deflate"],
  deflate: true,
};
const OURS_DEFLATE_LEAN: Server = {
  name: "ours+deflate-lean",
  script: "../examples/echo_server.ts",
  args: ["--deflate-lean"],
  deflate: true,
};

interface Measurement {
  msgPerSec: number;
  mbPerSec: number;
  p50: number;
  p99: number;
  /** Server CPU over the measured window, in cores (1.0 = one core busy). */
  cpu: number;
  clientCpu: number;
  /** Peak resident memory of the server process, bytes. */
  peakRss: number;
  /** libc calloc and malloc calls of the server per message echoed (`--allocs`), else NaN. */
  callocs: number;
  mallocs: number;
  /** JS heap bytes the server allocated per message echoed (`--gc`), else NaN. */
  heapPerMessage: number;
  /** The server's full collections per second (`--gc`), else NaN. */
  fullGcsPerSecond: number;
}

/** Lines of a child's stdout, as they come. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    rest += text;
    let at: number;
    while ((at = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, at);
      rest = rest.slice(at + 1);
    }
  }
  if (rest !== "") yield rest;
}

interface Running {
  child: Deno.ChildProcess;
  port: number;
  /** Called with each line the server prints once it listens. */
  onLine: ((line: string) => void) | null;
  /** Resolves when the server's output has ended. */
  drained: Promise<void>;
}

async function startServer(server: Server, v8Flags: readonly string[] = []): Promise<Running> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...v8Flags, path(server.script), "--port", "0", ...server.args],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const output = lines(child.stdout);
  let port = 0;
  while (port === 0) {
    const next = await output.next();
    if (next.done) throw new Error(`${server.name} exited before listening`);
    const match = /listening on ws:\/\/[^:]+:(\d+)\//.exec(next.value);
    if (match !== null) port = Number(match[1]);
  }
  const running: Running = { child, port, onLine: null, drained: Promise.resolve() };
  // Read on while it runs: a server that prints (--gc) must never fill the pipe.
  running.drained = (async () => {
    for await (const line of output) running.onLine?.(line);
  })();
  return running;
}

async function stopServer(running: Running): Promise<void> {
  try {
    running.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      running.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, 2000);
  await running.child.status;
  clearTimeout(timer);
  await running.drained;
}

/** What V8's `--trace-gc-nvp` lines say while `counting` is on. */
class GcTally {
  counting = false;
  /** JS heap bytes allocated between collections, summed. */
  allocated = 0;
  fullGcs = 0;

  line(line: string): void {
    const at = line.indexOf("GC: {");
    if (!this.counting || at < 0) return;
    const record = JSON.parse(line.slice(at + 4)) as { gc?: string; allocated?: number };
    this.allocated += record.allocated ?? 0;
    if (record.gc === "mc") this.fullGcs++;
  }
}

/** utime + stime of a process, in seconds (Linux `/proc`). */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The fields after the command name, which may hold spaces, in parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15, in clock ticks of 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A field of `/proc/PID/status` in bytes (VmRSS, VmHWM). */
function statusBytes(pid: number, field: string): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return match === null ? NaN : Number(match[1]) * 1024;
}

function client(args: string[], stdin: "piped" | "null"): Deno.ChildProcess {
  return new Deno.Command("node", {
    args: [path("node/load_client.mjs"), ...args],
    stdout: "piped",
    stderr: "inherit",
    stdin,
  }).spawn();
}

async function measure(server: Server, row: Row, options: Options): Promise<Measurement> {
  const running = await startServer(server, options.gc ? ["--v8-flags=--trace-gc-nvp"] : []);
  const gc = new GcTally();
  running.onLine = (line) => gc.line(line);
  try {
    const pid = running.child.pid;
    const load = client([
      "--port",
      String(running.port),
      "--conns",
      String(row.conns),
      "--size",
      String(row.size),
      "--depth",
      String(row.depth),
      "--warmup",
      String(options.warmup),
      "--duration",
      String(options.duration),
      ...(server.deflate ? ["--deflate"] : options.text ? ["--text"] : []),
    ], "null");
    let cpu0 = 0;
    let t0 = 0;
    let result: Record<string, number> | null = null;
    let counting: AllocationCount | null = null;
    let allocations = { calloc: NaN, malloc: NaN };
    for await (const line of lines(load.stdout)) {
      const message = JSON.parse(line) as Record<string, number | string>;
      if (message["event"] === "measuring") {
        if (options.allocs) counting = countAllocations(pid);
        gc.counting = true;
        cpu0 = cpuSeconds(pid);
        t0 = performance.now();
      } else if (message["event"] === "result") {
        gc.counting = false;
        const cpu = (cpuSeconds(pid) - cpu0) / ((performance.now() - t0) / 1000);
        result = { ...message as Record<string, number>, cpu };
        if (counting !== null) allocations = await counting.stop();
      }
    }
    const status = await load.status;
    if (!status.success || result === null) throw new Error(`Load client failed on ${row.name}`);
    const messages = result["messages"]!;
    return {
      msgPerSec: result["msgPerSec"]!,
      mbPerSec: result["mbPerSec"]!,
      p50: result["p50"]!,
      p99: result["p99"]!,
      cpu: result["cpu"]!,
      clientCpu: result["clientCpu"]!,
      peakRss: statusBytes(pid, "VmHWM"),
      callocs: allocations.calloc / messages,
      mallocs: allocations.malloc / messages,
      heapPerMessage: options.gc ? gc.allocated / messages : NaN,
      fullGcsPerSecond: options.gc ? gc.fullGcs / result["seconds"]! : NaN,
    };
  } finally {
    await stopServer(running);
  }
}

interface AllocationCount {
  /** Stop counting; resolves with the calls counted. */
  stop(): Promise<{ calloc: number; malloc: number }>;
}

/** Add uprobes on libc's calloc and malloc (once; `perf probe` keeps them). */
async function addAllocationProbes(): Promise<void> {
  const maps = Deno.readTextFileSync(`/proc/${Deno.pid}/maps`);
  const libc = /\s(\/\S*\/libc\.so\.6)$/m.exec(maps)?.[1];
  if (libc === undefined) throw new Error("--allocs: no libc.so.6 in this process's maps");
  for (const symbol of ["calloc", "malloc"]) {
    const { success, stderr } = await new Deno.Command("perf", {
      args: ["probe", "-x", libc, "--add", symbol],
      stdout: "null",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stderr);
    if (!success && !/already exists/.test(text)) {
      throw new Error(`--allocs needs perf and root: perf probe failed: ${text.trim()}`);
    }
  }
}

/** Count the calloc and malloc calls of process `pid` from now until stop(). */
function countAllocations(pid: number): AllocationCount {
  const output = Deno.makeTempFileSync({ prefix: "echo-allocs-" });
  const perf = new Deno.Command("perf", {
    args: [
      "stat",
      "-x",
      ",",
      "-o",
      output,
      "-e",
      "probe_libc:calloc,probe_libc:malloc",
      "-p",
      String(pid),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  return {
    async stop() {
      perf.kill("SIGINT");
      await perf.status;
      const text = Deno.readTextFileSync(output);
      Deno.removeSync(output);
      const count = (event: string): number => {
        const line = text.split("\n").find((l) => l.includes(event));
        return line === undefined ? NaN : Number(line.split(",")[0]);
      };
      return { calloc: count("probe_libc:calloc"), malloc: count("probe_libc:malloc") };
    },
  };
}

/** Resident memory per idle connection, three ways (bytes). */
interface IdleMeasurement {
  /** RSS after opening IDLE_CONNS, less before, per connection. */
  average: number;
  /** RSS after opening IDLE_CONNS more, less after the first IDLE_CONNS, per connection. */
  marginal: number;
  /** The same for a third IDLE_CONNS, each idle after one echoed message. */
  afterMessage: number;
}

/**
 * Open IDLE_CONNS idle connections, each after one echoed message when
 * `hello`; resolves once they are all open (and echoed).
 */
async function openIdle(server: Server, port: number, hello = false) {
  const idle = client([
    "--port",
    String(port),
    "--conns",
    String(IDLE_CONNS),
    "--idle",
    ...(hello ? ["--hello"] : []),
    ...(server.deflate ? ["--deflate"] : []),
  ], "piped");
  const output = lines(idle.stdout);
  for await (const line of output) {
    if (line.includes("ready")) break;
  }
  return {
    async close(): Promise<void> {
      await idle.stdin.close();
      for await (const _ of output) { /* discard */ }
      await idle.status;
    },
  };
}

async function measureIdle(server: Server): Promise<IdleMeasurement> {
  const running = await startServer(server);
  try {
    const pid = running.child.pid;
    // One short echo first, so that compiling the code paths is not counted.
    const warm = client([
      "--port",
      String(running.port),
      "--conns",
      "4",
      "--warmup",
      "0.2",
      "--duration",
      "0.2",
    ], "null");
    for await (const _ of lines(warm.stdout)) { /* discard */ }
    await warm.status;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = statusBytes(pid, "VmRSS");
    const first = await openIdle(server, running.port);
    // Let the handshakes finish on the server side and the heap settle.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const afterFirst = statusBytes(pid, "VmRSS");
    const second = await openIdle(server, running.port);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const afterSecond = statusBytes(pid, "VmRSS");
    const third = await openIdle(server, running.port, true);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const afterThird = statusBytes(pid, "VmRSS");
    await Promise.all([first.close(), second.close(), third.close()]);
    return {
      average: (afterFirst - before) / IDLE_CONNS,
      marginal: (afterSecond - afterFirst) / IDLE_CONNS,
      afterMessage: (afterThird - afterSecond) / IDLE_CONNS,
    };
  } finally {
    await stopServer(running);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

// A server that echoed nothing in a row has no round trips: its
// percentiles come back null, and print as a dash.
function fmt(value: number | null, digits = 0): string {
  if (value === null || !Number.isFinite(value)) return "—";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const options = parseOptions(Deno.args);
const AGAINST: Server[] = options.against === "" ? [] : [{
  name: "against",
  script: `${Deno.realPathSync(options.against)}/examples/echo_server.ts`,
  args: [],
  deflate: false,
}];
const servers = [
  OURS,
  NATIVE,
  ...AGAINST,
  ...(options.floor ? [FLOOR] : []),
  ...(options.kept ? [OURS_KEPT] : []),
  ...(options.deflate ? [OURS_DEFLATE, OURS_DEFLATE_LEAN] : []),
];
const rows = ROWS.filter((row) => row.name.includes(options.only));
const report: Record<string, unknown>[] = [];
if (options.allocs) await addAllocationProbes();
// The allocation columns, only with --allocs.
const allocHeader = (options.allocs ? " calloc/msg | malloc/msg |" : "") +
  (options.gc ? " heap B/msg | full GCs/s |" : "");
const allocRule = (options.allocs ? "--:|--:|" : "") + (options.gc ? "--:|--:|" : "");

console.log(
  `# echo: ${options.rounds} rounds, ${options.warmup} s warm-up + ${options.duration} s per measurement, fresh server per measurement, ${
    options.text ? "text" : "binary"
  } messages`,
);
console.log(
  `| row | server | msg/s | MB/s | p50 ms | p99 ms | server CPU | server µs CPU/msg | client CPU | peak RSS MB |${allocHeader} ours/native (min–max) | target |`,
);
console.log(`|---|---|--:|--:|--:|--:|--:|--:|--:|--:|${allocRule}--:|--:|`);
for (const row of rows) {
  const results = new Map<string, Measurement[]>(servers.map((server) => [server.name, []]));
  const ratios = new Map<string, number[]>(servers.map((server) => [server.name, []]));
  for (let round = 0; round < options.rounds; round++) {
    // A, B, then B, A: neither server always runs first.
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    const got = new Map<string, Measurement>();
    for (const server of order) {
      const m = await measure(server, row, options);
      got.set(server.name, m);
      results.get(server.name)!.push(m);
    }
    for (const server of servers) {
      ratios.get(server.name)!.push(got.get(server.name)!.msgPerSec / got.get("native")!.msgPerSec);
    }
  }
  for (const server of servers) {
    const ms = results.get(server.name)!;
    const rs = ratios.get(server.name)!;
    const ratio = median(rs);
    const entry = {
      row: row.name,
      server: server.name,
      msgPerSec: median(ms.map((m) => m.msgPerSec)),
      mbPerSec: median(ms.map((m) => m.mbPerSec)),
      p50: median(ms.map((m) => m.p50)),
      p99: median(ms.map((m) => m.p99)),
      cpu: median(ms.map((m) => m.cpu)),
      cpuPerMessage: median(ms.map((m) => m.cpu / m.msgPerSec)),
      clientCpu: median(ms.map((m) => m.clientCpu)),
      peakRss: median(ms.map((m) => m.peakRss)),
      callocsPerMessage: median(ms.map((m) => m.callocs)),
      mallocsPerMessage: median(ms.map((m) => m.mallocs)),
      heapPerMessage: median(ms.map((m) => m.heapPerMessage)),
      fullGcsPerSecond: median(ms.map((m) => m.fullGcsPerSecond)),
      ratio,
      ratios: rs,
      target: row.target,
    };
    report.push(entry);
    const isNative = server === NATIVE;
    console.log(
      `| ${row.name} | ${server.name} | ${fmt(entry.msgPerSec)} | ${fmt(entry.mbPerSec, 1)} | ${
        fmt(entry.p50, 3)
      } | ${fmt(entry.p99, 3)} | ${fmt(entry.cpu, 2)} | ${fmt(entry.cpuPerMessage * 1e6, 1)} | ${
        fmt(entry.clientCpu, 2)
      } | ${fmt(entry.peakRss / 1e6, 1)} |${
        options.allocs
          ? ` ${fmt(entry.callocsPerMessage, 2)} | ${fmt(entry.mallocsPerMessage, 2)} |`
          : ""
      }${options.gc ? ` ${fmt(entry.heapPerMessage)} | ${fmt(entry.fullGcsPerSecond, 1)} |` : ""} ${
        isNative ? "" : `${fmt(ratio, 2)}x (${fmt(Math.min(...rs), 2)}–${fmt(Math.max(...rs), 2)})`
      } | ${
        server === OURS && row.target > 0
          ? `≥ ${row.target}x ${ratio >= row.target ? "✓" : "✗"}`
          : ""
      } |`,
    );
  }
}

if ("idle".includes(options.only) || options.only === "") {
  console.log(`\n# idle: resident memory per connection, ${IDLE_CONNS} connections`);
  console.log(
    "Resident memory grows in the steps of the JS heap and the allocator, and by what " +
      "the JIT compiles once a path is hot (for ours mostly during the second batch: " +
      "with --no-opt --no-maglev it measured half), so the " +
      `first ${IDLE_CONNS} connections and the next ${IDLE_CONNS} give different figures; ` +
      `both are shown. A third ${IDLE_CONNS} each send one message (with --deflate, ` +
      "compressed) and idle once it is echoed: what a server keeps for a connection " +
      "that has talked.",
  );
  console.log(
    `| server | KB per connection, first ${IDLE_CONNS} (each round) | median | KB per connection, next ${IDLE_CONNS} (each round) | median | KB per connection, after one message (each round) | median | target |`,
  );
  console.log("|---|---|--:|---|--:|---|--:|--:|");
  const idle = new Map<string, IdleMeasurement[]>(servers.map((server) => [server.name, []]));
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    for (const server of order) idle.get(server.name)!.push(await measureIdle(server));
  }
  for (const server of servers) {
    const values = idle.get(server.name)!;
    const averages = values.map((value) => value.average);
    const marginals = values.map((value) => value.marginal);
    const talked = values.map((value) => value.afterMessage);
    const kb = median(averages) / 1000;
    report.push({
      row: `${IDLE_CONNS} idle`,
      server: server.name,
      bytesPerConnection: median(averages),
      bytesPerAddedConnection: median(marginals),
      bytesPerConnectionAfterMessage: median(talked),
    });
    const list = (bytes: number[]) => bytes.map((v) => fmt(v / 1000, 1)).join(", ");
    console.log(
      `| ${server.name} | ${list(averages)} | ${fmt(kb, 1)} | ${list(marginals)} | ${
        fmt(median(marginals) / 1000, 1)
      } | ${list(talked)} | ${fmt(median(talked) / 1000, 1)} | ${
        server === OURS ? `≤ 16 KB ${kb <= 16 ? "✓" : "✗"}` : ""
      } |`,
    );
  }
}

if (options.json !== "") Deno.writeTextFileSync(options.json, JSON.stringify(report, null, 2));
