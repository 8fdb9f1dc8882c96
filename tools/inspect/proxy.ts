/**
 * The inspector's live mode: a TCP relay that passes every byte between a
 * WebSocket client and server unchanged and explains both directions as
 * they flow.
 *
 * @module
 */

import { Explainer, type ExplainOptions, newSession } from "./explain.ts";
import type { InspectRecord } from "./records.ts";

/** The direction of a relayed chunk. */
export type Direction = "client→server" | "server→client";

/** Options of {@linkcode startProxy}. */
export interface ProxyOptions {
  /** The port to listen on (0 picks a free one). */
  listenPort: number;
  /** The address to listen on; `127.0.0.1` unless given. */
  listenHostname?: string;
  /** Where to relay to. */
  targetHostname: string;
  /** Where to relay to. */
  targetPort: number;
  /** How to explain the frames (the role and session are set per direction). */
  explain?: Omit<ExplainOptions, "role" | "session">;
  /** Called with each record, in the order the bytes flowed. */
  onRecord(connection: number, direction: Direction, record: InspectRecord): void;
  /** Called with each chunk relayed, before it is written on. */
  onChunk?(connection: number, direction: Direction, bytes: Uint8Array): void;
  /** Called when a relayed connection fails (target unreachable, reset). */
  onError?(connection: number, error: unknown): void;
}

/** A running proxy. */
export interface Proxy {
  /** The port it listens on. */
  readonly port: number;
  /**
   * Stop listening, end every relayed connection and wait for them.
   *
   * @returns When everything is closed.
   */
  close(): Promise<void>;
}

/**
 * Listen on `listenHostname:listenPort` and relay each connection to the
 * target, explaining both directions. The client→server explainer starts
 * with the request, the server→client one with the response; they share a
 * session, so the response is checked against the request's key.
 *
 * @param options Where to listen and relay, and what to do with records.
 * @returns The running proxy.
 *
 * @example Relaying to a local server
 * ```ts ignore
 * import { startProxy } from "./proxy.ts";
 * const proxy = startProxy({
 *   listenPort: 0,
 *   targetHostname: "127.0.0.1",
 *   targetPort: 8080,
 *   onRecord: (id, direction, record) => console.log(id, direction, record.kind),
 * });
 * await proxy.close();
 * ```
 */
export function startProxy(options: ProxyOptions): Proxy {
  const listener = Deno.listen({
    hostname: options.listenHostname ?? "127.0.0.1",
    port: options.listenPort,
  });
  const relays = new Set<Relay>();
  const running = new Set<Promise<void>>();
  let count = 0;

  const accepting = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return; // the listener was closed
      }
      const relay = new Relay(++count, client, options);
      relays.add(relay);
      const done = relay.run().finally(() => {
        relays.delete(relay);
        running.delete(done);
      });
      running.add(done);
    }
  })();

  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await accepting;
      for (const relay of relays) relay.abort();
      await Promise.all(running);
    },
  };
}

// One relayed connection: two pumps and the explainers of both directions.
class Relay {
  readonly #id: number;
  readonly #client: Deno.Conn;
  readonly #options: ProxyOptions;
  #server: Deno.Conn | null = null;
  #closed = false;

  constructor(id: number, client: Deno.Conn, options: ProxyOptions) {
    this.#id = id;
    this.#client = client;
    this.#options = options;
  }

  async run(): Promise<void> {
    try {
      this.#server = await Deno.connect({
        hostname: this.#options.targetHostname,
        port: this.#options.targetPort,
      });
    } catch (error) {
      this.#options.onError?.(this.#id, error);
      this.abort();
      return;
    }
    if (this.#closed) {
      this.#server.close();
      return;
    }
    const session = newSession();
    const explain = this.#options.explain ?? {};
    await Promise.all([
      this.#pump(
        this.#client,
        this.#server,
        "client→server",
        new Explainer({ ...explain, role: "client", session }),
      ),
      this.#pump(
        this.#server,
        this.#client,
        "server→client",
        new Explainer({ ...explain, role: "server", session }),
      ),
    ]);
    this.abort();
  }

  // Closes both sockets; a pump blocked in read() then returns.
  abort(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const conn of [this.#client, this.#server]) {
      try {
        conn?.close();
      } catch {
        // Already closed.
      }
    }
  }

  async #pump(from: Deno.Conn, to: Deno.Conn, direction: Direction, explainer: Explainer) {
    const buffer = new Uint8Array(64 * 1024);
    const report = (records: InspectRecord[]) => {
      for (const record of records) this.#options.onRecord(this.#id, direction, record);
    };
    // A failure to explain must never stop the relaying: it ends the
    // explaining of this direction only.
    let explaining = true;
    const explain = (step: () => InspectRecord[]): InspectRecord[] => {
      if (!explaining) return [];
      try {
        return step();
      } catch (error) {
        explaining = false;
        this.#options.onError?.(this.#id, error);
        return [];
      }
    };
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        this.#options.onChunk?.(this.#id, direction, chunk);
        // Explained before it is written on: the peer's answer cannot
        // overtake it, so the other direction sees the response first.
        const records = explain(() => explainer.push(chunk));
        await writeAll(to, chunk);
        report(records);
      }
      report(explain(() => explainer.end()));
      // Pass the end of stream on, keeping the other direction open.
      await to.closeWrite().catch(() => {});
    } catch (error) {
      if (!this.#closed) {
        this.#options.onError?.(this.#id, error);
        report(explain(() => explainer.end()));
      }
      this.abort();
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}
