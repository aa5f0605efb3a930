"""The oversell check: every SKU of a scenario read back from the table with boto3 after the run and
compared with the answers the clients got."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from .load import Scenario


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
