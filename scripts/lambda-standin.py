#!/usr/bin/env python3
"""A Lambda stand-in on one machine: the Runtime API, a load driver and a counting DynamoDB proxy.

It measures `POST /allocate` on a hot SKU and spread over many SKUs under two compute shapes, the
way Lambda runs the real function binaries:

- **Runtime API stand-in.** Each function process is started as Lambda starts a `provided.al2023`
  bootstrap (the environment Lambda gives, `AWS_LAMBDA_RUNTIME_API` among it) and gets its own
  Runtime API endpoint (its own port on 127.0.0.1): `GET /2018-06-01/runtime/invocation/next`
  (long poll; the invocation's id, deadline, function ARN and trace id as headers),
  `POST .../invocation/{id}/response`, `POST .../invocation/{id}/error` and
  `POST /2018-06-01/runtime/init/error`. Like Lambda Managed Instances, one process may be handed
  several invocations at once: at most C (its concurrency; `AWS_LAMBDA_MAX_CONCURRENCY=C` is set
  when C > 1). A process whose runtime polls once at a time has one invocation in flight however
  large C is; the stand-in records how many each process really had in flight, and how many
  `/next` polls it holds open when idle (its pollers), so a sequential binary shows as one.
- **Load driver.** N clients, each sending API Gateway HTTP API (payload 2.0) events for
  `POST /allocate` (`events/allocate.json` with a new body `{"orderid","sku","qty": 1}`) to
  whichever process has a free slot, waiting for the function's answer, recording status and
  latency. A warm-up, then a fixed window that is measured.
- **Counting proxy** (a second process running this file, so that it has a core of its own to
  compete for): between the binaries and DynamoDB Local; per request the `X-Amz-Target`
  operation, the HTTP status, cancelled transactions and their reasons, the items read (GetItem,
  BatchGetItem, Query answers) and written (TransactWriteItems requests), priced by DynamoDB's
  sizing rules with an approximate sizer (`item_size`).

The table is created as `template.yaml` declares it (keys, global indexes, stream, TTL), read from
the template; the batches are added through the real `add_batch` binary, through the stand-in.
At the end every SKU is read back with boto3 to check that nothing was oversold.

    python scripts/lambda-standin.py run --bin-dir target/release \\
        --dynamodb-endpoint http://127.0.0.1:8000 --out report.md
    python scripts/lambda-standin.py proxy --upstream 127.0.0.1:8000   # the proxy alone

`scripts/measure-lambda-concurrency.sh` starts DynamoDB Local and runs `run` with the right
arguments. Needs boto3 and PyYAML (the repository's `.venv` has both).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

# What the stand-in says it is, in the environment and the ARNs it hands out.
REGION = "us-east-1"
ACCOUNT = "123456789012"

# Read buffers: DynamoDB answers (a BatchGetItem of 100 lines) exceed asyncio's 64 KiB default.
STREAM_LIMIT = 16 * 1024 * 1024

# How long a process may take from spawn to its first /next poll.
INIT_TIMEOUT_S = 60.0

PROXY_STATS_PATH = "/_standin/stats"


# ----------------------------------------------------------------------------- the template


class _CloudFormationLoader(yaml.SafeLoader):
    """PyYAML's safe loader, which also reads CloudFormation's short tags (!Ref, !GetAtt, !Sub...)."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    # The intrinsic stays as data ({"Ref": ...}): only literal values are read from the template.
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_CloudFormationLoader.add_multi_constructor("!", _tagged)


def load_template(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_CloudFormationLoader)


def table_properties(template: dict) -> dict:
    """The `Table` resource's properties, as deployed."""
    return template["Resources"]["Table"]["Properties"]


def key_names(key_schema: list) -> tuple[str, str | None]:
    """(hash key, range key or None) of a KeySchema."""
    by_type = {element["KeyType"]: element["AttributeName"] for element in key_schema}
    return by_type["HASH"], by_type.get("RANGE")


@dataclasses.dataclass(frozen=True)
class TableShape:
    """What the proxy needs to price writes: the table's key and its global indexes' keys."""

    key: tuple[str, str | None]
    indexes: dict[str, tuple[str, str | None]]

    @classmethod
    def of(cls, template: dict) -> "TableShape":
        properties = table_properties(template)
        return cls(
            key=key_names(properties["KeySchema"]),
            indexes={
                index["IndexName"]: key_names(index["KeySchema"])
                for index in properties.get("GlobalSecondaryIndexes", [])
            },
        )


def create_table_request(template: dict, table_name: str) -> tuple[dict, dict | None]:
    """CreateTable arguments from the template's `Table`, and UpdateTimeToLive's (or None).

    Point-in-time recovery and deletion protection are left out, as the tests leave them out: a
    throw-away table in DynamoDB Local wants neither."""
    properties = table_properties(template)
    request = {
        "TableName": table_name,
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
    }
    if properties.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
            for i in properties["GlobalSecondaryIndexes"]
        ]
    if properties.get("StreamSpecification"):
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": properties["StreamSpecification"]["StreamViewType"],
        }
    ttl = properties.get("TimeToLiveSpecification")
    ttl_request = None
    if ttl and ttl.get("Enabled"):
        ttl_request = {
            "TableName": table_name,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": ttl["AttributeName"]},
        }
    return request, ttl_request


@dataclasses.dataclass(frozen=True)
class FunctionSettings:
    """What the template's Globals give every function and Lambda turns into its environment."""

    memory_mb: int
    timeout_s: int
    log_level: str
    rust_log: str

    @classmethod
    def of(cls, template: dict, log_level: str | None) -> "FunctionSettings":
        function = template["Globals"]["Function"]
        level = log_level or template["Parameters"]["LogLevel"]["Default"]
        # RUST_LOG: !FindInMap [RustLog, !Ref LogLevel, Filter]: the map's entry for the level.
        rust_log = template["Mappings"]["RustLog"][level]["Filter"]
        return cls(int(function["MemorySize"]), int(function["Timeout"]), level, rust_log)


# ----------------------------------------------------------------------------- HTTP/1.1


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


# ----------------------------------------------------------------------------- DynamoDB sizes
#
# Approximate, by DynamoDB's sizing rules as tests/aws/dynamodb_size.rs states them: an item is the
# sum over its attributes of the name's UTF-8 bytes and the value's size; S: UTF-8 bytes; N: 1 byte
# per 2 significant digits, rounded up, + 1 (+ 1 if negative); B: raw bytes; BOOL, NULL: 1; sets:
# the sum of their elements; L and M: 3 + per element its size (and key, for M) + 1. The figures
# agree with the repository's cost test; a bill may round differently.

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def number_size(number: str) -> int:
    mantissa = re.split("[eE]", number)[0]
    digits = "".join(c for c in mantissa if c.isdigit()).strip("0")
    return math.ceil(len(digits) / 2) + 1 + (1 if mantissa.strip().startswith("-") else 0)


def value_size(value: dict) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode("utf-8"))
    if kind == "N":
        return number_size(data)
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in data)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + value_size(v) + 1 for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def read_units(total_bytes: int, consistent: bool) -> float:
    """One read (a GetItem, an item of a BatchGetItem, a Query page): per started 4 KB, at least 1;
    half for an eventually consistent read."""
    units = max(1, math.ceil(total_bytes / READ_UNIT_BYTES))
    return units if consistent else units / 2


