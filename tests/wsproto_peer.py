"""The wsproto side of tests/wsproto_diff_test.ts.

Reads one JSON case per line on stdin, feeds its byte stream to wsproto
(1.2) in the given chunks, and writes one JSON line per case with the events
wsproto yielded after each chunk, the bytes it would send in answer (parsed,
unmasked) and its state. Run with /usr/bin/python3, where Debian's
python3-wsproto lives. The protocol is described in the test file.
"""

import base64
import hashlib
import json
import sys

from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PLACEHOLDER = b"@@@@@@@@@@ACCEPT@@@@@@@@@@@@"  # 28 bytes, as long as a real token


def parse_frames(data):
    """Split answer bytes into frames: fin, rsv, opcode, masked, unmasked payload."""
    frames = []
    at = 0
    while at < len(data):
        b0, b1 = data[at], data[at + 1]
        length = b1 & 0x7F
        at += 2
        if length == 126:
            length = int.from_bytes(data[at : at + 2], "big")
            at += 2
        elif length == 127:
            length = int.from_bytes(data[at : at + 8], "big")
            at += 8
        key = None
        if b1 & 0x80:
            key = data[at : at + 4]
            at += 4
        payload = bytearray(data[at : at + length])
        at += length
        if key is not None:
            for i in range(len(payload)):
                payload[i] ^= key[i % 4]
        frames.append(
            {
                "fin": bool(b0 & 0x80),
                "rsv": (b0 >> 4) & 7,
                "opcode": b0 & 0x0F,
                "masked": key is not None,
                "payload": bytes(payload).hex(),
            }
        )
    return frames


def parse_http(data):
    """The parts of an HTTP response the test compares."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return {
        "status": status,
        "accept": headers.get("sec-websocket-accept"),
        "upgrade": (headers.get("upgrade") or "").lower(),
        "connection": (headers.get("connection") or "").lower(),
        "protocol": headers.get("sec-websocket-protocol"),
    }


def plain(event, conn_state_open_after):
    if isinstance(event, TextMessage):
        return {
            "t": "text",
            "data": event.data,
            "ff": event.frame_finished,
            "mf": event.message_finished,
        }
    if isinstance(event, BytesMessage):
        return {
            "t": "bytes",
            "data": bytes(event.data).hex(),
            "ff": event.frame_finished,
            "mf": event.message_finished,
        }
    if isinstance(event, Ping):
        return {"t": "ping", "payload": bytes(event.payload).hex()}
    if isinstance(event, Pong):
        return {"t": "pong", "payload": bytes(event.payload).hex()}
    if isinstance(event, CloseConnection):
        # wsproto leaves the state OPEN (or LOCAL_CLOSING) after a ParseFailed
        # close, and moves it on after a close frame: that tells them apart.
        return {
            "t": "close",
            "code": int(event.code),
            "reason": event.reason or "",
            "error": conn_state_open_after,
        }
    if isinstance(event, Request):
        return {
            "t": "request",
            "host": event.host,
            "target": event.target,
            "subprotocols": list(event.subprotocols),
            "extensions": [str(e) for e in event.extensions],
        }
    if isinstance(event, AcceptConnection):
        return {"t": "accept", "subprotocol": event.subprotocol}
    if isinstance(event, RejectConnection):
        return {"t": "reject", "status": event.status_code, "hasBody": event.has_body}
    if isinstance(event, RejectData):
        return {"t": "rejectdata", "data": bytes(event.data).hex(), "finished": event.body_finished}
    return {"t": type(event).__name__}


def run_case(case):
    role = ConnectionType.SERVER if case["role"] == "server" else ConnectionType.CLIENT
    stream = bytes.fromhex(case["stream"])
    answer = case.get("answer", True)
    handshake = case["mode"] == "handshake"
    if handshake:
        conn = WSConnection(role)
        if role is ConnectionType.CLIENT:
            req = case["request"]
            sent = conn.send(
                Request(host=req["host"], target=req["target"], subprotocols=req["subprotocols"])
            )
            key = None
            for line in sent.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            token = base64.b64encode(hashlib.sha1(key + GUID).digest())
            stream = stream.replace(PLACEHOLDER, token)
    else:
        conn = Connection(role)

    chunks = []
    at = 0
    for size in case["cuts"]:
        chunks.append(stream[at : at + size])
        at += size
    assert at == len(stream), "cuts must cover the stream"

    out = {"id": case["id"], "chunks": [], "eof": None}
    stopped = False
    failed = False

    def drain(events):
        nonlocal stopped
        for event in conn.events():
            state_open = conn.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
            item = plain(event, state_open)
            if isinstance(event, CloseConnection) and not state_open:
                item["error"] = False
            events.append(item)
            if not answer:
                continue
            if isinstance(event, Ping) and conn.state is ConnectionState.OPEN:
                item["answer"] = parse_frames(conn.send(event.response()))
            elif isinstance(event, CloseConnection) and event.code != 1006 and conn.state in (
                ConnectionState.OPEN,
                ConnectionState.REMOTE_CLOSING,
            ):
                item["answer"] = parse_frames(
                    conn.send(CloseConnection(code=event.code, reason=event.reason))
                )
                stopped = True
            elif isinstance(event, Request):
                item["answer"] = parse_http(
                    conn.send(AcceptConnection(subprotocol=case.get("subprotocol")))
                )
                if not case.get("rawTrailing", False):
                    # wsproto 1.2 drops bytes pipelined after the request (its
                    # Connection is made without h11's trailing data); hand them
                    # over, as the client's answer would have come after them.
                    trailing = conn.handshake._h11_connection.trailing_data[0]
                    if trailing:
                        conn.connection.receive_data(trailing)

    for chunk in chunks:
        if stopped:
            break
        events = []
        try:
            conn.receive_data(chunk)
            drain(events)
        except RemoteProtocolError as exc:
            drain_safe(events, drain)
            hint = exc.event_hint
            events.append(
                {
                    "t": "remote-error",
                    "status": hint.status_code if isinstance(hint, RejectConnection) else None,
                }
            )
            stopped = failed = True
        except LocalProtocolError:
            events.append({"t": "local-error"})
            stopped = True
        out["chunks"].append({"events": events, "state": conn.state.name})
    # After a handshake error the connection is dropped: no end of stream to feed.
    if case.get("eof", False) and not failed:
        events = []
        try:
            conn.receive_data(None)
            drain(events)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            events.append(
                {
                    "t": "remote-error",
                    "status": hint.status_code if isinstance(hint, RejectConnection) else None,
                }
            )
        except LocalProtocolError:
            events.append({"t": "local-error"})
        out["eof"] = {"events": events, "state": conn.state.name}
    return out


def drain_safe(events, drain):
    try:
        drain(events)
    except (RemoteProtocolError, LocalProtocolError):
        pass


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        case = json.loads(line)
        try:
            result = run_case(case)
        except Exception as exc:  # a crash in wsproto itself: report it
            result = {"id": case["id"], "crash": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
