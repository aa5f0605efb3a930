#!/usr/bin/env python3
"""Checks the SAM template offline: lints it as written, expands the SAM transform, lints the
expansion, and applies the project's rules to the expansion.

usage: check_template.py [--rules-only] [TEMPLATE]   (default: template.yaml at the repo root)

--rules-only skips both cfn-lint passes: only the SAM transform and the project rules run (a
second instead of five; for iterating on the template and for the rules' own tests,
scripts/test_check_template.py).

Run it with the tools venv's python (scripts/tools-venv.sh makes it), e.g.
    .venv/bin/python scripts/check_template.py

Why expand: cfn-lint on the SAM template does not see inside AWS::Serverless::Function
(a broken !Ref in a function's Environment or event passes). The template is expanded as
CloudFormation does: the AWS::LanguageExtensions transform first (its Fn::ForEach loops and
lookups: template_check/language_extensions.py), then the SAM transform with samtranslator,
with every CodeUri replaced by an s3:// placeholder and a managed-policy loader that makes no
IAM call; the plain CloudFormation result is linted and checked.

The parts, one job each (scripts/template_check/): expansion (reading and expanding),
language_extensions, compute (the compute choices), values (reading a template's values), rules
(the project's rules), lint (cfn-lint and the findings set aside), compare (two templates'
expansions, resource by resource).

Both cfn-lint passes run cfn-lint's own rules and the serverless rules of cfn-lint-serverless
(AWS's serverless-rules: ES... ids fail the check, WS... warn). A few of those do not apply to
this template; each is set aside for exactly the resources that LINT_EXCEPTIONS
(template_check/lint.py) names, with the reason, and each pass prints a `set aside` line for it.

Then the project's own rules run on the expansion (what CloudFormation deploys); each finding
names its rule and the resource, e.g. `ERROR [auth] AllocateRoute: ...`. A value under Fn::If
counts with both branches: a rule must hold whatever the parameters.
  auth                every API route has an authorizer: an AWS::ApiGatewayV2::Route whose
                      AuthorizationType is NONE or missing, a route of an inline OpenAPI body
                      (SAM's HttpApi and Api events) without a security requirement, a REST
                      method or a function URL without authorization fail.
  least-privilege     no Allow statement of an IAM policy (roles', users' and groups' inline
                      policies, AWS::IAM::Policy, AWS::IAM::ManagedPolicy, ...) has a wildcard
                      action ("*", "sqs:*", "dynamodb:Get*"), NotAction, NotResource, or a "*"
                      resource (or an ARN whose resource part is "*"), except the actions that
                      take no resource in IAM and that a role here needs: the X-Ray write
                      actions (xray:PutTraceSegments, xray:PutTelemetryRecords) and
                      dynamodb:ListStreams (AWS's stream-trigger policy), alone in their
                      statement; nor any other action that takes no resource in IAM (on "*"
                      too broad, on a resource a grant of nothing); no role, user or group
                      attaches a managed policy other than an AWS::IAM::ManagedPolicy of this
                      template (AWS managed policies grant "*").
  leading-keys        every Allow statement that grants a DynamoDB write action (PutItem,
                      UpdateItem, DeleteItem, BatchWriteItem, ConditionCheckItem, PartiQL
                      writes) on a table has a ForAllValues:StringLike (or StringEquals)
                      condition on dynamodb:LeadingKeys, and each key pattern in it begins
                      with a prefix that the function of its role owns (ITEM_OWNERS): only
                      the product writers write PRODUCT#, ORDER#, BATCHREF# and OUTBOX# items,
                      the relay and the sweeper only OUTBOX#, the notifier only NOTIFIED#, any
                      other function or role none.
  live-alias          nothing invokes a function that has an alias (AutoPublishAlias) but
                      through the alias: an event source mapping, an invoke permission, an
                      API integration, an EventBridge target or a function URL that names the
                      function itself bypasses the gradual deployment (and the rollback).
  deployment-role     the role of a CodeDeploy deployment group that shifts a function's alias
                      (its ServiceRoleArn) is a role of this template whose Allow statements
                      grant lambda: actions on that function only (its ARN, its alias's, its
                      versions') and cloudwatch: actions on the group's rollback alarms only,
                      and nothing else (no hooks, no triggers): each function's deployments
                      have a role of their own.
  visibility-timeout  an SQS queue that feeds a Lambda function (event source mapping, to the
                      function or an alias of it) has a VisibilityTimeout of at least 6x that
                      function's Timeout.
  dead-letter-alarm   every dead-letter queue (a queue named by a RedrivePolicy's
                      deadLetterTargetArn, or an on-failure destination of an event source
                      mapping, an async invocation or a function's DeadLetterConfig) has an alarm
                      with an action on its ApproximateNumberOfMessagesVisible (or
                      ApproximateAgeOfOldestMessage).
  relay-alarm         every function fed by a DynamoDB or Kinesis stream has an alarm with an
                      action on its IteratorAge.
  topic-encryption    every SNS topic has a KmsMasterKeyId (SSE-KMS).
  managed-instances   every function on a capacity provider (CapacityProviderConfig, Lambda
                      Managed Instances) has a MemorySize of at least 2048 MB, no
                      ReservedConcurrentExecutions, at most 64 concurrent requests per vCPU,
                      and a capacity provider of this template of its own architecture.

Each compute choice (the values of the ComputeType parameter, COMPUTE_PARAMETER) is checked as a
deployment of its own: cfn-lint lints the expansion with the parameter values of each
(DEPLOYMENTS: cfn-lint resolves every Ref to them), and the project rules run on the expansion
specialized to each (the conditions that only the compute parameter decides are evaluated: the
resources of the other choice are left out, each Fn::If on them takes its branch). A finding of
one choice only says so: `(ComputeType=ManagedInstances only)`.

Exit status: 0 when there is no error; 1 when cfn-lint reports an error (E...) or one of the
FAILING_WARNINGS (template_check/lint.py) in either pass, a project rule fails, or the transform
fails; 2 on bad usage. Other warnings are printed and allowed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

try:
    from template_check.compute import COMPUTE_PARAMETER, DEPLOYMENTS, compute_choices
    from template_check.expansion import expand
    from template_check.lint import lint, lint_exceptions
    from template_check.rules import findings_by_choice
except ImportError as exc:  # pragma: no cover - environment problem
    sys.exit(
        f"check_template: {exc}. Run with the tools venv: bash scripts/tools-venv.sh && "
        ".venv/bin/python scripts/check_template.py"
    )


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    args = argv[1:]
    rules_only = "--rules-only" in args
    args = [a for a in args if a != "--rules-only"]
    if len(args) > 1 or (args and args[0].startswith("-")):
        usage = next(line for line in __doc__.splitlines() if line.startswith("usage:"))
        print(usage, file=sys.stderr)
        return 2
    template_path = Path(args[0]) if args else REPO / "template.yaml"
    if not template_path.is_file():
        print(f"check_template: no such file: {template_path}", file=sys.stderr)
        return 2

    # The expansion comes first (printed after the first pass): which findings the lint
    # exceptions set aside is read from it.
    template, expanded, functions, transform_errors = expand(template_path)
    exceptions = lint_exceptions(template or {}, expanded)
    choices = compute_choices(template or {})

    total_fail = total_warn = 0

    if not rules_only:
        print(f"cfn-lint {template_path} (as written)")
        f, w = lint(template_path, template_path.name, exceptions)
        total_fail += f
        total_warn += w

    print(f"SAM transform of {template_path.name}")
    if expanded is None:
        for error in transform_errors:
            print(f"  ERROR {error}")
        return 1
    print(
        f"  {functions} functions -> {len(expanded.get('Resources', {}))} CloudFormation resources"
    )

    if rules_only:
        print("cfn-lint skipped (--rules-only)")
    else:
        with tempfile.TemporaryDirectory(prefix="check-template-") as tmp:
            expanded_path = Path(tmp) / f"{template_path.stem}.expanded.json"
            expanded_path.write_text(json.dumps(expanded, indent=1, sort_keys=True))
            deployments = [DEPLOYMENTS[c] for c in choices if c in DEPLOYMENTS]
            missing = [c for c in choices if c not in DEPLOYMENTS]
            for choice in missing:
                print(f"  ERROR {COMPUTE_PARAMETER}={choice}: no parameter values (DEPLOYMENTS)")
            total_fail += len(missing)
            with_values = f" with the parameters of {COMPUTE_PARAMETER} {', '.join(choices)}"
            print(f"cfn-lint of the expansion{with_values if deployments else ''}")
            f, w = lint(expanded_path, "expanded", exceptions, deployments)
            total_fail += f
            total_warn += w
            if f and os.environ.get("KEEP_EXPANDED"):
                keep = Path(tempfile.gettempdir()) / expanded_path.name
                keep.write_text(expanded_path.read_text())
                print(f"  expansion kept at {keep}")

    each = f" with {COMPUTE_PARAMETER} " + ", then ".join(choices) if choices else ""
    print(f"project rules on the expansion{each}")
    findings = findings_by_choice(expanded, choices)
    for (rule, resource, message), where in findings:
        only = f" ({', '.join(f'{COMPUTE_PARAMETER}={c}' for c in where)} only)" if where else ""
        print(f"  ERROR [{rule}] {resource}: {message}{only}")
    total_fail += len(findings)

    print(
        f"check_template: {template_path.name}: {total_fail} error(s), "
        f"{total_warn} allowed warning(s)"
    )
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
