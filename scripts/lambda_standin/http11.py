"""HTTP/1.1 as the stand-in speaks it, both to the function processes (the Runtime API) and between
the binaries and DynamoDB Local (the proxy): one message read (Content-Length, chunked, or to the
close), written back with Content-Length, and a one-off JSON GET."""

from __future__ import annotations

import asyncio
import dataclasses
import json

# Read buffers: DynamoDB answers (a BatchGetItem of 100 lines) exceed asyncio's 64 KiB default.
STREAM_LIMIT = 16 * 1024 * 1024


@dataclasses.dataclass
class Message:
    """One HTTP/1.1 request or response: its start line, headers (in order) and body."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default


class ConnectionClosed(Exception):
    """The peer closed the connection between two messages."""


async def read_message(
    reader: asyncio.StreamReader,
    *,
    response: bool = False,
    continue_writer: asyncio.StreamWriter | None = None,
) -> Message:
    """Reads one message; raises ConnectionClosed at a clean end of stream.

    Bodies come with Content-Length or chunked; a response with neither ends at close. A request
    that sends `Expect: 100-continue` gets its 100 on `continue_writer` before its body is read."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            raise ConnectionClosed() from None
        raise
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    message = Message(lines[0], headers, b"")
    if continue_writer is not None and (message.header("expect") or "").lower() == "100-continue":
        continue_writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = message.header("content-length")
    if length is not None:
        message.body = await reader.readexactly(int(length))
    elif (message.header("transfer-encoding") or "").lower() == "chunked":
        message.body = await _read_chunked(reader)
    elif response and not message.start.split(" ")[1].startswith(("1", "204", "304")):
        message.body = await reader.read()
    return message


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


# Headers that describe one hop's framing, rewritten on each hop.
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "expect"}


def encode_message(start: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A message framed with Content-Length (whatever framing it arrived with)."""
    lines = [start]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


def encode_response(status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> bytes:
    start = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"
    return encode_message(start, [("Content-Type", "application/json"), *headers], body)


async def http_get_json(host: str, port: int, path: str) -> dict:
    """One GET on a fresh connection (the proxy's statistics)."""
    reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
    try:
        writer.write(encode_message(f"GET {path} HTTP/1.1", [("Host", f"{host}:{port}")], b""))
        await writer.drain()
        return json.loads((await read_message(reader, response=True)).body)
    finally:
        writer.close()
