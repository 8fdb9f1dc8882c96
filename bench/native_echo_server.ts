/**
 * The peer of `examples/echo_server.ts` in bench/echo.ts: an echo server on
 * `Deno.serve` + `Deno.upgradeWebSocket`, Deno's native (Rust) WebSocket.
 *
 *     deno run -A bench/native_echo_server.ts --port N [--hostname H]
 *
 * Prints `listening on ws://H:N/` once ready and exits on SIGTERM or SIGINT.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { serverAddress } from "./_server_args.ts";

const { port, hostname } = serverAddress();

const server = Deno.serve({
  hostname,
  port,
  onListen: ({ hostname, port }) => console.log(`listening on ws://${hostname}:${port}/`),
}, (request) => {
  const { socket, response } = Deno.upgradeWebSocket(request);
  // Binary as ArrayBuffer: the default, Blob, would add a copy and a
  // promise per message that our server does not pay.
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => socket.send(event.data);
  return response;
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    server.shutdown().then(() => Deno.exit(0));
    // Open WebSockets keep shutdown() waiting; do not wait for them.
    setTimeout(() => Deno.exit(0), 200);
  });
}
