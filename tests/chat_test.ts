// The chat demo, in-process: the page server, and two clients of this
// module talking through the chat server.
import assert from "node:assert/strict";
import { connect } from "../client.ts";
import type { MessageData, Socket } from "../socket.ts";
import { cleanName, cleanText, startChat } from "../examples/chat/main.ts";

type Received = { type: string; [key: string]: unknown };

// The next message of `type`, skipping others; bounded.
async function expectType(socket: Socket, type: string, ms = 3000): Promise<Received> {
  const deadline = Date.now() + ms;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`no ${type} message within ${ms} ms`);
    const data: MessageData = await socket.receive({ timeout: remaining });
    assert.equal(typeof data, "string", "the chat speaks text");
    const message = JSON.parse(data as string) as Received;
    if (message.type === type) return message;
  }
}

async function join(url: string, name: string): Promise<Socket> {
  const socket = await connect(url, { deflate: true });
  await socket.send(JSON.stringify({ type: "join", name }));
  return socket;
}

Deno.test("the chat relays messages, joins and leaves between two clients", async () => {
  await using chat = await startChat({ port: 0, wsPort: 0 });
  const alice = await join(chat.wsUrl, "alice");
  try {
    assert.deepEqual(alice.extensions, ["permessage-deflate"]);
    const welcome = await expectType(alice, "welcome");
    assert.equal(welcome["name"], "alice");
    assert.deepEqual(welcome["history"], []);
    assert.equal((await expectType(alice, "join"))["name"], "alice");
    assert.deepEqual((await expectType(alice, "members"))["names"], ["alice"]);

    const bob = await join(chat.wsUrl, "bob");
    try {
      await expectType(bob, "welcome");
      assert.equal((await expectType(alice, "join"))["name"], "bob");
      assert.deepEqual((await expectType(alice, "members"))["names"], ["alice", "bob"]);
      assert.deepEqual((await expectType(bob, "members"))["names"], ["alice", "bob"]);

      await alice.send(JSON.stringify({ type: "message", text: "hello bob" }));
      for (const socket of [alice, bob]) {
        const line = await expectType(socket, "message");
        assert.equal(line["name"], "alice");
        assert.equal(line["text"], "hello bob");
        assert.equal(typeof line["time"], "number");
      }
      await bob.send(JSON.stringify({ type: "message", text: "  hi alice\r\n" }));
      assert.equal((await expectType(alice, "message"))["text"], "hi alice");
    } finally {
      await bob.close();
    }
    assert.equal((await expectType(alice, "leave"))["name"], "bob");
    assert.deepEqual((await expectType(alice, "members"))["names"], ["alice"]);
  } finally {
    await alice.close();
  }
});

Deno.test("the chat numbers a taken name and sends history to a newcomer", async () => {
  await using chat = await startChat({ port: 0, wsPort: 0 });
  const first = await join(chat.wsUrl, "sam");
  let second: Socket | undefined;
  try {
    await expectType(first, "welcome");
    await first.send(JSON.stringify({ type: "message", text: "first!" }));
    await expectType(first, "message");
    second = await join(chat.wsUrl, "sam");
    const welcome = await expectType(second, "welcome");
    assert.equal(welcome["name"], "sam (2)");
    const history = welcome["history"] as Received[];
    assert.equal(history.at(-1)?.["text"], "first!");
  } finally {
    await Promise.all([first.close(), second?.close()]);
  }
});

Deno.test("the chat numbers a name that only looks taken, within the limit, whole characters", async () => {
  // "sam" with a zero-width space looked like "sam" and was let through;
  // numbering cut names by UTF-16 units (half an emoji) and went past 24.
  await using chat = await startChat({ port: 0, wsPort: 0 });
  const emoji = "a" + "😀".repeat(23);
  const sockets: Socket[] = [];
  const names: unknown[] = [];
  try {
    for (
      const wanted of ["sam", "sam\u200b", emoji, emoji, ...Array(10).fill("abcdefghijklmnopqrst")]
    ) {
      const socket = await join(chat.wsUrl, wanted);
      sockets.push(socket);
      names.push((await expectType(socket, "welcome"))["name"]);
    }
  } finally {
    await Promise.all(sockets.map((socket) => socket.close()));
  }
  assert.equal(names[1], "sam\u200b (2)"); // told apart as it looks
  assert.equal(names[3], "a" + "😀".repeat(19) + " (2)");
  assert.equal(names.at(-1), "abcdefghijklmnopqrs (10)");
  for (const name of names as string[]) {
    assert.ok([...name].length <= 24, name);
    assert.ok(name.isWellFormed(), name);
  }
});

