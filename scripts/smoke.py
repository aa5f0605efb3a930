#!/usr/bin/env python3
"""Runs the book's flow against a deployed allocation API, with authenticated requests.

usage: smoke.py API_URL [--region REGION] [--token TOKEN] [--wait SECONDS] [--interval SECONDS]

API_URL is the stack's ApiUrl output. By default every request is signed with SigV4 for the
service execute-api (AuthMode IAM), with the credentials botocore finds (environment, profile,
SSO, ...); the caller needs both the stack's ApiWritePolicyArn and ApiReadPolicyArn. With
--token (or ALLOCATION_API_TOKEN), requests carry `Authorization: Bearer TOKEN` instead
(AuthMode JWT; the token needs the scopes allocation/write and allocation/read).
The region comes from the API URL (https://ID.execute-api.REGION.amazonaws.com/), else
--region, AWS_REGION or AWS_DEFAULT_REGION.

Every run uses its own SKU, batch references and order ids, so runs never collide and can be
repeated; they leave their few items in the table. Steps: an unauthenticated request is refused;
two batches are added (one in stock, one arriving later) and a duplicate is refused (409); an
order line is allocated to the in-stock batch, twice (same answer), and read back; the in-stock
batch is shrunk so the line is reallocated to the later batch through the events topic and the
reallocation queue (read back until it shows, at most --wait seconds); a line larger than the
stock answers 409 "Out of stock"; an unknown SKU 400, an unknown order and an unknown batch 404.
Answered 503 (contention), a request is retried after its Retry-After.

Exit status: 0 when every step passed, 1 at the first step that did not (named, with the
answer), 2 on bad usage or missing credentials.

scripts/smoke.sh runs this with the tools venv's python (botocore comes with it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

SERVICE = "execute-api"
USER_AGENT = "allocation-smoke/1"


class SmokeFailure(Exception):
    """A step whose answer is not the documented one."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: object  # the decoded JSON, or the raw text when it is not JSON


def region_of(api_url: str) -> str | None:
    """The region in an execute-api URL, else None."""
    host = urllib.parse.urlsplit(api_url).hostname or ""
    match = re.fullmatch(r"[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?", host)
    return match.group(1) if match else None


def signed_headers(
    method: str, url: str, headers: dict[str, str], body: bytes, credentials, region: str
) -> dict[str, str]:
    """The request's headers plus SigV4 ones (Authorization, X-Amz-Date, and
    X-Amz-Security-Token for temporary credentials) for service execute-api in `region`,
    computed by botocore's signer from `credentials` (a botocore Credentials)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


class Api:
    """Requests to the API: signed (SigV4) when it has credentials, bearer when it has a token."""

    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        credentials=None,
        token: str | None = None,
        timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.token = token
        self.timeout = timeout

    def prepare(self, method: str, path: str, payload=None, *, authenticate: bool = True):
        """(url, headers, body) of a request, authenticated unless `authenticate` is False."""
        url = self.base_url + path
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"user-agent": USER_AGENT}
        if payload is not None:
            headers["content-type"] = "application/json"
        if authenticate and self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        elif authenticate:
            if self.credentials is None or self.region is None:
                raise ValueError("signing needs credentials and a region")
            headers = signed_headers(method, url, headers, body, self.credentials, self.region)
        return url, headers, body

    def call(
        self,
        method: str,
        path: str,
        payload=None,
        *,
        authenticate: bool = True,
        retries_on_503: int = 3,
    ) -> Answer:
        for attempt in range(retries_on_503 + 1):
            # Signed afresh each time: a signature is valid for a few minutes only.
            url, headers, body = self.prepare(method, path, payload, authenticate=authenticate)
            request = urllib.request.Request(
                url, data=body if payload is not None else None, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = Answer(
                        response.status, dict(response.headers.items()), response.read()
                    )
            except urllib.error.HTTPError as error:
                answer = Answer(error.code, dict(error.headers.items()), error.read())
            try:
                answer.body = json.loads(answer.body) if answer.body else None
            except ValueError:
                answer.body = answer.body.decode(errors="replace")
            if answer.status != 503 or attempt == retries_on_503:
                return answer
            delay = answer.headers.get("Retry-After") or answer.headers.get("retry-after") or "1"
            time.sleep(min(float(delay) if delay.replace(".", "", 1).isdigit() else 1.0, 5.0))
        raise AssertionError("unreachable")


def expect(step: str, answer: Answer, status, body=None) -> None:
    """Fails `step` unless the answer has the status (one or a tuple) and, if given, the body."""
    statuses = status if isinstance(status, tuple) else (status,)
    if answer.status not in statuses or (body is not None and answer.body != body):
        wanted = " or ".join(str(s) for s in statuses)
        if body is not None:
            wanted += f" {json.dumps(body)}"
        raise SmokeFailure(
            f"{step}: expected {wanted}, got {answer.status} {json.dumps(answer.body)}"
        )


def eventually(step: str, read, done, wait: float, interval: float = 1.0) -> Answer:
    """Calls `read` until `done(answer)`, for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        answer = read()
        if done(answer):
            return answer
        if time.monotonic() >= deadline:
            raise SmokeFailure(
                f"{step}: not seen within {wait:g} s; last answer {answer.status} "
                f"{json.dumps(answer.body)}"
            )
        time.sleep(interval)


