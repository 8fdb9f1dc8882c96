/**
 * The command line of the peer servers in bench/echo.ts:
 * `--port N [--hostname H]`.
 *
 * @module
 */

/** Where a bench server listens. */
export interface ServerAddress {
  port: number;
  hostname: string;
}

/**
 * Read `--port N [--hostname H]`; 127.0.0.1 unless given.
 *
 * @param args The arguments, `Deno.args` by default.
 * @returns The address to listen on.
 * @throws {TypeError} On any other argument.
 */
export function serverAddress(args: readonly string[] = Deno.args): ServerAddress {
  const address: ServerAddress = { port: 0, hostname: "127.0.0.1" };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--port") address.port = Number(args[++i]);
    else if (arg === "--hostname") address.hostname = args[++i] ?? address.hostname;
    else throw new TypeError(`Unknown argument ${arg}`);
  }
  return address;
}
