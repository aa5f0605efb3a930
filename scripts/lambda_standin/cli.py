"""The command line: `run` (the table, the proxy, the batches, each scenario, the check, the report)
and `proxy` (the counting proxy alone, which `run` starts as a process of its own)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lambda_standin

from .load import EventFactory, RunContext, Scenario, Shape, add_batches, progress, run_scenario
from .oversell import check_no_oversell
from .proxy import proxy_main
from .report import binary_fingerprint, machine_conditions, render_report
from .runtime_api import REGION, die_with_parent
from .template import FunctionSettings, create_table, load_template

REPO = Path(__file__).resolve().parent.parent.parent
# What `run` starts the counting proxy with: this program's entry.
ENTRY = REPO / "scripts" / "lambda-standin.py"


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
        sys.executable, str(ENTRY), "proxy", "--upstream", upstream,
        "--template", args.template, stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    if not line.startswith("listening "):
        raise RuntimeError(f"the counting proxy did not start: {line!r}")
    return process, int(line.split()[1])


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
    parser = argparse.ArgumentParser(description=lambda_standin.__doc__.split("\n\n")[0],
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
