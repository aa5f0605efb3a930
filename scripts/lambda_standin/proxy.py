"""The counting proxy: an HTTP proxy between the function binaries and DynamoDB Local that counts,
per request, the operation, its status, cancelled transactions and their reasons, and the items
read and written, priced in capacity units (pricing). It runs as a process of its own (`proxy`),
so that it has a core of its own to compete for; its counters are read over HTTP
(PROXY_STATS_PATH)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import signal
import time
from pathlib import Path

from .http11 import STREAM_LIMIT, ConnectionClosed, Message, encode_message, encode_response, read_message
from .pricing import item_size, read_units, standard_write_units
from .template import TableShape, load_template


PROXY_STATS_PATH = "/_standin/stats"


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
