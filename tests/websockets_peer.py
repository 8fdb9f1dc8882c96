"""The Python `websockets` client of tests/deflate_interop_test.ts.

Usage: websockets_peer.py URI CONFIG, run with /usr/bin/python3 (Debian's
python3-websockets). CONFIG is a JSON object: {} for websockets' default
permessage-deflate offer, or the keyword arguments of
ClientPerMessageDeflateFactory (client_max_window_bits, ...).

Stdin holds the messages, each as one type byte (0 text, 1 binary), a
4-byte big-endian length and the payload (UTF-8 for text). The client sends
each message, waits for the echo and compares it, type and content, then
closes with 1000 and prints one JSON line:
  { ok, version, extensions: [{ name, ...agreed parameters }], results:
    [{ index, ok, error? }], close_code, error? }.
"""

import asyncio
import json
import struct
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

TIMEOUT = 15


def read_messages(data):
    messages = []
    at = 0
    while at < len(data):
        kind = data[at]
        (length,) = struct.unpack(">I", data[at + 1 : at + 5])
        payload = data[at + 5 : at + 5 + length]
        if len(payload) != length:
            raise ValueError("truncated message on stdin")
        at += 5 + length
        messages.append(payload.decode("utf-8") if kind == 0 else bytes(payload))
    return messages


def describe(extension):
    out = {"name": getattr(extension, "name", type(extension).__name__)}
    for attr in (
        "remote_no_context_takeover",
        "local_no_context_takeover",
        "remote_max_window_bits",
        "local_max_window_bits",
    ):
        if hasattr(extension, attr):
            out[attr] = getattr(extension, attr)
    return out


def negotiated(connection):
    extensions = getattr(connection, "extensions", None)
    if extensions is None:  # the newer asyncio implementation keeps them on .protocol
        extensions = connection.protocol.extensions
    return [describe(extension) for extension in extensions]


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


async def run(uri, config, messages, result):
    kwargs = {"compression": "deflate", "max_size": None, "open_timeout": TIMEOUT}
    if config:
        kwargs["extensions"] = [ClientPerMessageDeflateFactory(**config)]
    async with websockets.connect(uri, **kwargs) as connection:
        result["extensions"] = negotiated(connection)
        for index, message in enumerate(messages):
            await connection.send(message)
            echo = await asyncio.wait_for(connection.recv(), TIMEOUT)
            entry = {"index": index, "ok": type(echo) is type(message) and echo == message}
            if not entry["ok"]:
                entry["error"] = (
                    f"sent {type(message).__name__} of length {len(message)}, got "
                    f"{type(echo).__name__} of length {len(echo)}, first difference at "
                    f"{first_difference(echo, message)}"
                )
            result["results"].append(entry)
        await connection.close(1000, "python done")
        result["close_code"] = connection.close_code
    result["ok"] = all(entry["ok"] for entry in result["results"]) and len(
        result["results"]
    ) == len(messages)


def main():
    uri = sys.argv[1]
    config = json.loads(sys.argv[2])
    messages = read_messages(sys.stdin.buffer.read())
    result = {"ok": False, "version": websockets.__version__, "results": []}
    try:
        asyncio.run(asyncio.wait_for(run(uri, config, messages, result), 4 * TIMEOUT))
    except Exception as error:  # reported to the test, which fails on it
        result["ok"] = False
        result["error"] = f"{type(error).__name__}: {error!r}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
