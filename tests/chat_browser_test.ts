// The chat demo in a real browser: headless Chromium opens the page, types
// a name and a message, and a second participant (a client of this module)
// answers. The browser is driven over the Chrome DevTools Protocol, on a
// WebSocket opened with this module's own `connect()`.
import assert from "node:assert/strict";
import { connect } from "../client.ts";
import type { Socket } from "../socket.ts";
import { startChat } from "../examples/chat/main.ts";
import { delay, withTimeout } from "./_drivers.ts";

const CHROMIUM = "/usr/bin/chromium";
// Every wait of the test comes out of this budget.
const OVERALL = 30_000;

function chromiumPresent(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

const present = chromiumPresent();
const inCi = Deno.env.get("CI") === "true";
if (!present && !inCi) {
  // deno-lint-ignore no-console
  console.warn(
    `\n!!! ${CHROMIUM} is missing: the chat browser test is SKIPPED. ` +
      "Install Chromium (apt-get install chromium) to run it; in CI (CI=true) it fails instead.\n",
  );
}

class Deadline {
  readonly #end = Date.now() + OVERALL;

  left(what: string): number {
    const ms = this.#end - Date.now();
    if (ms <= 0) throw new Error(`Out of time (${OVERALL} ms) while waiting for ${what}`);
    return ms;
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface CdpResponse {
  id?: number;
  method?: string;
  result?: { [key: string]: Json };
  error?: { message: string };
  params?: { [key: string]: Json };
}

/** A minimal Chrome DevTools Protocol client on one target. */
class Cdp {
  readonly #socket: Socket;
  readonly #pending = new Map<
    number,
    { resolve: (result: { [key: string]: Json }) => void; reject: (error: Error) => void }
  >();
  readonly #reader: Promise<void>;
  readonly log: string[] = [];
  #nextId = 1;

  constructor(socket: Socket) {
    this.#socket = socket;
    this.#reader = this.#read();
  }

  async #read(): Promise<void> {
    for await (const data of this.#socket) {
      if (typeof data !== "string") continue;
      const message = JSON.parse(data) as CdpResponse;
      if (message.id !== undefined) {
        const waiter = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error !== undefined) waiter?.reject(new Error(message.error.message));
        else waiter?.resolve(message.result ?? {});
      } else if (message.method === "Runtime.consoleAPICalled") {
        this.log.push(`console: ${JSON.stringify(message.params?.["args"])}`);
      } else if (message.method === "Runtime.exceptionThrown") {
        this.log.push(`exception: ${JSON.stringify(message.params?.["exceptionDetails"])}`);
      }
    }
    for (const waiter of this.#pending.values()) waiter.reject(new Error("CDP connection closed"));
    this.#pending.clear();
  }

  send(method: string, params: { [key: string]: Json } = {}): Promise<{ [key: string]: Json }> {
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<{ [key: string]: Json }>();
    this.#pending.set(id, { resolve, reject });
    this.#socket.send(JSON.stringify({ id, method, params })).catch(reject);
    return promise;
  }

  async evaluate(expression: string, deadline: Deadline): Promise<Json> {
    const reply = await withTimeout(
      this.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }),
      deadline.left(expression),
      `evaluate ${expression}`,
    );
    if (reply["exceptionDetails"] !== undefined) {
      throw new Error(`${expression} threw: ${JSON.stringify(reply["exceptionDetails"])}`);
    }
    const result = reply["result"] as { value?: Json } | undefined;
    return result?.value ?? null;
  }

  // Poll until `expression` is truthy in the page. While the page is still
  // navigating the expression may throw (no such element yet, a context
  // torn down); that counts as "not yet".
  async waitFor(expression: string, deadline: Deadline): Promise<Json> {
    let last = "";
    for (;;) {
      try {
        const value = await this.evaluate(expression, deadline);
        if (value !== null && value !== false && value !== "" && value !== 0) return value;
        last = `last value ${JSON.stringify(value)}`;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      deadline.left(`${expression}\n${last}\npage log:\n${this.log.join("\n")}`);
      await delay(100);
    }
  }

  // Focus a field, type into it as a user would, and press Enter.
  async type(selector: string, text: string, deadline: Deadline): Promise<void> {
    await this.evaluate(`document.querySelector(${JSON.stringify(selector)}).focus()`, deadline);
    await this.send("Input.insertText", { text });
    const enter = { key: "Enter", code: "Enter", windowsVirtualKeyCode: 13, text: "\r" };
    await this.send("Input.dispatchKeyEvent", { type: "keyDown", ...enter });
    await this.send("Input.dispatchKeyEvent", { type: "keyUp", key: "Enter", code: "Enter" });
  }

  async close(): Promise<void> {
    await this.#socket.close().catch(() => {});
    await this.#reader.catch(() => {});
  }
}

async function readDevToolsPort(profile: string, deadline: Deadline): Promise<number> {
  // Chromium writes the port it picked (for --remote-debugging-port=0)
  // and the browser target's path, one per line, once it listens.
  for (;;) {
    try {
      const [port] = (await Deno.readTextFile(`${profile}/DevToolsActivePort`)).split("\n");
      if (port !== undefined && /^\d+$/.test(port)) return Number(port);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    deadline.left("Chromium's DevToolsActivePort file");
    await delay(100);
  }
}

async function pageTarget(port: number, pageUrl: string, deadline: Deadline): Promise<string> {
  for (;;) {
    const response = await fetch(`http://127.0.0.1:${port}/json/list`, {
      signal: AbortSignal.timeout(deadline.left("the DevTools target list")),
    });
    const targets = await response.json() as {
      type: string;
      url: string;
      webSocketDebuggerUrl?: string;
    }[];
    const page = targets.find((t) => t.type === "page" && t.url.startsWith(pageUrl));
    if (page?.webSocketDebuggerUrl !== undefined) return page.webSocketDebuggerUrl;
    await delay(100);
  }
}

async function nextOfType(socket: Socket, type: string, deadline: Deadline): Promise<Json> {
  for (;;) {
    const data = await socket.receive({ timeout: deadline.left(`a ${type} message`) });
    const message = JSON.parse(data as string) as { [key: string]: Json };
    if (message["type"] === type) return message;
  }
}

Deno.test({
  name: "the chat page in headless Chromium talks with a second participant",
  ignore: !present && !inCi,
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    if (!present) throw new Error(`${CHROMIUM} is required in CI (CI=true) but is missing`);
    const deadline = new Deadline();
    const profile = await Deno.makeTempDir({ prefix: "chat_browser_test_" });
    let chat = await startChat({ port: 0, wsPort: 0 });
    let browser: Deno.ChildProcess | undefined;
    let cdp: Cdp | undefined;
    let bob: Socket | undefined;
    try {
      browser = new Deno.Command(CHROMIUM, {
        args: [
          "--headless=new",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--disable-dev-shm-usage",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          `--user-data-dir=${profile}`,
          "--remote-debugging-port=0",
          chat.pageUrl,
        ],
        // --disable-dev-shm-usage puts shared memory in the temporary
        // directory, one folder per run that Chromium leaves behind: in the
        // profile, it goes with the profile.
        env: { TMPDIR: profile },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();

      const port = await readDevToolsPort(profile, deadline);
      const target = await pageTarget(port, chat.pageUrl, deadline);
      // Dogfooding: the DevTools socket is a client of this module.
      cdp = new Cdp(
        await connect(target, { handshakeTimeout: deadline.left("the DevTools socket") }),
      );
      await cdp.send("Runtime.enable");

      // A fresh profile has no stored name: the page asks for one.
      await cdp.waitFor(
        `location.href === ${JSON.stringify(chat.pageUrl)} && document.readyState === "complete" &&
          document.querySelector("#join-dialog").open`,
        deadline,
      );
      await cdp.type("#name", "Ada", deadline);
      await cdp.waitFor(
        `document.querySelector("#status").dataset.state === "open" &&
          document.querySelector("#me").textContent === "Ada"`,
        deadline,
      );

      // Chromium took the chat's small windows (RFC 7692 §7.1.2).
      assert.equal(
        await cdp.evaluate(`document.querySelector("#status").dataset.extensions`, deadline),
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
      );

      bob = await connect(chat.wsUrl, { deflate: true });
      await bob.send(JSON.stringify({ type: "join", name: "Bob" }));
      await nextOfType(bob, "welcome", deadline);
      await cdp.waitFor(`document.querySelector("#members").textContent.includes("Bob")`, deadline);

      await cdp.type("#message", "Hello from the browser", deadline);
      const fromPage = await nextOfType(bob, "message", deadline) as { [key: string]: Json };
      assert.equal(fromPage["name"], "Ada");
      assert.equal(fromPage["text"], "Hello from the browser");

      await bob.send(JSON.stringify({ type: "message", text: "Hello from Deno" }));
      await cdp.waitFor(
        `document.querySelector("#log").textContent.includes("Hello from Deno")`,
        deadline,
      );
      const log = String(
        await cdp.evaluate(`document.querySelector("#log").textContent`, deadline),
      );
      assert.ok(log.includes("Hello from the browser"), log);
      assert.ok(log.includes("Hello from Deno"), log);
      assert.ok(log.includes("You joined as Ada"), log);
      assert.ok(log.includes("Bob joined"), log);
      const members = String(
        await cdp.evaluate(`document.querySelector("#members").textContent`, deadline),
      );
      assert.ok(members.includes("Ada") && members.includes("Bob"), members);
      // The input was cleared once sent.
      assert.equal(await cdp.evaluate(`document.querySelector("#message").value`, deadline), "");

      await bob.close();
      await cdp.waitFor(
        `document.querySelector("#log").textContent.includes("Bob left")`,
        deadline,
      );

      // A restart on the same page port and another socket port (as with
      // --ws-port 0): the page learns the port from /config.json and joins
      // again. Its security policy named the first port, and it never did.
      await chat.shutdown();
      chat = await startChat({ port: Number(new URL(chat.pageUrl).port), wsPort: 0 });
      await cdp.waitFor(
        `document.querySelector("#status").dataset.state === "open" &&
          document.querySelector("#members").textContent.includes("Ada")`,
        deadline,
      );
    } finally {
      await bob?.close().catch(() => {});
      await cdp?.close();
      if (browser !== undefined) await stopBrowser(browser);
      await chat.shutdown();
      await removeProfile(profile);
    }
  },
});

// SIGTERM lets Chromium take its helper processes down with it; SIGKILL if
// it does not go within a few seconds.
async function stopBrowser(browser: Deno.ChildProcess): Promise<void> {
  try {
    browser.kill("SIGTERM");
  } catch {
    // already gone
  }
  try {
    await withTimeout(browser.status, 5000, "Chromium's exit");
  } catch {
    try {
      browser.kill("SIGKILL");
    } catch {
      // already gone
    }
    await browser.status;
  }
}

// Chromium's helper processes may outlive the browser process by a moment
// and still write into the profile; retry until the directory stays gone.
async function removeProfile(profile: string): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await Deno.remove(profile, { recursive: true });
      await Deno.stat(profile);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      if (attempt >= 30) throw error;
    }
    if (attempt >= 30) throw new Error(`${profile} keeps coming back`);
    await delay(100);
  }
}