def standard_write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


# ----------------------------------------------------------------------------- counting proxy


class Counters(collections.defaultdict):
    """Flat counters ("requests.GetItem" -> 12): two snapshots subtract key by key."""

    def __init__(self) -> None:
        super().__init__(float)


def subtract(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


@dataclasses.dataclass
class StoredItem:
    """What the proxy last saw of an item: its size and its entries in the global indexes."""

    size: int
    index_keys: dict[str, tuple | None]


class CountingProxy:
    """An HTTP proxy to DynamoDB (Local) that counts what each request reads and writes.

    It keeps the last size seen of every item it has seen read or written, because DynamoDB sizes
    a put that replaces an item by the larger of the two and the write of a global index entry by
    what the item's index keys were and become."""

    def __init__(self, upstream: tuple[str, int], shape: TableShape) -> None:
        self.upstream = upstream
        self.shape = shape
        self.counters = Counters()
        self.items: dict[tuple, StoredItem | None] = {}
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.handle_connection, host, port, limit=STREAM_LIMIT)

    async def handle_connection(self, reader, writer) -> None:
        try:
            while True:
                request = await read_message(reader, continue_writer=writer)
                if request.start.split(" ")[1] == PROXY_STATS_PATH:
                    writer.write(encode_response(200, json.dumps(self.counters).encode()))
                    await writer.drain()
                    continue
                started = time.perf_counter()
                answer, upstream_s = await self.forward(request)
                writer.write(encode_message(answer.start, answer.headers, answer.body))
                await writer.drain()
                # Counted after the answer left: the counting adds no latency.
                self.count(request, answer, upstream_s, time.perf_counter() - started)
        except (ConnectionClosed, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def forward(self, request: Message) -> tuple[Message, float]:
        """Sends the request upstream on a kept-alive connection and returns the answer.

        A pooled connection DynamoDB Local has closed meanwhile fails at once; the request is then
        sent again on a new one (it had not reached the server)."""
        data = encode_message(request.start, request.headers, request.body)
        for attempt in (1, 2):
            reused = bool(self.idle)
            reader, writer = self.idle.pop() if reused else await asyncio.open_connection(
                *self.upstream, limit=STREAM_LIMIT)
            started = time.perf_counter()
            try:
                writer.write(data)
                await writer.drain()
                answer = await read_message(reader, response=True)
            except (ConnectionClosed, ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if reused and attempt == 1:
                    continue
                raise
            elapsed = time.perf_counter() - started
            if (answer.header("connection") or "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer))
            return answer, elapsed
        raise AssertionError("unreachable")

    def count(self, request: Message, answer: Message, upstream_s: float, handled_s: float) -> None:
        c = self.counters
        operation = (request.header("x-amz-target") or "unknown").rsplit(".", 1)[-1]
        status = int(answer.start.split(" ")[1])
        c[f"requests.{operation}"] += 1
        c[f"status.{operation}.{status}"] += 1
        c[f"upstream_s.{operation}"] += upstream_s
        c[f"proxy_s.{operation}"] += handled_s - upstream_s
        try:
            sent = json.loads(request.body) if request.body else {}
            received = json.loads(answer.body) if answer.body else {}
        except ValueError:
            c["unparsed"] += 1
            return
        cancelled = False
        if status != 200:
            error = str(received.get("__type", "unknown")).rsplit("#", 1)[-1]
            c[f"errors.{operation}.{error}"] += 1
            cancelled = error == "TransactionCanceledException"
            if cancelled:
                c["transactions.cancelled"] += 1
                for reason in received.get("CancellationReasons") or []:
                    if reason.get("Code") not in (None, "None"):
                        c[f"cancellation_reasons.{reason['Code']}"] += 1
            elif operation != "TransactWriteItems":
                return
        if operation == "GetItem":
            self.count_get(sent, received)
        elif operation == "BatchGetItem":
            self.count_batch_get(sent, received)
        elif operation == "Query":
            self.count_query(sent, received)
        elif operation == "TransactWriteItems":
            c["transactions.attempted"] += 1
            if status == 200 or cancelled:
                self.count_transaction(sent, committed=status == 200)

    # -- reads

    def count_get(self, sent: dict, received: dict) -> None:
        item = received.get("Item")
        size = item_size(item) if item else 0
        self.counters["records_read"] += 1 if item else 0
        self.counters["read_units"] += read_units(size, bool(sent.get("ConsistentRead")))
        self.remember(self.key_of(sent["Key"]), item)

    def count_batch_get(self, sent: dict, received: dict) -> None:
        for table, ask in sent.get("RequestItems", {}).items():
            consistent = bool(ask.get("ConsistentRead"))
            found = received.get("Responses", {}).get(table, [])
            unprocessed = received.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            # Each item is read and rounded on its own; a key found absent costs one read too.
            missing = len(ask.get("Keys", [])) - len(found) - len(unprocessed)
            self.counters["records_read"] += len(found)
            self.counters["read_units"] += sum(read_units(item_size(i), consistent) for i in found)
            self.counters["read_units"] += missing * read_units(0, consistent)
            for item in found:
                self.remember(self.key_of(item), item)

    def count_query(self, sent: dict, received: dict) -> None:
        items = received.get("Items", [])
        # An index is never read strongly consistent.
        consistent = bool(sent.get("ConsistentRead")) and "IndexName" not in sent
        self.counters["records_read"] += len(items)
        self.counters["read_units"] += read_units(sum(item_size(i) for i in items), consistent)

    # -- writes

    def count_transaction(self, sent: dict, committed: bool) -> None:
        """Prices a TransactWriteItems: 2 units per started KB of each item it writes (a put: of the
        larger of the old and the new item), and each global index entry it changes as a standard
        write (1 per started KB: the index is maintained outside the transaction). A cancelled one
        is priced the same, under `cancelled.`, and changes nothing the proxy remembers."""
        prefix = "" if committed else "cancelled."
        c = self.counters
        for action in sent.get("TransactItems", []):
            (kind, body), = action.items()
            if kind == "ConditionCheck":
                c[f"{prefix}condition_checks"] += 1
                continue
            key = self.key_of(body.get("Key") or body["Item"])
            old = self.items.get(key)
            new_item = body.get("Item") if kind == "Put" else None
            new = self.stored(new_item) if new_item is not None else None
            if kind == "Put":
                size = max(new.size, old.size if old else 0)
            else:
                # A delete is sized by the item deleted; an update (not on the allocation path) by the
                # item before it: both approximate when the proxy never saw the item.
                size = old.size if old else item_size(body["Key"])
            c[f"{prefix}records_written"] += 1
            c[f"{prefix}records_written.{kind}"] += 1
            c[f"{prefix}write_units.table"] += 2 * standard_write_units(size)
            if kind != "Update":
                c[f"{prefix}write_units.index"] += self.index_write_units(old, new)
            if committed and kind == "Put":
                self.items[key] = new
            elif committed and kind == "Delete":
                self.items[key] = None

    def index_write_units(self, old: StoredItem | None, new: StoredItem | None) -> int:
        """Standard writes of the index entries: a new entry 1 write, a removed one 1, the same key
        rewritten 1, a key that changes 2 (the old entry deleted, the new one put)."""
        units = 0
        for index in self.shape.indexes:
            before = old.index_keys.get(index) if old else None
            after = new.index_keys.get(index) if new else None
            if before is None and after is None:
                continue
            if before is not None and after is not None and before != after:
                units += standard_write_units(old.size) + standard_write_units(new.size)
            else:
                units += standard_write_units(max(old.size if old and before else 0,
                                                  new.size if new and after else 0))
        return units

    # -- what the proxy remembers of items

    def key_of(self, item: dict) -> tuple:
        hash_key, range_key = self.shape.key
        return (json.dumps(item[hash_key]), json.dumps(item.get(range_key)) if range_key else None)

    def stored(self, item: dict) -> StoredItem:
        keys = {}
        for index, (hash_key, range_key) in self.shape.indexes.items():
            present = hash_key in item and (range_key is None or range_key in item)
            keys[index] = (json.dumps(item[hash_key]), json.dumps(item.get(range_key))) if present else None
        return StoredItem(item_size(item), keys)

    def remember(self, key: tuple, item: dict | None) -> None:
        self.items[key] = self.stored(item) if item else None


async def proxy_main(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    proxy = CountingProxy((host, int(port)), TableShape.of(load_template(Path(args.template))))
    server = await proxy.serve(args.host, args.port)
    # The parent reads the port from this first line.
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


# ----------------------------------------------------------------------------- Runtime API stand-in


@dataclasses.dataclass
class Answer:
    """What API Gateway would have answered, and where the time went."""

    status: int  # the function's statusCode; 500 for a function error, 504 timed out, 0 no process
    body: str
    wait_s: float = 0.0  # from the request to its hand-over on /next: for a slot, then in the queue
    function_s: float = 0.0  # from the hand-over to the function's response
    environment: int = -1


@dataclasses.dataclass
class Invocation:
    request_id: str
    event: bytes
    trace_id: str
    answer: asyncio.Future
    created: float
    handed: float | None = None


class ExecutionEnvironment:
    """One function process and its Runtime API endpoint (its own port)."""

    def __init__(self, fleet: "Fleet", index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.queue: asyncio.Queue[Invocation] = asyncio.Queue()  # routed here, not yet polled
        self.in_flight: dict[str, Invocation] = {}  # handed on /next, not answered
        self.polls_open = 0  # /next requests waiting for an invocation
        self.peak_in_flight = 0
        self.pollers_at_rest = 0  # /next polls open once started and idle: the runtime's pollers
        self.first_poll = asyncio.Event()
        self.init_error: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.server: asyncio.Server | None = None
        self.port = 0
        self.log_path: Path | None = None
        self.exited = asyncio.Event()
        self.connections: set[asyncio.Task] = set()  # the process's open Runtime API connections

    # -- the process

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle_connection, "127.0.0.1", 0, limit=STREAM_LIMIT)
        self.port = self.server.sockets[0].getsockname()[1]
        self.log_path = self.fleet.log_dir / f"{self.fleet.name}-{self.index}.log"
        log = open(self.log_path, "wb")
        self.process = await asyncio.create_subprocess_exec(
            str(self.fleet.binary), env=self.fleet.environment(self), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        log.close()
        asyncio.get_running_loop().create_task(self.watch_exit())

    async def watch_exit(self) -> None:
        await self.process.wait()
        self.exited.set()
        # Lambda would start a new environment; here the run is spoilt, and says so.
        failed = list(self.in_flight.values())
        while not self.queue.empty():
            failed.append(self.queue.get_nowait())
        self.in_flight.clear()
        for invocation in failed:
            if not invocation.answer.done():
                invocation.answer.set_result(Answer(0, "the process exited", environment=self.index))

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        # Polls the process left open wait on the queue for good: end them with it.
        connections = list(self.connections)
        for connection in connections:
            connection.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- the Runtime API

    async def handle_connection(self, reader, writer) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            while True:
                request = await read_message(reader, continue_writer=writer)
                writer.write(await self.route(request))
                await writer.drain()
        except (ConnectionClosed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the environment stops: a poll still open will never be answered
        finally:
            self.connections.discard(task)
            writer.close()

    async def route(self, request: Message) -> bytes:
        method, target = request.start.split(" ")[:2]
        parts = target.split("?")[0].strip("/").split("/")
        if parts[:3] != ["2018-06-01", "runtime", "invocation"] and parts != ["2018-06-01", "runtime", "init", "error"]:
            return encode_response(404, b'{"errorMessage":"unknown path"}')
        if method == "GET" and parts[3:] == ["next"]:
            return await self.next_invocation()
        if method == "POST" and parts[2:] == ["init", "error"]:
            self.init_error = request.body.decode(errors="replace")
            self.first_poll.set()  # wakes the start-up wait, which reports the error
            return encode_response(202, b'{"status":"OK"}')
        if method == "POST" and len(parts) == 5 and parts[4] in ("response", "error"):
            return self.complete(parts[3], parts[4], request)
        return encode_response(404, b'{"errorMessage":"unknown route"}')

    async def next_invocation(self) -> bytes:
        """The long poll: waits for an invocation routed to this process and hands it over."""
        self.first_poll.set()
        self.polls_open += 1
        try:
            invocation = await self.queue.get()
        finally:
            self.polls_open -= 1
        invocation.handed = time.monotonic()
        self.in_flight[invocation.request_id] = invocation
        self.peak_in_flight = max(self.peak_in_flight, len(self.in_flight))
        deadline_ms = int((time.time() + self.fleet.settings.timeout_s) * 1000)
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", self.fleet.function_arn),
            ("Lambda-Runtime-Trace-Id", invocation.trace_id),
        ]
        return encode_response(200, invocation.event, headers)

    def complete(self, request_id: str, outcome: str, request: Message) -> bytes:
        invocation = self.in_flight.pop(request_id, None)
        if invocation is None:
            # Unknown, or answered after the client gave up: Lambda answers the same.
            return encode_response(400, b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}')
        now = time.monotonic()
        if outcome == "response":
            status, body = api_gateway_answer(request.body)
        else:
            # API Gateway answers a function error with 500 Internal Server Error.
            status, body = 500, request.body.decode(errors="replace")
        if not invocation.answer.done():
            invocation.answer.set_result(Answer(
                status, body, wait_s=invocation.handed - invocation.created,
                function_s=now - invocation.handed, environment=self.index))
        return encode_response(202, b'{"status":"OK"}')


def die_with_parent() -> None:
    """Runs in a child before it execs: the kernel kills the child when this program dies, however
    it dies. A concurrent runtime whose Runtime API has gone retries /next forever, which would
    leave orphans spinning on the cores."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def api_gateway_answer(payload: bytes) -> tuple[int, str]:
    """The HTTP answer API Gateway (payload 2.0) makes of a function's response."""
    try:
        response = json.loads(payload)
    except ValueError:
        return 502, payload.decode(errors="replace")
    if isinstance(response, dict) and "statusCode" in response:
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        return int(response["statusCode"]), body
    # Any other JSON value: 200 with the value as the body.
    return 200, json.dumps(response)


class Fleet:
    """The execution environments of one function: `processes` processes of `concurrency` slots each.

    A request waits for a free slot (any process's), is routed to that process and waits for its
    answer; the slot frees when the function answers (or the invocation times out)."""

    def __init__(self, name: str, binary: Path, processes: int, concurrency: int,
                 settings: FunctionSettings, context: "RunContext", log_dir: Path) -> None:
        self.name = name
        self.binary = binary
        self.concurrency = concurrency
        self.settings = settings
        self.context = context
        self.log_dir = log_dir
        self.function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        self.environments = [ExecutionEnvironment(self, i) for i in range(processes)]
        self.slots: asyncio.Queue[int] = asyncio.Queue()
        # Interleaved, so that the first requests spread over the processes, as a router would.
        for _ in range(concurrency):
            for environment in self.environments:
                self.slots.put_nowait(environment.index)

    def environment(self, environment: ExecutionEnvironment) -> dict:
        """The process environment Lambda gives a provided.al2023 function (nothing inherited)."""
        variables = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "_HANDLER": "bootstrap",
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{environment.port}",
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.settings.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{datetime.date.today():%Y/%m/%d}/[1]{uuid.uuid4().hex}",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_LOG_LEVEL": self.settings.log_level,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # Dummy credentials: DynamoDB Local checks no signature.
            "AWS_ACCESS_KEY_ID": "AKIASTANDIN",
            "AWS_SECRET_ACCESS_KEY": "standin",
            "AWS_SESSION_TOKEN": "standin",
            # Not set by Lambda, which has no instance metadata to ask: nothing must look for it here.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_DYNAMODB": self.context.dynamodb_endpoint,
            # The template's Globals.Environment.
            "TABLE_NAME": self.context.table_name,
            "TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:standin-events",
            "RUST_LOG": self.settings.rust_log,
            "METRICS_NAMESPACE": "Allocation/standin",
        }
        if self.concurrency > 1:
            variables["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.concurrency)
        return variables

    async def start(self) -> None:
        """Starts every process and waits until each has polled /next (its cold start is done)."""
        for environment in self.environments:
            await environment.start()
        for environment in self.environments:
            waits = [asyncio.ensure_future(environment.first_poll.wait()),
                     asyncio.ensure_future(environment.exited.wait())]
            done, pending = await asyncio.wait(waits, timeout=INIT_TIMEOUT_S,
                                               return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()
            if environment.init_error or environment.exited.is_set() or not done:
                reason = (f"init error {environment.init_error}" if environment.init_error
                          else "exited" if environment.exited.is_set() else f"no poll in {INIT_TIMEOUT_S:.0f} s")
                await self.stop()
                raise RuntimeError(f"{self.name} process {environment.index} did not start ({reason}); "
                                   f"log {environment.log_path}:\n{environment.log_tail()}")
        await self.count_pollers()

    async def count_pollers(self) -> None:
        """How many /next polls each idle process holds open: 1 for a sequential runtime, C for one
        that polls C at once. A concurrent runtime opens its pollers one after another, so this waits
        until the count has stopped moving (at most 3 s)."""
        deadline = time.monotonic() + 3.0
        counts = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            now = [e.polls_open for e in self.environments]
            if now == counts:
                break
            counts = now
        for environment in self.environments:
            environment.pollers_at_rest = environment.polls_open

    async def invoke(self, event: dict) -> Answer:
        requested = time.monotonic()  # the wait for a slot counts as the request's
        slot = await self.slots.get()
        environment = self.environments[slot]
        invocation = Invocation(
            request_id=str(uuid.uuid4()), event=json.dumps(event).encode(), trace_id=trace_id(),
            answer=asyncio.get_running_loop().create_future(), created=requested)
        environment.queue.put_nowait(invocation)
        try:
            # The function's own timeout, counted from the request (Lambda counts from the hand-over;
            # a request that waits that long for a slot has failed anyway).
            return await asyncio.wait_for(asyncio.shield(invocation.answer), self.settings.timeout_s + 1)
        except asyncio.TimeoutError:
            environment.in_flight.pop(invocation.request_id, None)
            return Answer(504, "timed out", wait_s=time.monotonic() - invocation.created, environment=slot)
        finally:
            self.slots.put_nowait(slot)

    def reset_peaks(self) -> None:
        for environment in self.environments:
            environment.peak_in_flight = len(environment.in_flight)

    def peaks(self) -> list[int]:
        """Per process: the most invocations it had in flight at once since `reset_peaks`."""
        return [e.peak_in_flight for e in self.environments]

    def pollers(self) -> list[int]:
        """Per process: the /next polls it held open when idle, before the load."""
        return [e.pollers_at_rest for e in self.environments]

    def pids(self) -> list[int]:
        return [e.process.pid for e in self.environments if e.process and e.process.returncode is None]

    def logs_say_sequential(self) -> bool:
        """Whether a process logged the runtime's warning that it runs one invocation at a time."""
        return any("running sequentially" in (e.log_path.read_text(errors="replace") if e.log_path else "")
                   for e in self.environments)

    async def stop(self) -> None:
        await asyncio.gather(*(e.stop() for e in self.environments))


def trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()};Parent={os.urandom(8).hex()};Sampled=0"


# ----------------------------------------------------------------------------- API Gateway events


class EventFactory:
    """API Gateway HTTP API (payload 2.0) events made from the repository's sample events."""

    def __init__(self, events_dir: Path) -> None:
        self.samples = {name: json.loads((events_dir / f"{name}.json").read_text())
                        for name in ("allocate", "add_batch")}

    def event(self, route: str, body: dict) -> dict:
        event = copy.deepcopy(self.samples[route])
        text = json.dumps(body)
        now = time.time()
        event["body"] = text
        event["headers"]["content-length"] = str(len(text.encode()))
        event["headers"]["x-amzn-trace-id"] = f"Root=1-{int(now):08x}-{os.urandom(12).hex()}"
        context = event["requestContext"]
        context["requestId"] = base64.b64encode(os.urandom(12)).decode()
        context["timeEpoch"] = int(now * 1000)
        context["time"] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return event


# ----------------------------------------------------------------------------- one run


@dataclasses.dataclass
class Shape:
    label: str  # "a", "b"
    processes: int
    concurrency: int

    def describe(self) -> str:
        return f"{self.processes} × C={self.concurrency}"


@dataclasses.dataclass
class Scenario:
    name: str  # "a-hot"
    shape: Shape
    skus: list[str]
    batch_refs: list[str]


@dataclasses.dataclass
class Request:
    sku: str
    orderid: str
    started: float
    ended: float
    answer: Answer


@dataclasses.dataclass
class RunContext:
    args: argparse.Namespace
    run_id: str
    table_name: str
    dynamodb_endpoint: str  # what the functions use: the proxy, or DynamoDB Local itself
    log_dir: Path
    settings: FunctionSettings
    events: EventFactory
    proxy_port: int | None
    proxy_pid: int | None


class CpuClock:
    """CPU seconds of processes (/proc/<pid>/stat) and of the whole machine (/proc/stat)."""

    TICK = os.sysconf("SC_CLK_TCK")

    @classmethod
    def process(cls, pid: int | None) -> float:
        if not pid:
            return 0.0
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # utime and stime: fields 14 and 15 of the line, 12 and 13 after the command's ")".
        return (int(fields[11]) + int(fields[12])) / cls.TICK

    @classmethod
    def machine(cls) -> tuple[float, float]:
        """(busy, total) CPU seconds of all cores since boot."""
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle, iowait
        total = sum(values[:8])
        return (total - idle) / cls.TICK, total / cls.TICK

    @classmethod
    def sample(cls, context: RunContext, fleet: Fleet) -> dict:
        busy, total = cls.machine()
        return {
            "functions": sum(cls.process(pid) for pid in fleet.pids()),
            "dynamodb_local": cls.process(context.args.dynamodb_pid),
            "proxy": cls.process(context.proxy_pid),
            "stand-in": cls.process(os.getpid()),
            "machine_busy": busy,
            "machine_total": total,
        }


async def proxy_counters(context: RunContext) -> dict:
    if context.proxy_port is None:
        return {}
    return await http_get_json("127.0.0.1", context.proxy_port, PROXY_STATS_PATH)


async def add_batches(context: RunContext, scenarios: list[Scenario]) -> None:
    """Every scenario's batches, one per SKU, through the real add_batch binary (two processes)."""
    args = context.args
    fleet = Fleet("add_batch", Path(args.bin_dir) / "add_batch", 2, 1, context.settings, context,
                  context.log_dir)
    await fleet.start()
    work = [(ref, sku) for s in scenarios for ref, sku in zip(s.batch_refs, s.skus)]
    failures = []

    async def adder(share: list) -> None:
        for ref, sku in share:
            body = {"ref": ref, "sku": sku, "qty": args.batch_qty, "eta": None}
            answer = await fleet.invoke(context.events.event("add_batch", body))
            if answer.status != 201:
                failures.append(f"{ref}: {answer.status} {answer.body}")

    try:
        await asyncio.gather(*(adder(work[i::4]) for i in range(4)))
    finally:
        await fleet.stop()
    if failures:
        raise RuntimeError(f"add_batch failed for {len(failures)} batches, e.g. {failures[:3]}")


async def run_scenario(context: RunContext, scenario: Scenario) -> dict:
    """Starts the scenario's processes, drives the load, and returns what was measured."""
    args = context.args
    log_dir = context.log_dir / scenario.name
    log_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet("allocate", Path(args.bin_dir) / "allocate", scenario.shape.processes,
                  scenario.shape.concurrency, context.settings, context, log_dir)
    progress(f"[{scenario.name}] starting {scenario.shape.describe()} allocate processes")
    await fleet.start()
    try:
        measured = await drive(context, scenario, fleet)
    finally:
        await fleet.stop()
    measured["sequential_warning"] = fleet.logs_say_sequential()
    return measured


async def drive(context: RunContext, scenario: Scenario, fleet: Fleet) -> dict:
    """The load: `clients` clients, each one request at a time, through warm-up and the window."""
    args = context.args
    requests: list[Request] = []
    counter = iter(range(10**12))
    begin = time.monotonic()
    window_start = begin + args.warmup
    window_end = window_start + args.duration
    marks: dict[str, dict] = {}

    async def client() -> None:
        while time.monotonic() < window_end:
            n = next(counter)
            sku = scenario.skus[n % len(scenario.skus)]
            orderid = f"{context.run_id}-{scenario.name}-{n}"
            event = context.events.event("allocate", {"orderid": orderid, "sku": sku, "qty": 1})
            started = time.monotonic()
            answer = await fleet.invoke(event)
            requests.append(Request(sku, orderid, started, time.monotonic(), answer))

    async def mark_window() -> None:
        # The window's two ends: DynamoDB counters, CPU clocks, and the in-flight peaks restarted.
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        fleet.reset_peaks()
        marks["start"] = {"dynamodb": await proxy_counters(context), "cpu": CpuClock.sample(context, fleet),
                          "t": time.monotonic()}
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        marks["end"] = {"dynamodb": await proxy_counters(context), "cpu": CpuClock.sample(context, fleet),
                        "t": time.monotonic(), "peaks": fleet.peaks(), "pollers": fleet.pollers()}

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(args.progress_every)
            now = time.monotonic()
            phase = (f"warm-up {now - begin:.0f}/{args.warmup:.0f} s" if now < window_start
                     else f"measuring {now - window_start:.0f}/{args.duration:.0f} s" if now < window_end
                     else "window over, waiting for the answers still due")
            recent = [r for r in requests if r.ended > now - args.progress_every]
            non_201 = sum(1 for r in requests if r.answer.status != 201)
            in_flight = max(len(e.in_flight) for e in fleet.environments)
            progress(f"[{scenario.name}] {phase}: {len(requests)} answered, "
                     f"{len(recent) / args.progress_every:.0f}/s now, {non_201} not 201, "
                     f"in flight per process now ≤ {in_flight}/{scenario.shape.concurrency}")

    reporter = asyncio.ensure_future(report_progress())
    try:
        await asyncio.gather(mark_window(), *(client() for _ in range(args.clients)))
    finally:
        reporter.cancel()
    return summarize(scenario, requests, marks)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summarize(scenario: Scenario, requests: list[Request], marks: dict) -> dict:
    """The window's figures. Answers count in the window they arrive in; DynamoDB counters and CPU
    are the difference of the two ends' snapshots (a request crossing an end is split)."""
    start, end = marks["start"], marks["end"]
    seconds = end["t"] - start["t"]
    window = [r for r in requests if start["t"] <= r.ended < end["t"]]
    statuses = collections.Counter(r.answer.status for r in window)
    allocated = statuses.get(201, 0)
    latencies = [(r.ended - r.started) * 1000 for r in window]
    function_ms = [r.answer.function_s * 1000 for r in window if r.answer.function_s]
    wait_ms = [r.answer.wait_s * 1000 for r in window]
    dynamodb = subtract(end["dynamodb"], start["dynamodb"])
    cpu = {k: end["cpu"][k] - start["cpu"][k] for k in end["cpu"]}
    in_flight, pollers = end["peaks"], end["pollers"]
    return {
        "scenario": scenario.name,
        "shape": dataclasses.asdict(scenario.shape),
        "skus": len(scenario.skus),
        "seconds": seconds,
        "answered": len(window),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "allocations_per_s": allocated / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "function_p50_ms": percentile(function_ms, 50),
        "function_p99_ms": percentile(function_ms, 99),
        "wait_p50_ms": percentile(wait_ms, 50),
        "peak_in_flight": in_flight,
        "pollers": pollers,
        "mean_in_flight": sum(function_ms) / 1000 / seconds / scenario.shape.processes,
        "dynamodb": dynamodb,
        "cpu_s": cpu,
        # For the final check: every answer of the scenario, warm-up included.
        "answers": [(r.sku, r.orderid, r.answer.status, r.answer.body) for r in requests],
    }


# ----------------------------------------------------------------------------- the oversell check


def check_no_oversell(client, table_name: str, scenario: Scenario, answers: list) -> dict:
    """Reads the scenario's SKUs back from the table (strongly consistent) and compares with the
    answers: per SKU, no batch allocated beyond its quantity; the lines (`ORDER#<orderid>`/
    `LINE#<sku>`) sum to the product's allocated totals; exactly the orders answered 201 have a line,
    each in the batch its answer named."""
    answered = {}  # orderid -> (sku, status, batchref answered)
    for sku, orderid, status, body in answers:
        batchref = None
        if status == 201:
            try:
                batchref = json.loads(body).get("batchref")
            except ValueError:
                pass
        answered[orderid] = (sku, status, batchref)
    lines = read_lines(client, table_name, [(orderid, sku) for orderid, (sku, _, _) in answered.items()])
    problems = []
    over_allocated = 0
    for sku in scenario.skus:
        product = client.get_item(TableName=table_name, Key={"pk": {"S": f"PRODUCT#{sku}"}, "sk": {"S": "PRODUCT"}},
                                  ConsistentRead=True).get("Item")
        if product is None:
            problems.append(f"{sku}: no product item")
            continue
        batches = product["batches"]["L"]
        allocated_total = 0
        for batch in batches:
            batch = batch["M"]
            qty, allocated = int(batch["qty"]["N"]), int(batch["allocated"]["N"])
            allocated_total += allocated
            if allocated > qty:
                over_allocated += 1
                problems.append(f"{sku}: batch {batch['ref']['S']} allocated {allocated} > {qty}")
        line_total = sum(int(line["qty"]["N"]) for line in lines.values()
                         if line["sku"]["S"] == sku and "batchref" in line)
        if line_total != allocated_total:
            problems.append(f"{sku}: lines sum to {line_total}, the product says {allocated_total} allocated")
    ok_201 = {o for o, (_, status, _) in answered.items() if status == 201}
    with_line = set(lines)
    waiting = [o for o, line in lines.items() if "batchref" not in line]
    wrong_batch = [o for o in ok_201 & with_line
                   if lines[o].get("batchref", {}).get("S") != answered[o][2]]
    if ok_201 - with_line:
        problems.append(f"{len(ok_201 - with_line)} orders answered 201 have no line")
    if with_line - ok_201:
        problems.append(f"{len(with_line - ok_201)} lines belong to orders not answered 201")
    if waiting:
        problems.append(f"{len(waiting)} lines wait for stock (none should)")
    if wrong_batch:
        problems.append(f"{len(wrong_batch)} lines are in another batch than their answer said")
    return {
        "skus": len(scenario.skus),
        "answered_201": len(ok_201),
        "lines": len(lines),
        "lines_qty": sum(int(line["qty"]["N"]) for line in lines.values()),
        "over_allocated_batches": over_allocated,
        "problems": problems,
        "ok": not problems,
    }


def read_lines(client, table_name: str, keys: list[tuple[str, str]]) -> dict:
    """The line items of these (orderid, sku), by order id: BatchGetItem, strongly consistent, 100
    keys a request, a few requests at once."""
    def fetch(chunk):
        found = []
        request = {table_name: {"Keys": [{"pk": {"S": f"ORDER#{o}"}, "sk": {"S": f"LINE#{s}"}} for o, s in chunk],
                                "ConsistentRead": True}}
        while request:
            answer = client.batch_get_item(RequestItems=request)
            found += answer["Responses"].get(table_name, [])
            request = answer.get("UnprocessedKeys") or None
            if request:
                time.sleep(0.05)
        return found

    chunks = [keys[i:i + 100] for i in range(0, len(keys), 100)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        items = [item for found in pool.map(fetch, chunks) for item in found]
    return {item["orderid"]["S"]: item for item in items}


# ----------------------------------------------------------------------------- the report


def rate(per_second: float) -> str:
    """Allocations per second: a decimal where a whole number would hide the difference."""
    return f"{per_second:.1f}" if per_second < 10 else f"{per_second:.0f}"


def per(value: float, allocations: float) -> str:
    return f"{value / allocations:.2f}" if allocations else "–"


def machine_conditions() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def binary_fingerprint(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    built = datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return f"sha256 {digest}…, built {built}"


def render_report(context: RunContext, results: list[dict], checks: dict, conditions: dict) -> str:
    args = context.args
    out = []
    w = out.append
    binaries = args.label or f"from `{args.bin_dir_original}`"
    w(f"Run {context.run_id} on {conditions['date']} (working tree at commit {conditions['commit']}): `allocate` and "
      f"`add_batch` {binaries} (profile **{args.profile}**; allocate {conditions['allocate']}), "
      f"{args.clients} clients, {args.warmup:.0f} s warm-up then {args.duration:.0f} s measured per scenario, "
      f"DynamoDB Local {args.dynamodb_version or '(version unknown)'}"
      f"{'' if context.proxy_port else ', **no counting proxy** (no DynamoDB figures)'}.")
    w("")
    w(f"Machine: {conditions['cores']} cores ({conditions['cpu']}), Linux {conditions['kernel']}; load average "
      f"{conditions['load_before']} before, {conditions['load_after']} after. Everything (the functions, DynamoDB "
      f"Local, the proxy, the stand-in and its clients) shares these cores.")
    w("")
    w("| scenario | processes × C | SKUs | allocations/s | p50 ms | p99 ms | answers in window | 503 | other non-201 "
      "| max in flight per process | pollers per process |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in results:
        statuses = {int(k): v for k, v in r["statuses"].items()}
        others = ", ".join(f"{k}: {v}" for k, v in statuses.items() if k not in (201, 503)) or "0"
        w(f"| {r['scenario']} | {r['shape']['processes']} × {r['shape']['concurrency']} | {r['skus']} "
          f"| {rate(r['allocations_per_s'])} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['answered']} "
          f"| {statuses.get(503, 0) / max(1, r['answered']):.1%} | {others} "
          f"| {max(r['peak_in_flight'])} (of {r['shape']['concurrency']}) | {pollers(r)} |")
    w("")
    w("Pollers: the `/next` polls each process held open when idle, before the load (1: its runtime takes one "
      "invocation at a time, whatever its C).")
    w("")
    w("Latency is the client's: from its request to the function's answer, the wait before the hand-over "
      "included (for a free slot, then in the process's queue until one of its pollers takes it). Where it "
      "went, and how busy the processes were:")
    w("")
    w("| scenario | before the hand-over p50 ms | in the function p50 ms | in the function p99 ms "
      "| mean invocations in flight per process |")
    w("|---|---:|---:|---:|---:|")
    for r in results:
        w(f"| {r['scenario']} | {r['wait_p50_ms']:.1f} | {r['function_p50_ms']:.1f} | {r['function_p99_ms']:.1f} "
          f"| {r['mean_in_flight']:.2f} |")
    if context.proxy_port:
        w("")
        w("DynamoDB per allocation (201) in the window, counted by the proxy. Units by DynamoDB's sizing rules with "
          "an approximate sizer: reads 1 per started 4 KB strongly consistent (an absent item 1); writes in a "
          "transaction 2 per started KB of the item (a put: the larger of the old and the new); global index "
          "entries as standard writes, 1 per started KB. Cancelled transactions wrote nothing: what they asked "
          "for is shown apart.")
        w("")
        w("| scenario | requests | transactions | cancelled | records read | records written | read units "
          "| write units (table + index) | cancelled transactions' units |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            d = r["dynamodb"]
            n = r["allocations_per_s"] * r["seconds"]
            requests = sum(v for k, v in d.items() if k.startswith("requests."))
            table, index = d.get("write_units.table", 0), d.get("write_units.index", 0)
            cancelled_units = d.get("cancelled.write_units.table", 0) + d.get("cancelled.write_units.index", 0)
            w(f"| {r['scenario']} | {per(requests, n)} | {per(d.get('transactions.attempted', 0), n)} "
              f"| {per(d.get('transactions.cancelled', 0), n)} | {per(d.get('records_read', 0), n)} "
              f"| {per(d.get('records_written', 0), n)} | {per(d.get('read_units', 0), n)} "
              f"| {per(table + index, n)} ({per(table, n)} + {per(index, n)}) | {per(cancelled_units, n)} |")
        w("")
        w("Cancellation reasons and errors in the windows: " + "; ".join(
            f"{r['scenario']}: " + (", ".join(f"{k.split('.', 1)[1]} {v:.0f}" for k, v in sorted(r["dynamodb"].items())
                                              if k.startswith(("cancellation_reasons.", "errors."))) or "none")
            for r in results) + ".")
        w("")
        w("Time per DynamoDB request in the window (mean): DynamoDB Local's answer, and what the proxy added "
          "(reading, forwarding, writing back):")
        w("")
        w("| scenario | DynamoDB requests/s | GetItem | BatchGetItem | TransactWriteItems | proxy per request |")
        w("|---|---:|---:|---:|---:|---:|")
        for r in results:
            d = r["dynamodb"]
            total = sum(v for k, v in d.items() if k.startswith("requests."))
            cells = [f"{total / r['seconds']:.0f}"]
            for op in ("GetItem", "BatchGetItem", "TransactWriteItems"):
                count = d.get(f"requests.{op}", 0)
                cells.append(f"{d.get(f'upstream_s.{op}', 0) / count * 1000:.2f} ms" if count else "–")
            added = sum(v for k, v in d.items() if k.startswith("proxy_s."))
            cells.append(f"{added / total * 1000:.2f} ms" if total else "–")
            w(f"| {r['scenario']} | " + " | ".join(cells) + " |")
    w("")
    w("CPU over the window, in cores (of " + str(conditions["cores"]) + "): what each part used; *other* is the "
      "machine's busy time not accounted to them (other work on the machine).")
    w("")
    w("| scenario | functions | DynamoDB Local | proxy | stand-in | other | idle |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c, s = r["cpu_s"], r["seconds"]
        ours = c["functions"] + c["dynamodb_local"] + c["proxy"] + c["stand-in"]
        idle = c["machine_total"] - c["machine_busy"]
        dyn = f"{c['dynamodb_local'] / s:.2f}" if args.dynamodb_pid else "not measured"
        w(f"| {r['scenario']} | {c['functions'] / s:.2f} | {dyn} | {c['proxy'] / s:.2f} | {c['stand-in'] / s:.2f} "
          f"| {max(0.0, c['machine_busy'] - ours) / s:.2f} | {idle / s:.2f} |")
    w("")
    w("No oversell, read back from the table after the runs (every answer of each scenario, warm-up included): "
      "per SKU no batch allocated beyond its quantity, the lines summing to the product's allocated totals, and "
      "exactly the orders answered 201 holding a line, in the batch their answer named.")
    w("")
    w("| scenario | SKUs | answered 201 | lines | over-allocated batches | verdict |")
    w("|---|---:|---:|---:|---:|---|")
    for name, check in checks.items():
        verdict = "no oversell" if check["ok"] else "**FAILED**: " + "; ".join(check["problems"][:5])
        w(f"| {name} | {check['skus']} | {check['answered_201']} | {check['lines']} "
          f"| {check['over_allocated_batches']} | {verdict} |")
    w("")
    w(concurrency_verdict(results))
    goals = goal_lines(results, checks)
    if goals:
        w("")
        if any(r["shape"]["concurrency"] > 1 and max(r["peak_in_flight"]) <= 1 for r in results):
            w("The goals are about processes that run invocations at once; with this sequential binary, shape b "
              "is 2 processes at concurrency 1, so the figures below do not test them.")
            w("")
        w("| goal | figure | met |")
        w("|---|---|---|")
        out.extend(goals)
    return "\n".join(out) + "\n"


def pollers(result: dict) -> str:
    low, high = min(result["pollers"]), max(result["pollers"])
    return str(low) if low == high else f"{low}-{high}"


def concurrency_verdict(results: list[dict]) -> str:
    """Says whether the processes given C > 1 really ran invocations at once."""
    wide = [r for r in results if r["shape"]["concurrency"] > 1]
    if not wide:
        return "No scenario gave a process more than one slot."
    peaks = sorted({max(r["peak_in_flight"]) for r in wide})
    polls = sorted({max(r["pollers"]) for r in wide})
    warned = any(r["sequential_warning"] for r in wide)
    if max(peaks) <= 1:
        return (f"**Sequential binary**: given up to {wide[0]['shape']['concurrency']} invocations at once, no process "
                f"ever had more than {max(peaks)} in flight, and each held {max(polls)} `/next` poll open when idle"
                + (" (and the runtime logged that AWS_LAMBDA_MAX_CONCURRENCY is set but it runs sequentially)"
                   if warned else "")
                + ": the C > 1 shape ran as that many processes at concurrency 1.")
    return (f"Concurrent binary: processes given C > 1 had up to {max(peaks)} invocations in flight at once, and "
            f"held up to {max(polls)} `/next` polls open when idle (their pollers).")


def goal_lines(results: list[dict], checks: dict) -> list[str]:
    by_name = {r["scenario"]: r for r in results}
    lines = []
    a_hot, b_hot, b_spread = by_name.get("a-hot"), by_name.get("b-hot"), by_name.get("b-spread")
    if a_hot and b_hot:
        ratio = b_hot["allocations_per_s"] / a_hot["allocations_per_s"] if a_hot["allocations_per_s"] else float("inf")
        lines.append(f"| b hot ≥ 5 × a hot (allocations/s) | {rate(b_hot['allocations_per_s'])} vs "
                     f"{rate(a_hot['allocations_per_s'])} (**{ratio:.1f}×**) | {'yes' if ratio >= 5 else 'no'} |")
    if b_hot and b_spread:
        share = b_hot["allocations_per_s"] / b_spread["allocations_per_s"] if b_spread["allocations_per_s"] else 0
        lines.append(f"| b hot ≥ 80 % of b spread | {rate(b_hot['allocations_per_s'])} vs "
                     f"{rate(b_spread['allocations_per_s'])} (**{share:.0%}**) | {'yes' if share >= 0.8 else 'no'} |")
    wide = [r for r in results if r["shape"]["label"] == "b"]
    if wide:
        count_503 = sum(r["statuses"].get("503", 0) for r in wide)
        narrow = sum(r["statuses"].get("503", 0) for r in results if r["shape"]["label"] != "b")
        lines.append(f"| no 503 in shape b | {count_503} in its windows (shape a: {narrow}) "
                     f"| {'yes' if count_503 == 0 else 'no'} |")
    if checks:
        ok = all(c["ok"] for c in checks.values())
        lines.append(f"| no oversell | {sum(c['answered_201'] for c in checks.values())} allocations checked "
                     f"| {'yes' if ok else 'no'} |")
    return lines


# ----------------------------------------------------------------------------- main


def progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def parse_shape(label: str, text: str) -> Shape:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected PROCESSESxCONCURRENCY, e.g. 2x32")
    return Shape(label, int(match[1]), int(match[2]))


def plan_scenarios(args: argparse.Namespace, run_id: str) -> list[Scenario]:
    """Each scenario its own SKUs (and batches), so none starts on another's state."""
    shapes = {"a": parse_shape("a", args.shape_a), "b": parse_shape("b", args.shape_b)}
    scenarios = []
    for name in args.scenarios.split(","):
        shape_label, _, kind = name.strip().partition("-")
        if shape_label not in shapes or kind not in ("hot", "spread"):
            raise SystemExit(f"unknown scenario {name!r}: use a-hot, a-spread, b-hot, b-spread")
        count = 1 if kind == "hot" else args.skus
        skus = [f"{kind.upper()}-{run_id}-{shape_label}-{i:03d}" for i in range(count)]
        refs = [f"batch-{sku}" for sku in skus]
        scenarios.append(Scenario(name.strip(), shapes[shape_label], skus, refs))
    return scenarios


async def start_proxy(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, int]:
    upstream = args.dynamodb_endpoint.split("://", 1)[-1].rstrip("/")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "proxy", "--upstream", upstream,
        "--template", args.template, stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    if not line.startswith("listening "):
        raise RuntimeError(f"the counting proxy did not start: {line!r}")
    return process, int(line.split()[1])


def create_table(client, template: dict, table_name: str) -> None:
    request, ttl = create_table_request(template, table_name)
    client.create_table(**request)
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    if ttl:
        client.update_time_to_live(**ttl)


def dynamodb_client(endpoint: str):
    import boto3
    from botocore.config import Config
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="AKIASTANDIN",
                        aws_secret_access_key="standin", config=Config(max_pool_connections=8))


def snapshot_binaries(args: argparse.Namespace, work_dir: Path) -> None:
    """Copies the binaries into the run's directory: a rebuild during the run changes nothing."""
    source = Path(args.bin_dir)
    target = work_dir / "bin"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("allocate", "add_batch"):
        if not (source / name).is_file():
            raise SystemExit(f"{source / name} is missing")
        shutil.copy2(source / name, target / name)
    args.bin_dir_original, args.bin_dir = str(source), str(target)


async def run_main(args: argparse.Namespace) -> None:
    # SIGTERM (the shell script's trap) unwinds like Ctrl-C: every process is stopped on the way out.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    run_id = args.run_id or os.urandom(3).hex()
    work_dir = Path(args.work_dir or REPO / "target" / "lambda-standin" / run_id).resolve()
    (work_dir / "logs").mkdir(parents=True, exist_ok=True)
    snapshot_binaries(args, work_dir)
    try:
        await measure(args, run_id, work_dir)
    finally:
        # The copies were only for the run (90 MB a debug pair); the report names their digest.
        shutil.rmtree(work_dir / "bin", ignore_errors=True)


async def measure(args: argparse.Namespace, run_id: str, work_dir: Path) -> None:
    """The table, the proxy, the batches, each scenario, the check, the report."""
    template = load_template(Path(args.template))
    conditions = {"date": datetime.date.today().isoformat(), "load_before": machine_conditions()["load"],
                  "commit": git_commit(), "allocate": binary_fingerprint(Path(args.bin_dir) / "allocate"),
                  **machine_conditions()}
    client = dynamodb_client(args.dynamodb_endpoint)
    table_name = args.table or f"allocation-standin-{run_id}"
    progress(f"creating table {table_name} from {args.template}")
    create_table(client, template, table_name)
    proxy, proxy_port = (None, None) if args.no_proxy else await start_proxy(args)
    endpoint = f"http://127.0.0.1:{proxy_port}" if proxy_port else args.dynamodb_endpoint
    context = RunContext(args, run_id, table_name, endpoint, work_dir / "logs",
                         FunctionSettings.of(template, args.log_level), EventFactory(REPO / "events"),
                         proxy_port, proxy.pid if proxy else None)
    scenarios = plan_scenarios(args, run_id)
    results, checks = [], {}
    try:
        progress(f"adding {sum(len(s.skus) for s in scenarios)} batches of {args.batch_qty} through add_batch")
        await add_batches(context, scenarios)
        for scenario in scenarios:
            result = await run_scenario(context, scenario)
            progress(f"[{scenario.name}] {result['allocations_per_s']:.0f} allocations/s, p50 {result['p50_ms']:.1f} ms, "
                     f"p99 {result['p99_ms']:.1f} ms, statuses {result['statuses']}, "
                     f"max in flight per process {max(result['peak_in_flight'])}")
            results.append(result)
    finally:
        if proxy:
            proxy.terminate()
            await proxy.wait()
    conditions["load_after"] = machine_conditions()["load"]
    for scenario, result in zip(scenarios, results):
        progress(f"[{scenario.name}] checking {len(result['answers'])} answers against the table")
        checks[scenario.name] = check_no_oversell(client, table_name, scenario, result["answers"])
    report = render_report(context, results, checks, conditions)
    Path(args.out or work_dir / "report.md").write_text(report)
    raw = [{k: v for k, v in r.items() if k != "answers"} for r in results]
    (work_dir / "results.json").write_text(json.dumps({"conditions": conditions, "results": raw, "checks": checks},
                                                      indent=1))
    print(report)
    progress(f"report: {args.out or work_dir / 'report.md'}; raw figures and logs: {work_dir}")
    if not all(c["ok"] for c in checks.values()):
        sys.exit(2)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the measurement")
    run.add_argument("--bin-dir", required=True, help="where the allocate and add_batch binaries are")
    run.add_argument("--profile", default="release", help="the binaries' cargo profile, for the report")
    run.add_argument("--label", help="what the binaries are, for the report (default: their directory)")
    run.add_argument("--dynamodb-endpoint", required=True, help="DynamoDB Local, e.g. http://127.0.0.1:8000")
    run.add_argument("--dynamodb-pid", type=int, help="DynamoDB Local's process id (for its CPU time)")
    run.add_argument("--dynamodb-version", help="DynamoDB Local's version, for the report")
    run.add_argument("--template", default=str(REPO / "template.yaml"))
    run.add_argument("--table", help="table name (default: one per run)")
    run.add_argument("--scenarios", default="a-hot,a-spread,b-hot,b-spread")
    run.add_argument("--shape-a", default="16x1", help="shape a: PROCESSESxCONCURRENCY (default 16x1)")
    run.add_argument("--shape-b", default="2x32", help="shape b: PROCESSESxCONCURRENCY (default 2x32)")
    run.add_argument("--clients", type=int, default=64)
    run.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    run.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the window")
    run.add_argument("--skus", type=int, default=200, help="SKUs of the spread scenarios")
    run.add_argument("--batch-qty", type=int, default=10_000_000, help="each batch's quantity (never runs out)")
    run.add_argument("--log-level", help="the functions' log level (default: the template's LogLevel default)")
    run.add_argument("--no-proxy", action="store_true", help="the functions talk to DynamoDB Local directly")
    run.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    run.add_argument("--run-id", help="names the table, SKUs and work directory (default: random)")
    run.add_argument("--work-dir", help="logs, binaries and raw figures (default: target/lambda-standin/<run id>)")
    run.add_argument("--out", help="the markdown report (default: <work dir>/report.md)")
    proxy = commands.add_parser("proxy", help="the counting proxy alone")
    proxy.add_argument("--upstream", required=True, help="DynamoDB Local's host:port")
    proxy.add_argument("--template", default=str(REPO / "template.yaml"))
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(run_main(args) if args.command == "run" else proxy_main(args))
    except RuntimeError as error:
        # A run that cannot go on (a process that does not start, add_batch refused): the message
        # says what and where its log is; a traceback would only hide it.
        sys.exit(f"lambda-standin: ERROR: {error}")
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("lambda-standin: interrupted; every process it started is stopped")


if __name__ == "__main__":
    main()
