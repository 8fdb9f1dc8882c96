// The Node half of bench/mask_table.ts: times the native `bufferutil`
// addon's `unmask()` (what `ws` uses when it is installed) and the same
// byte loop as the Deno half, with the same timing loop.
//
//   node bench/node/mask_bufferutil.mjs '[{"size":16,"offset":6}, ...]'
//
// Prints one JSON line: for each case and kernel, nanoseconds per call of
// every timed batch.

import { createRequire } from "node:module";
import { timeBatches } from "./timing.mjs";

const require = createRequire(import.meta.url);
const bufferutil = require("bufferutil");
// The JavaScript fallback would make this column meaningless.
if (bufferutil.unmask.toString().indexOf("[native code]") < 0) {
  throw new Error("bufferutil loaded its JavaScript fallback, not the native addon");
}

const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

function byteLoop(data, key) {
  for (let i = 0; i < data.length; i++) data[i] ^= key[i & 3];
}

const cases = JSON.parse(process.argv[2]);
const results = [];
for (const { size, offset } of cases) {
  const payload = Buffer.alloc(offset + size).subarray(offset);
  results.push({
    size,
    offset,
    kernels: {
      "bufferutil (Node)": timeBatches(() => bufferutil.unmask(payload, KEY), size),
      "byte loop (Node)": timeBatches(() => byteLoop(payload, KEY), size),
    },
  });
}
process.stdout.write(JSON.stringify(results) + "\n");
