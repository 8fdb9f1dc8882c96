// The long-run fuzzer: the targets of tests/_fuzz.ts for as long as asked,
// each in a child process that is killed and restarted past a hung case.
//
//   deno run -A tools/fuzz.ts [--seconds N] [--seed S] [--target T]... [--count C]
//                             [--hang-ms MS] [--verbose]
//
// --seconds  total time, shared between the targets (default 60)
// --seed     the first seed (default: random, printed); case i uses seed S + i
// --target   run only this target (repeatable); the default is every target
// --count    cases per target (stops earlier than --seconds allows)
// --verbose  print each failure in full, with its input in hex
//
// Reproduce a failure with: deno run -A tools/fuzz.ts --target T --seed S --count 1 --verbose
import { parseArgs } from "node:util";
import { type Failure, runFuzz, TARGETS } from "../tests/_fuzz.ts";

const USAGE = "usage: deno run -A tools/fuzz.ts [--seconds N] [--seed S] [--target T]... " +
  "[--count C] [--hang-ms MS] [--verbose]";

interface Options {
  targets: string[];
  seconds: number;
  firstSeed: number;
  count: number | undefined;
  hangMs: number;
  verbose: boolean;
}

// A mistyped option ends with what was wrong and the usage, not a stack trace
// or a run of zero cases that reports no failures.
function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string", default: "60" },
      seed: { type: "string" },
      target: { type: "string", multiple: true },
      count: { type: "string" },
      "hang-ms": { type: "string", default: "10000" },
      verbose: { type: "boolean", default: false },
    },
  });
  const targets = values.target ?? Object.keys(TARGETS);
  for (const target of targets) {
    if (!(target in TARGETS)) {
      throw new RangeError(
        `Unknown target ${target}; the targets: ${Object.keys(TARGETS).join(", ")}`,
      );
    }
  }
  const whole = (name: string, text: string, least: number): number => {
    const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value) || value < least) {
      throw new RangeError(`--${name} takes a whole number from ${least}, not ${text}`);
    }
    return value;
  };
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new RangeError(`--seconds takes a positive number, not ${values.seconds}`);
  }
  return {
    targets,
    seconds,
    firstSeed: values.seed === undefined
      ? Math.floor(Math.random() * 2 ** 30)
      : whole("seed", values.seed, 0),
    count: values.count === undefined ? undefined : whole("count", values.count, 1),
    hangMs: whole("hang-ms", values["hang-ms"], 1),
    verbose: values.verbose,
  };
}

let options: Options;
try {
  options = parseOptions(Deno.args);
} catch (error) {
  Deno.stderr.writeSync(new TextEncoder().encode(`${(error as Error).message}\n${USAGE}\n`));
  Deno.exit(2);
}
const { targets, seconds, firstSeed, count, hangMs } = options;

const log = (text: string) => Deno.stdout.writeSync(new TextEncoder().encode(`${text}\n`));
const perTarget = seconds / targets.length;
log(
  `fuzzing ${targets.join(", ")} for ${seconds} s from seed ${firstSeed}` +
    (count === undefined ? "" : `, at most ${count} cases per target`),
);

const failures: Failure[] = [];
const started = Date.now();
const result = await runFuzz({
  targets,
  firstSeed,
  seconds: perTarget,
  ...(count === undefined ? {} : { count }),
  hangMs,
  onFailure(failure) {
    failures.push(failure);
    const head = failure.message.split("\n")[0];
    log(`FAIL ${failure.target} seed ${failure.seed}: ${head}`);
    if (options.verbose) log(`${failure.message}\n  input ${failure.input || "(none)"}`);
  },
});

let total = 0;
for (const [target, n] of Object.entries(result.iterations)) {
  total += n;
  log(`  ${target}: ${n} cases`);
}
log(
  `${total} iterations in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
    `${failures.length} failures`,
);
for (const failure of failures) {
  log(
    `  reproduce: deno run -A tools/fuzz.ts --target ${failure.target} --seed ${failure.seed}` +
      ` --count 1 --verbose`,
  );
}
Deno.exit(failures.length === 0 ? 0 : 1);
