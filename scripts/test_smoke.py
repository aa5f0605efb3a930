#!/usr/bin/env python3
"""Tests of scripts/smoke.py and smoke.sh that need no AWS account: the requests are SigV4-signed
for execute-api (checked by an independent implementation of the signature), and the whole flow
passes against a local stand-in of the API (127.0.0.1, a free port) that answers as
docs/openapi.yaml documents and refuses requests whose signature does not verify, and fails
when an answer is wrong.

usage: .venv/bin/python scripts/test_smoke.py [-v]      (the tools venv: botocore)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import subprocess
import sys
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import smoke  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "session-token-example"
REGION = "eu-west-3"

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def sigv4_signature(
    secret: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
    amz_date: str,
    region: str,
    service: str,
) -> str:
    """The SigV4 signature of a request, written from the specification (not botocore's code)."""
    lower = {k.lower(): v for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{' '.join(lower[name].split())}\n" for name in signed)
    canonical_request = "\n".join(
        [
            method,
            urllib.parse.quote(path, safe="/~"),
            query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify(method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> str | None:
    """None when the request carries a valid SigV4 signature by ACCESS_KEY/SECRET_KEY for
    execute-api in REGION; else what is wrong."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = AUTHORIZATION.fullmatch(lower.get("authorization", ""))
    if match is None:
        return "no SigV4 Authorization header"
    if (match["key"], match["region"], match["service"]) != (ACCESS_KEY, REGION, "execute-api"):
        return f"wrong credential scope {match.group(0)}"
    signed = match["signed"].split(";")
    for needed in ("host", "x-amz-date"):
        if needed not in signed:
            return f"{needed} is not signed"
    if lower.get("x-amz-security-token") != SESSION_TOKEN or "x-amz-security-token" not in signed:
        return "the session token is missing or not signed"
    if "content-type" in lower and "content-type" not in signed:
        return "content-type is not signed"
    expected = sigv4_signature(
        SECRET_KEY,
        method,
        path,
        query,
        lower,
        signed,
        body,
        lower["x-amz-date"],
        REGION,
        "execute-api",
    )
    return None if hmac.compare_digest(expected, match["signature"]) else "signature mismatch"


class FakeAllocationApi:
    """Just enough of the deployed API: IAM authorization (403 without a valid signature) and
    the four routes with the rules and messages of docs/openapi.yaml. A shrink's lines are
    reallocated one read later, as the queue does it some time after the answer.
    `bugs` names deliberate departures from the contract."""

    def __init__(self, bugs: frozenset[str] = frozenset()):
        self.bugs = bugs
        self.batches: dict[str, dict] = {}  # ref -> {sku, qty, eta}
        self.lines: dict[tuple[str, str], tuple[str, int]] = {}  # (orderid, sku) -> (ref, qty)
        self.pending: list[tuple[str, str, int]] = []  # deallocated (orderid, sku, qty)
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def available(self, ref: str) -> int:
        used = sum(q for (_, _), (r, q) in self.lines.items() if r == ref)
        return self.batches[ref]["qty"] - used

    def allocate(self, orderid: str, sku: str, qty: int) -> str | None:
        if (orderid, sku) in self.lines:
            return self.lines[(orderid, sku)][0]
        candidates = sorted(
            (b["eta"] is not None, b["eta"] or "", ref)
            for ref, b in self.batches.items()
            if b["sku"] == sku
        )
        for _, _, ref in candidates:
            if self.available(ref) >= qty:
                self.lines[(orderid, sku)] = (ref, qty)
                return ref
        return None

    def handle(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, object]:
        problem = verify(method, path, "", headers, body)
        self.requests.append(
            {
                "method": method,
                "path": path,
                "verified": problem is None,
                "authorization": headers.get("Authorization", ""),
            }
        )
        if problem is not None and "accept-unsigned" not in self.bugs:
            return 403, {"message": "Forbidden"}
        data = json.loads(body) if body else None
        if method == "POST" and path == "/add_batch":
            if data["ref"] in self.batches:
                return 409, {"message": f"Batch {data['ref']} already exists"}
            self.batches[data["ref"]] = {"sku": data["sku"], "qty": data["qty"], "eta": data["eta"]}
            return 201, {"message": "OK"}
        if method == "POST" and path == "/allocate":
            if not any(b["sku"] == data["sku"] for b in self.batches.values()):
                return 400, {"message": f"Invalid sku {data['sku']}"}
            ref = self.allocate(data["orderid"], data["sku"], data["qty"])
            if ref is None:
                if "out-of-stock-is-201" in self.bugs:
                    return 201, {"batchref": None}
                return 409, {"message": f"Out of stock for sku {data['sku']}"}
            return 201, {"batchref": ref}
        if method == "POST" and path == "/change_batch_quantity":
            batch = self.batches.get(data["ref"])
            if batch is None:
                return 404, {"message": f"Unknown batch {data['ref']}"}
            batch["qty"] = data["qty"]
            held = sorted(
                (o for (o, s), (r, q) in self.lines.items() if r == data["ref"]), reverse=True
            )
            for orderid in held:
                if self.available(data["ref"]) >= 0:
                    break
                _, qty = self.lines.pop((orderid, batch["sku"]))
                self.pending.append((orderid, batch["sku"], qty))
            return 200, {"message": "OK"}
        if method == "GET" and path.startswith("/allocations/"):
            orderid = urllib.parse.unquote(path[len("/allocations/") :])
            found = [
                {"sku": s, "batchref": r} for (o, s), (r, _) in self.lines.items() if o == orderid
            ]
            if "never-reallocate" not in self.bugs:
                for line in self.pending:
                    self.allocate(*line)
                self.pending.clear()
            return (200, found) if found else (404, {"message": "not found"})
        return 404, {"message": "Not Found"}


@contextlib.contextmanager
def serving(api: FakeAllocationApi):
    """The fake on 127.0.0.1, a free port; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with api.lock:
                status, payload = api.handle(
                    self.command, self.path, dict(self.headers.items()), body
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def hermetic_credentials():
    """Only the test's credentials are visible to botocore (no profile, no instance metadata)."""
    with mock.patch.dict(
        os.environ,
        {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    ):
        os.environ.pop("AWS_PROFILE", None)  # restored by patch.dict
        yield


def run_smoke(url: str, *extra: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with hermetic_credentials(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = smoke.main([url, "--region", REGION, "--wait", "1", "--interval", "0.05", *extra])
    return code, out.getvalue() + err.getvalue()


class Signing(unittest.TestCase):
    def setUp(self):
        self.credentials = Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
        self.api = smoke.Api(
            "https://abc123.execute-api.eu-west-3.amazonaws.com/",
            region=REGION,
            credentials=self.credentials,
        )

    def test_a_request_is_signed_for_execute_api_in_the_region(self):
        payload = {"orderid": "o1", "sku": "LAMP", "qty": 2}
        url, headers, body = self.api.prepare("POST", "/allocate", payload)
        self.assertEqual(url, "https://abc123.execute-api.eu-west-3.amazonaws.com/allocate")
        self.assertEqual(json.loads(body), payload)
        match = AUTHORIZATION.fullmatch(headers["Authorization"])
        self.assertIsNotNone(match, headers["Authorization"])
        self.assertEqual(match["key"], ACCESS_KEY)
        self.assertEqual(match["region"], REGION)
        self.assertEqual(match["service"], "execute-api")
        self.assertEqual(match["date"], headers["X-Amz-Date"][:8])
        self.assertEqual(headers["X-Amz-Security-Token"], SESSION_TOKEN)
        self.assertEqual(
            set(match["signed"].split(";")),
            {"content-type", "host", "x-amz-date", "x-amz-security-token"},
        )
        # The signature is the one the specification gives for these credentials.
        headers = {**headers, "host": "abc123.execute-api.eu-west-3.amazonaws.com"}
        self.assertIsNone(verify("POST", "/allocate", "", headers, body))

    def test_the_signature_depends_on_the_secret_and_the_body(self):
        _, headers, body = self.api.prepare(
            "POST", "/allocate", {"orderid": "o1", "sku": "S", "qty": 1}
        )
        headers = {**headers, "host": "abc123.execute-api.eu-west-3.amazonaws.com"}
        self.assertEqual(
            verify("POST", "/allocate", "", headers, body + b" "), "signature mismatch"
        )
        other = smoke.Api(
            "https://abc123.execute-api.eu-west-3.amazonaws.com/",
            region=REGION,
            credentials=Credentials(ACCESS_KEY, "another-secret", SESSION_TOKEN),
        )
        _, headers, body = other.prepare(
            "POST", "/allocate", {"orderid": "o1", "sku": "S", "qty": 1}
        )
        headers = {**headers, "host": "abc123.execute-api.eu-west-3.amazonaws.com"}
        self.assertEqual(verify("POST", "/allocate", "", headers, body), "signature mismatch")

    def test_a_get_is_signed_without_a_body(self):
        url, headers, body = self.api.prepare("GET", "/allocations/o1")
        self.assertEqual(body, b"")
        self.assertNotIn("content-type", {k.lower() for k in headers})
        headers = {**headers, "host": "abc123.execute-api.eu-west-3.amazonaws.com"}
        self.assertIsNone(verify("GET", "/allocations/o1", "", headers, body))

    def test_an_unauthenticated_request_has_no_authorization(self):
        _, headers, _ = self.api.prepare("POST", "/allocate", {"qty": 1}, authenticate=False)
        self.assertNotIn("authorization", {k.lower() for k in headers})

    def test_a_token_replaces_the_signature(self):
        api = smoke.Api("https://abc123.execute-api.eu-west-3.amazonaws.com", token="tok")
        _, headers, _ = api.prepare("GET", "/allocations/o1")
        self.assertEqual(headers["authorization"], "Bearer tok")
        self.assertNotIn("x-amz-date", {k.lower() for k in headers})

    def test_the_region_comes_from_the_api_url(self):
        self.assertEqual(
            smoke.region_of("https://a1b2c3.execute-api.eu-west-3.amazonaws.com/"), "eu-west-3"
        )
        self.assertEqual(
            smoke.region_of("https://a1.execute-api.cn-north-1.amazonaws.com.cn/"), "cn-north-1"
        )
        self.assertIsNone(smoke.region_of("http://127.0.0.1:5005/"))


class Flow(unittest.TestCase):
    def test_the_flow_passes_against_an_api_that_answers_as_documented(self):
        api = FakeAllocationApi()
        with serving(api) as url:
            code, output = run_smoke(url)
        self.assertEqual(code, 0, output)
        self.assertIn("smoke: all steps passed", output)
        # The first request is the deliberately unauthenticated one; every other was signed
        # and verified, and the line was read again until its reallocation showed.
        self.assertFalse(api.requests[0]["verified"])
        self.assertTrue(all(r["verified"] for r in api.requests[1:]), api.requests)
        reads = [r for r in api.requests if r["method"] == "GET"]
        self.assertGreaterEqual(len(reads), 4, reads)
        # Each run uses its own identifiers.
        api2 = FakeAllocationApi()
        with serving(api2) as url:
            self.assertEqual(run_smoke(url)[0], 0)
        self.assertTrue(set(api.batches).isdisjoint(api2.batches))

    def test_the_flow_fails_when_out_of_stock_is_not_409(self):
        with serving(FakeAllocationApi(frozenset({"out-of-stock-is-201"}))) as url:
            code, output = run_smoke(url)
        self.assertEqual(code, 1, output)
        self.assertRegex(
            output,
            r"FAILED: allocate smoke-\S+-order-2 \(500\): out of stock answers 409: "
            r"expected 409 .*Out of stock.*, got 201",
        )

    def test_the_flow_fails_when_the_api_accepts_unsigned_requests(self):
        with serving(FakeAllocationApi(frozenset({"accept-unsigned"}))) as url:
            code, output = run_smoke(url)
        self.assertEqual(code, 1, output)
        self.assertIn("FAILED: an unauthenticated request is refused: expected 401 or 403", output)

    def test_the_flow_fails_when_the_line_is_never_reallocated(self):
        with serving(FakeAllocationApi(frozenset({"never-reallocate"}))) as url:
            code, output = run_smoke(url)
        self.assertEqual(code, 1, output)
        self.assertRegex(
            output,
            r"until it is reallocated to smoke-\S+-shipment: not seen within 1 s; "
            r'last answer 404 \{"message": "not found"\}',
        )

    def test_smoke_sh_runs_the_flow_with_the_tools_venv(self):
        api = FakeAllocationApi()
        with serving(api) as url, hermetic_credentials():
            result = subprocess.run(
                [
                    "bash",
                    str(SCRIPTS / "smoke.sh"),
                    url,
                    "--region",
                    REGION,
                    "--wait",
                    "1",
                    "--interval",
                    "0.05",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                env=dict(os.environ),
            )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("smoke: all steps passed", result.stdout)
        self.assertTrue(all(r["verified"] for r in api.requests[1:]), api.requests)
        usage = subprocess.run(["bash", str(SCRIPTS / "smoke.sh")], capture_output=True, text=True)
        self.assertEqual(usage.returncode, 2)
        self.assertIn("usage: scripts/smoke.sh API_URL", usage.stderr)

    def test_a_signature_the_api_rejects_fails_the_flow(self):
        api = FakeAllocationApi()
        with serving(api) as url, mock.patch.object(smoke, "SERVICE", "execute-apx"):
            code, output = run_smoke(url)
        self.assertEqual(code, 1, output)
        self.assertIn("add batch", output)
        self.assertIn('got 403 {"message": "Forbidden"}', output)


if __name__ == "__main__":
    unittest.main()
