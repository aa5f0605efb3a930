"""The Runtime API stand-in: each function process started as Lambda starts a `provided.al2023`
bootstrap, with its own Runtime API endpoint (`/next`, the invocation's response and error, init
error), handed at most C invocations at once (Lambda Managed Instances' concurrency); a fleet of
such processes for one function, and what API Gateway answers of a function's response."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .http11 import STREAM_LIMIT, ConnectionClosed, Message, encode_response, read_message
from .template import FunctionSettings

if TYPE_CHECKING:
    from .load import RunContext

# What the stand-in says it is, in the environment and the ARNs it hands out.
REGION = "us-east-1"
ACCOUNT = "123456789012"


# How long a process may take from spawn to its first /next poll.
INIT_TIMEOUT_S = 60.0


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
