"""The load: API Gateway HTTP API events made from the repository's sample events, the batches added
through the real add_batch binary, and one scenario's clients driving `POST /allocate` through a
warm-up and a measured window, with the DynamoDB counters and CPU clocks read at both ends."""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import copy
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from .http11 import http_get_json
from .proxy import PROXY_STATS_PATH, subtract
from .runtime_api import Answer, Fleet
from .template import FunctionSettings


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


def progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)
