"""The markdown report of a run: the machine, each scenario's throughput, latency, DynamoDB figures
and CPU, the oversell check, whether the binary ran invocations at once, and the goals."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
from pathlib import Path

from .load import RunContext


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
