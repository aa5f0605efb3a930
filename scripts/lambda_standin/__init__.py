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

The parts, one job each: `template` (what is read from template.yaml), `http11` (the HTTP/1.1
framing both servers speak), `runtime_api` (the Runtime API stand-in and the function processes),
`pricing` (DynamoDB's sizing rules), `proxy` (the counting proxy), `load` (the events and the load
driver), `oversell` (the read-back check), `report` (the markdown report), `cli` (the commands).
`scripts/lambda-standin.py` is the entry; `python -m lambda_standin` with `scripts/` on the path
is the same.

`scripts/measure-lambda-concurrency.sh` starts DynamoDB Local and runs `run` with the right
arguments. Needs boto3 and PyYAML (the repository's `.venv` has both).
"""
