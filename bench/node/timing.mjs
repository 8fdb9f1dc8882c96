// deno-lint-ignore-file explicit-module-boundary-types -- plain JavaScript for Node; the types are in timing.d.mts
// The timing loop that both halves of bench/mask_table.ts use (the Deno half
// imports this file too), so that neither side is timed differently.

/** How long each kernel runs untimed before its batches. */
const WARM_UP_MS = 50;

/** Calls per batch so that a batch takes about `batchMs`, after a warm-up. */
function calibrate(fn, batchMs) {
  let calls = 1;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) fn();
    const elapsed = performance.now() - start;
    if (elapsed >= batchMs / 4 || calls >= 1 << 26) {
      return Math.max(1, Math.round((calls * batchMs) / Math.max(elapsed, 1e-3)));
    }
    calls *= 4;
  }
}

/**
 * Time `fn` in `batches` batches of about `batchMs` each.
 *
 * @param {() => void} fn The call to time.
 * @param {number} bytes Bytes per call (larger payloads get fewer batches).
 * @returns {number[]} Nanoseconds per call, one entry per batch.
 */
export function timeBatches(fn, bytes, batches = bytes >= 1 << 24 ? 8 : 15, batchMs = 2) {
  // Without a warm-up the first round measured the interpreter and the
  // baseline compilers: mask() at 125 B ran at 0.04 GB/s for a whole round
  // (BigInt XORs allocate until the optimizing compiler takes over), and
  // that round alone decided the p75.
  const warmUntil = performance.now() + WARM_UP_MS;
  while (performance.now() < warmUntil) fn();
  const calls = calibrate(fn, batchMs);
  const out = [];
  for (let b = 0; b < batches; b++) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) fn();
    out.push(((performance.now() - start) * 1e6) / calls);
  }
  return out;
}