def run_flow(api: Api, *, run_id: str, wait: float, interval: float = 1.0, log=print) -> None:
    """The book's flow; raises SmokeFailure at the first step whose answer is not documented."""
    sku = f"SMOKE-{run_id}"
    in_stock = f"smoke-{run_id}-in-stock"
    shipment = f"smoke-{run_id}-shipment"
    order = f"smoke-{run_id}-order-1"
    big_order = f"smoke-{run_id}-order-2"
    eta = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    line_path = f"/allocations/{urllib.parse.quote(order, safe='')}"

    def step(name: str) -> str:
        log(f"smoke: {name}")
        return name

    name = step("an unauthenticated request is refused")
    answer = api.call(
        "POST", "/allocate", {"orderid": order, "sku": sku, "qty": 1}, authenticate=False
    )
    expect(name, answer, (401, 403))

    name = step(f"add batch {in_stock} (20 in stock)")
    expect(
        name,
        api.call("POST", "/add_batch", {"ref": in_stock, "sku": sku, "qty": 20, "eta": None}),
        201,
    )
    name = step(f"add batch {shipment} (100 arriving {eta})")
    expect(
        name,
        api.call("POST", "/add_batch", {"ref": shipment, "sku": sku, "qty": 100, "eta": eta}),
        201,
    )
    name = step("the same batch reference again answers 409")
    expect(
        name,
        api.call("POST", "/add_batch", {"ref": in_stock, "sku": sku, "qty": 1, "eta": None}),
        409,
        {"message": f"Batch {in_stock} already exists"},
    )

    name = step(f"allocate {order} (15): the in-stock batch")
    expect(
        name,
        api.call("POST", "/allocate", {"orderid": order, "sku": sku, "qty": 15}),
        201,
        {"batchref": in_stock},
    )
    name = step(f"allocate {order} again: same batch, nothing changes")
    expect(
        name,
        api.call("POST", "/allocate", {"orderid": order, "sku": sku, "qty": 15}),
        201,
        {"batchref": in_stock},
    )
    name = step(f"read {order}")
    expected = [{"sku": sku, "batchref": in_stock}]
    eventually(
        name,
        lambda: api.call("GET", line_path),
        lambda a: a.status == 200 and a.body == expected,
        wait,
        interval,
    )

    name = step(f"shrink {in_stock} to 10: {order} no longer fits")
    expect(name, api.call("POST", "/change_batch_quantity", {"ref": in_stock, "qty": 10}), 200)
    name = step(f"read {order} until it is reallocated to {shipment}")
    expected = [{"sku": sku, "batchref": shipment}]
    eventually(
        name,
        lambda: api.call("GET", line_path),
        lambda a: a.status == 200 and a.body == expected,
        wait,
        interval,
    )

    name = step(f"allocate {big_order} (500): out of stock answers 409")
    expect(
        name,
        api.call("POST", "/allocate", {"orderid": big_order, "sku": sku, "qty": 500}),
        409,
        {"message": f"Out of stock for sku {sku}"},
    )
    name = step("an unknown SKU answers 400")
    expect(
        name,
        api.call("POST", "/allocate", {"orderid": big_order, "sku": f"{sku}-NONE", "qty": 1}),
        400,
        {"message": f"Invalid sku {sku}-NONE"},
    )
    name = step("an order without lines answers 404")
    expect(
        name,
        api.call("GET", f"/allocations/smoke-{run_id}-no-such-order"),
        404,
        {"message": "not found"},
    )
    name = step("an unknown batch answers 404")
    unknown = f"smoke-{run_id}-no-such-batch"
    expect(
        name,
        api.call("POST", "/change_batch_quantity", {"ref": unknown, "qty": 1}),
        404,
        {"message": f"Unknown batch {unknown}"},
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smoke.py",
        description=__doc__.split("\n\n")[0],
        epilog="Details: docs/deploy.md (Smoke test).",
    )
    parser.add_argument("api_url", help="the stack's ApiUrl output")
    parser.add_argument(
        "--region", help="region to sign for (default: from the URL, then AWS_REGION)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("ALLOCATION_API_TOKEN"),
        help="bearer token (AuthMode JWT) instead of SigV4",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for eventually consistent reads (default 60)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between two such reads (default 1)"
    )
    args = parser.parse_args(argv)

    region = (
        args.region
        or region_of(args.api_url)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    credentials = None
    if args.token is None:
        if region is None:
            print("smoke: no region (give --region or AWS_REGION)", file=sys.stderr)
            return 2
        import botocore.session

        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            print("smoke: no AWS credentials found (environment, profile or SSO)", file=sys.stderr)
            return 2
        credentials = credentials.get_frozen_credentials()

    api = Api(args.api_url, region=region, credentials=credentials, token=args.token)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    mode = "bearer token" if args.token is not None else f"SigV4 ({SERVICE}, {region})"
    print(f"smoke: {args.api_url} run {run_id}, {mode}")
    try:
        run_flow(api, run_id=run_id, wait=args.wait, interval=args.interval)
    except SmokeFailure as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        print(f"smoke: FAILED: cannot reach {args.api_url}: {error}", file=sys.stderr)
        return 1
    print("smoke: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
