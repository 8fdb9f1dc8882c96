/**
 * The masking table: throughput of `mask()` against the byte loop and the
 * native `bufferutil` addon under Node, per payload size, each payload at
 * the offset it has in a client frame (6 after a 7-bit length, 8 after a
 * 16-bit one, 14 after a 64-bit one), in one run. Rounds alternate the
 * Deno and Node halves; the figures are over every timed batch of every
 * round: GB/s at the p75 time (and at the fastest batch).
 *
 *     deno run -A bench/mask_table.ts [--rounds 3]
 *
 * Installs bufferutil into bench/node/ with npm on first use.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { mask } from "../mask.ts";
import { byteLoop, maskNoCache, WasmMasker } from "./_mask_kernels.ts";
// @ts-types="./node/timing.d.mts"
import { timeBatches } from "./node/timing.mjs";

const NODE_DIR = new URL("./node/", import.meta.url).pathname;
const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
const KIB = 1024;
const CASES: { label: string; size: number; offset: number }[] = [
  { label: "16 B", size: 16, offset: 6 },
  { label: "125 B", size: 125, offset: 6 },
  { label: "1 KiB", size: KIB, offset: 8 },
  { label: "16 KiB", size: 16 * KIB, offset: 8 },
  { label: "64 KiB", size: 64 * KIB, offset: 14 },
  { label: "1 MiB", size: KIB * KIB, offset: 14 },
  { label: "16 MiB", size: 16 * KIB * KIB, offset: 14 },
];

let rounds = 3;
for (let i = 0; i < Deno.args.length; i++) {
  if (Deno.args[i] === "--rounds") rounds = Number(Deno.args[++i]);
  else throw new TypeError(`Unknown argument ${Deno.args[i]}`);
}

async function ensureBufferutil(): Promise<void> {
  try {
    Deno.statSync(`${NODE_DIR}node_modules/bufferutil/package.json`);
    return;
  } catch {
    // not installed yet
  }
  console.error("installing bufferutil into bench/node/ ...");
  const { success } = await new Deno.Command("npm", {
    args: ["install", "--no-audit", "--no-fund"],
    cwd: NODE_DIR,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error("npm install failed in bench/node/");
}

type Timings = Map<string, number[]>; // "label|kernel" -> ns per call of every batch

function record(into: Timings, label: string, kernel: string, ns: number[]): void {
  const key = `${label}|${kernel}`;
  into.set(key, [...(into.get(key) ?? []), ...ns]);
}

const wasm = new WasmMasker(16 * KIB * KIB + 64);

function runDeno(into: Timings): void {
  for (const { label, size, offset } of CASES) {
    const payload = new Uint8Array(offset + size).subarray(offset);
    const inWasm = wasm.view(offset, size);
    const kernels: [string, () => void][] = [
      ["byte loop", () => byteLoop(payload, KEY)],
      ["mask()", () => mask(payload, KEY)],
      ["mask(), no view cache", () => maskNoCache(payload, KEY)],
      ["wasm SIMD in wasm memory", () => wasm.mask(inWasm, KEY)],
      ["wasm SIMD, copy in+out", () => wasm.maskCopying(payload, KEY)],
    ];
    for (const [name, fn] of kernels) record(into, label, name, timeBatches(fn, size));
  }
}

async function runNode(into: Timings): Promise<void> {
  const cases = CASES.map(({ size, offset }) => ({ size, offset }));
  const { success, stdout } = await new Deno.Command("node", {
    args: [`${NODE_DIR}mask_bufferutil.mjs`, JSON.stringify(cases)],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error("The Node half failed");
  const results = JSON.parse(new TextDecoder().decode(stdout)) as {
    size: number;
    kernels: Record<string, number[]>;
  }[];
  for (const result of results) {
    const label = CASES.find((c) => c.size === result.size)!.label;
    for (const [kernel, ns] of Object.entries(result.kernels)) record(into, label, kernel, ns);
  }
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

await ensureBufferutil();
const timings: Timings = new Map();
for (let round = 0; round < rounds; round++) {
  if (round % 2 === 0) {
    runDeno(timings);
    await runNode(timings);
  } else {
    await runNode(timings);
    runDeno(timings);
  }
}

const KERNELS = [
  "byte loop",
  "mask()",
  "mask(), no view cache",
  "wasm SIMD in wasm memory",
  "wasm SIMD, copy in+out",
  "bufferutil (Node)",
  "byte loop (Node)",
];
const gbps = (size: number, ns: number): number => size / ns;
const fmt = (x: number): string => x >= 10 ? x.toFixed(1) : x.toFixed(2);

console.log(
  `# mask: GB/s at the p75 batch (fastest batch), ${rounds} rounds, Deno and Node alternating`,
);
console.log(
  `| size (offset) | ${
    KERNELS.join(" | ")
  } | mask()/bufferutil | mask()/byte loop | cache gain | wasm/bufferutil |`,
);
console.log(`|---|${KERNELS.map(() => "--:").join("|")}|--:|--:|--:|--:|`);
for (const { label, size, offset } of CASES) {
  const p75 = new Map<string, number>();
  const cells = KERNELS.map((kernel) => {
    const ns = timings.get(`${label}|${kernel}`) ?? [];
    const at75 = gbps(size, quantile(ns, 0.75));
    p75.set(kernel, at75);
    return `${fmt(at75)} (${fmt(gbps(size, Math.min(...ns)))})`;
  });
  const ours = p75.get("mask()")!;
  console.log(
    `| ${label} (${offset}) | ${cells.join(" | ")} | ${
      (ours / p75.get("bufferutil (Node)")!).toFixed(2)
    }x | ${(ours / p75.get("byte loop")!).toFixed(1)}x | ${
      (ours / p75.get("mask(), no view cache")!).toFixed(2)
    }x | ${(p75.get("wasm SIMD in wasm memory")! / p75.get("bufferutil (Node)")!).toFixed(2)}x |`,
  );
}