Deno.test("the chat refuses bad input and closes on abuse", async () => {
  await using chat = await startChat({ port: 0, wsPort: 0 });

  // Talking before joining is a policy violation.
  const early = await connect(chat.wsUrl);
  await early.send(JSON.stringify({ type: "message", text: "hi" }));
  assert.equal((await early.closed).code, 1008);

  // Not JSON: unsupported data.
  const garbled = await connect(chat.wsUrl);
  await garbled.send("{nope");
  assert.equal((await garbled.closed).code, 1003);

  // Over the frame limit: 1009 before anything is parsed.
  const huge = await connect(chat.wsUrl);
  await huge.send(JSON.stringify({ type: "join", name: "x".repeat(100_000) }));
  assert.equal((await huge.closed).code, 1009);

  const socket = await join(chat.wsUrl, "\u202e\u0000 ");
  try {
    assert.match(String((await expectType(socket, "error"))["error"]), /name/);
    await socket.send(JSON.stringify({ type: "join", name: "tester" }));
    await expectType(socket, "welcome");
    await socket.send(JSON.stringify({ type: "message", text: "y".repeat(501) }));
    assert.match(String((await expectType(socket, "error"))["error"]), /500/);
    // A burst past the rate limit: some are dropped with an error.
    for (let i = 0; i < 12; i++) {
      socket.send(JSON.stringify({ type: "message", text: `spam ${i}` })).catch(() => {});
    }
    assert.match(String((await expectType(socket, "error"))["error"]), /Slow down/);
  } finally {
    await socket.close();
  }
});

Deno.test("the chat serves its page and config, and closes sockets with 1001 on shutdown", async () => {
  const chat = await startChat({ port: 0, wsPort: 0 });
  let shutDown = false;
  try {
    const page = await fetch(chat.pageUrl, { signal: AbortSignal.timeout(5000) });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    assert.match(await page.text(), /<title>sansio chat<\/title>/);
    for (const path of ["app.js", "style.css"]) {
      const asset = await fetch(new URL(path, chat.pageUrl), { signal: AbortSignal.timeout(5000) });
      assert.equal(asset.status, 200);
      await asset.body?.cancel();
    }
    const config = await fetch(new URL("config.json", chat.pageUrl));
    assert.deepEqual(await config.json(), { wsPort: Number(new URL(chat.wsUrl).port) });
    const missing = await fetch(new URL("nope", chat.pageUrl));
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    // A browser on another site may not join in the visitor's name.
    await assert.rejects(
      connect(chat.wsUrl, { headers: { Origin: "http://evil.example" } }),
      (error: Error & { status?: number }) => error.status === 403,
    );

    const socket = await join(chat.wsUrl, "last");
    await expectType(socket, "welcome");
    await chat.shutdown();
    shutDown = true;
    assert.equal((await socket.closed).code, 1001);
  } finally {
    if (!shutDown) await chat.shutdown();
  }
});

Deno.test("the chat cleans names and messages", () => {
  assert.equal(cleanName("  ada \t lovelace "), "ada lovelace");
  assert.equal(cleanName("\u202eevil"), "evil");
  assert.equal(cleanName(""), null);
  assert.equal(cleanName(42), null);
  assert.equal(cleanName("n".repeat(25)), null);
  // Nothing a reader could see: zero-width space, word joiner, Hangul filler.
  assert.equal(cleanName("\u200b\u2060\u3164"), null);
  assert.equal(cleanName("👩\u200d💻"), "👩\u200d💻"); // an emoji keeps its joiner
  assert.equal(cleanText("a\r\nb\n\n\n\nc\u0007"), "a\nb\n\nc");
  assert.equal(cleanText("   "), null);
  assert.equal(cleanText("é".repeat(500)), "é".repeat(500));
});

Deno.test("the chat demo refuses a port with more after it, and says so", async () => {
  // "--port=0=9" was split at its first "=" and the rest dropped: port 0.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../examples/chat/main.ts", import.meta.url).pathname,
      "--port=0=9",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 2);
  assert.match(new TextDecoder().decode(output.stderr), /--port needs a port number/);
});
