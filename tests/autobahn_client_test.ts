// The Autobahn client example, run as its fixed command line against a fake
// fuzzing server that speaks the TestSuite's URL protocol.
import assert from "node:assert/strict";
import { CASES, startFakeFuzzingServer } from "./_fake_fuzzingserver.ts";

const EXAMPLE = new URL("../examples/autobahn_client.ts", import.meta.url);
const RUN_TIMEOUT = 60_000;

Deno.test("the Autobahn client example passes every case of a fake fuzzing server", async () => {
  await using fuzzer = startFakeFuzzingServer();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      EXAMPLE.pathname,
      "--url",
      `ws://127.0.0.1:${fuzzer.port}`,
      "--agent",
      "test",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT);
  let output: Deno.CommandOutput;
  try {
    output = await child.output();
  } finally {
    clearTimeout(timer);
  }
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  const context = `stdout:\n${stdout}\nstderr:\n${stderr}`;

  assert.equal(
    output.code,
    0,
    `exit code ${output.code} (killed after ${RUN_TIMEOUT} ms?)\n${context}`,
  );
  const failed = [...fuzzer.results.values()].filter((result) => !result.passed);
  assert.deepEqual(failed, [], context);
  assert.equal(fuzzer.results.size, CASES.length, `not every case ran\n${context}`);
  assert.deepEqual(
    [...fuzzer.results.keys()].sort((a, b) => a - b),
    CASES.map((_, i) => i + 1),
  );
  assert.deepEqual(fuzzer.reports, ["test"]);

  // One line per case and a summary; the protocol-error cases end with the
  // client's 1002/1007 and the garbage handshake is logged, not fatal.
  for (let i = 1; i <= CASES.length; i++) {
    assert.match(stdout, new RegExp(`^case ${i}/${CASES.length}: `, "m"), context);
  }
  const line = (id: string): string => {
    const index = CASES.findIndex((c) => c.id === id) + 1;
    return stdout.split("\n").find((l) => l.startsWith(`case ${index}/`)) ?? "";
  };
  assert.match(line("1.1.1"), /closed 1000/);
  assert.match(line("4.1.1"), /closed 1002/);
  assert.match(line("6.3.1"), /closed 1007/);
  assert.match(line("0.2.1"), /closed 1007/);
  assert.match(line("7.7.10"), /closed 3000/);
  assert.match(line("0.1.1"), /failed: /);
  assert.match(stdout, new RegExp(`^ran ${CASES.length} cases`, "m"));
});

Deno.test("the Autobahn client example exits 2 on bad arguments", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", EXAMPLE.pathname, "--url", "http://x"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 2);
  assert.match(new TextDecoder().decode(output.stderr), /usage: /);
});
