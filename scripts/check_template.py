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
(a broken !Ref in a function's Environment or event passes). The transform is expanded with
samtranslator exactly as CloudFormation would, with every CodeUri replaced by an s3://
placeholder and a managed-policy loader that makes no IAM call, and the plain CloudFormation
result is linted.

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
                      resource (or an ARN whose resource part is "*"), except the X-Ray write
                      actions (xray:PutTraceSegments, xray:PutTelemetryRecords), which AWS does
                      not scope; nor any other action that takes no resource in IAM (e.g.
                      dynamodb:ListStreams: on "*" too broad, on a resource a grant of nothing);
                      no role, user or group attaches a managed policy other than an
                      AWS::IAM::ManagedPolicy of this template (AWS managed policies grant "*").
  visibility-timeout  an SQS queue that feeds a Lambda function (event source mapping) has a
                      VisibilityTimeout of at least 6x that function's Timeout.
  dead-letter-alarm   every dead-letter queue (a queue named by a RedrivePolicy's
                      deadLetterTargetArn, or an on-failure destination of an event source
                      mapping, an async invocation or a function's DeadLetterConfig) has an alarm
                      with an action on its ApproximateNumberOfMessagesVisible (or
                      ApproximateAgeOfOldestMessage).
  relay-alarm         every function fed by a DynamoDB or Kinesis stream has an alarm with an
                      action on its IteratorAge.
  topic-encryption    every SNS topic has a KmsMasterKeyId (SSE-KMS).

Exit status: 0 when there is no error; 1 when cfn-lint reports an error (E...) or one of the
FAILING_WARNINGS below in either pass, a project rule fails, or the transform fails; 2 on bad
usage. Other warnings are printed and allowed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

# Warnings that point at a wiring mistake rather than style, so they fail the check:
#   W1001  a Ref/GetAtt to a resource that may not exist under some condition (e.g. the
#          conditional email subscription used unconditionally): a deploy-time failure.
#   W2001  a parameter that nothing uses: the wiring it was meant for is missing.
#   W3005  a DependsOn that Ref/GetAtt already implies: harmless but means a wrong mental
#          model of the graph.
#   W3037  an IAM action that does not exist (a typo, or e.g. dynamodb:TransactWriteItems,
#          which IAM does not know): the permission meant is silently missing.
FAILING_WARNINGS = {"W1001", "W2001", "W3005", "W3037"}

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
REPO = Path(__file__).resolve().parent.parent

try:
    from cfnlint.api import ManualArgs, lint_file
    from cfnlint.decode import cfn_yaml
    from samtranslator.translator.transform import transform
    from samtranslator.model.exceptions import InvalidDocumentException
except ImportError as exc:  # pragma: no cover - environment problem
    sys.exit(
        f"check_template: {exc}. Run with the tools venv: bash scripts/tools-venv.sh && "
        ".venv/bin/python scripts/check_template.py"
    )

# samtranslator warns, when its objects are collected, about usage metrics nobody publishes.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)


class NoIamManagedPolicyLoader:
    """samtranslator asks this for the AWS managed policies' name -> ARN map; the template names
    none by name, so an empty map is right and no IAM call is made."""

    def load(self) -> dict[str, str]:
        return {}


def placeholder_code_uris(template: dict) -> int:
    """Replaces local code locations by s3:// placeholders, as `sam package` would. Returns how
    many functions were seen."""
    count = 0
    globals_fn = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_fn:
        globals_fn["CodeUri"] = "s3://placeholder-bucket/globals.zip"
    for name, resource in template.get("Resources", {}).items():
        if not isinstance(resource, dict):
            continue
        props = resource.setdefault("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function":
            count += 1
            if "InlineCode" not in props and "ImageUri" not in props:
                props["CodeUri"] = f"s3://placeholder-bucket/{name}.zip"
        elif kind == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://placeholder-bucket/{name}.zip"
        elif kind in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi"):
            if isinstance(props.get("DefinitionUri"), str):
                props["DefinitionUri"] = f"s3://placeholder-bucket/{name}.yaml"
        elif kind == "AWS::Serverless::StateMachine":
            if isinstance(props.get("DefinitionUri"), str):
                props["DefinitionUri"] = f"s3://placeholder-bucket/{name}.json"
    return count


def lint(path: Path, label: str) -> tuple[int, int]:
    """Lints one file and prints its findings. Returns (failures, allowed warnings)."""
    matches = lint_file(path, ManualArgs(regions=[REGION]))
    failures = warnings = 0
    for m in matches:
        rule_id = m.rule.id
        severity = m.rule.severity.lower()
        fails = rule_id.startswith("E") or rule_id in FAILING_WARNINGS
        where = "/".join(str(p) for p in getattr(m, "path", []) or [])
        loc = f"line {m.linenumber}" if label.endswith(".yaml") or label.endswith(".yml") else ""
        parts = [p for p in (loc, where) if p]
        message = m.message if len(m.message) <= 400 else m.message[:400] + " ..."
        shown = "ERROR" if rule_id.startswith("E") else severity.upper()
        if fails and not rule_id.startswith("E"):
            shown += "->ERROR"
        print(
            f"  {shown} {rule_id} {label}"
            f"{' (' + ', '.join(parts) + ')' if parts else ''}: {message}"
        )
        if fails:
            failures += 1
        else:
            warnings += 1
    return failures, warnings


# ---------------------------------------------------------------- project rules
# They read the expanded template: plain CloudFormation, intrinsic functions unresolved. A value
# under Fn::If counts with both branches (a rule must hold whatever the parameters).

# The only actions an Allow statement may grant on "*": AWS offers no resource to scope them to.
XRAY_WRITE_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})

# Managed policies that a role, user or group may attach although this template does not define
# them. Empty on purpose: every AWS managed policy a function would need (basic execution, SQS,
# DynamoDB streams, X-Ray) grants its actions on "*"; write the scoped statements instead.
ALLOWED_MANAGED_POLICY_ARNS: frozenset[str] = frozenset()

# What a deployed queue message count means on a dead-letter queue.
DEAD_LETTER_METRICS = frozenset(
    {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}
)

# Defaults CloudFormation applies when the property is absent.
DEFAULT_FUNCTION_TIMEOUT = 3
DEFAULT_VISIBILITY_TIMEOUT = 30

IAM_POLICY_HOLDERS = ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group")
IAM_POLICY_RESOURCES = (
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
    "AWS::IAM::UserPolicy",
    "AWS::IAM::GroupPolicy",
)

MISSING = object()  # a property left out, or AWS::NoValue


def alternatives(value):
    """The values `value` may take: both branches of every Fn::If, MISSING for AWS::NoValue."""
    if isinstance(value, dict) and len(value) == 1:
        if "Fn::If" in value and isinstance(value["Fn::If"], list) and len(value["Fn::If"]) == 3:
            yield from alternatives(value["Fn::If"][1])
            yield from alternatives(value["Fn::If"][2])
            return
        if value.get("Ref") == "AWS::NoValue":
            yield MISSING
            return
    yield value


def items(value):
    """Every item `value` may hold, whether it is one value or a list (MISSING ones left out)."""
    for alt in alternatives(value):
        for element in alt if isinstance(alt, list) else [alt]:
            for item in alternatives(element):
                if item is not MISSING and item is not None:
                    yield item


def may_be_absent(value) -> bool:
    """True when `value` is absent or empty under some condition."""
    for alt in alternatives(value):
        if alt is MISSING or alt is None or alt == "" or alt == [] or alt == {}:
            return True
        if isinstance(alt, list) and all(may_be_absent(element) for element in alt):
            return True
    return False


def target(value) -> str | None:
    """The logical id a Ref or Fn::GetAtt names, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt and isinstance(getatt[0], str):
            return getatt[0]
        if isinstance(getatt, str):
            return getatt.split(".", 1)[0]
    return None


def shown(value) -> str:
    """A short text form of a value: a string, an Fn::Sub's string, other intrinsics as JSON."""
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return value["Fn::Sub"]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def sub_text(value) -> str | None:
    """A plain or Fn::Sub string with each ${...} replaced by "x"; None for other values."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        value = value[0] if isinstance(value, list) and value else value
    if not isinstance(value, str):
        return None
    return re.sub(r"\$\{[^}]*\}", "x", value)


def is_wildcard_resource(resource) -> bool:
    """ "*", or an ARN whose resource part is "*" (every resource of a service)."""
    text = sub_text(resource)
    if text is None:
        return False
    return text == "*" or re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:\*", text) is not None


def number(value, template: dict, default: int) -> int | None:
    """A literal number or a Ref to a parameter with a default; None when it cannot be known."""
    if value is MISSING:
        return default
    name = target(value)
    if name is not None and isinstance(value, dict) and "Ref" in value:
        value = template.get("Parameters", {}).get(name, {}).get("Default")
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def resources_of(template: dict, *types: str):
    """(logical id, properties) of the template's resources of these types."""
    for name, resource in template.get("Resources", {}).items():
        if isinstance(resource, dict) and resource.get("Type") in types:
            yield name, resource.get("Properties") or {}


def is_none(authorization) -> bool:
    return authorization is MISSING or authorization in (None, "", "NONE")


class Finding(NamedTuple):
    rule: str
    resource: str
    message: str


def unauthenticated_operations(body: dict):
    """(METHOD, path) of the operations of an OpenAPI body that need no authorization."""
    default_security = body.get("security")
    for path, operations in (body.get("paths") or {}).items():
        for method, operation in (operations if isinstance(operations, dict) else {}).items():
            any_method = method == "x-amazon-apigateway-any-method"
            if method in ("parameters", "options") or (method.startswith("x-") and not any_method):
                continue
            security = (operation if isinstance(operation, dict) else {}).get(
                "security", default_security
            )
            # A requirement that names no scheme (or SAM's NONE) lets anyone through.
            if not security or any(
                not isinstance(requirement, dict) or not requirement or "NONE" in requirement
                for requirement in security
            ):
                yield ("ANY" if any_method else method.upper()), path


def check_auth(template: dict):
    for name, props in resources_of(template, "AWS::ApiGatewayV2::Route"):
        unauthorized = [
            a for a in alternatives(props.get("AuthorizationType", MISSING)) if is_none(a)
        ]
        if unauthorized:
            auth = unauthorized[0]
            what = "missing" if auth is MISSING or auth is None else repr(auth)
            message = f"route {shown(props.get('RouteKey'))} has no authorizer"
            yield Finding("auth", name, f"{message} (AuthorizationType {what})")
    for name, props in resources_of(template, "AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"):
        if "Target" in props:
            yield Finding("auth", name, "quick-create API (Target): its route has no authorizer")
        if isinstance(props.get("Body"), dict):
            for method, path in unauthenticated_operations(props["Body"]):
                message = f"route {method} {path} has no authorizer (no security requirement)"
                yield Finding("auth", name, message)
        elif "BodyS3Location" in props:
            yield Finding("auth", name, "API body not inline: its routes cannot be checked")
    for name, props in resources_of(template, "AWS::ApiGateway::Method"):
        if props.get("HttpMethod") != "OPTIONS" and any(
            is_none(a) for a in alternatives(props.get("AuthorizationType", MISSING))
        ):
            yield Finding("auth", name, "method has no authorizer (AuthorizationType NONE)")
    for name, props in resources_of(template, "AWS::Lambda::Url"):
        if "NONE" in list(alternatives(props.get("AuthType", MISSING))):
            yield Finding("auth", name, "function URL without authentication (AuthType NONE)")


def policy_documents(template: dict):
    """(logical id, label, policy document) of every IAM policy document in the template."""
    for name, props in resources_of(template, *IAM_POLICY_HOLDERS):
        for policy in items(props.get("Policies", [])):
            if isinstance(policy, dict):
                label = f"policy {shown(policy.get('PolicyName', '?'))}"
                for document in alternatives(policy.get("PolicyDocument", MISSING)):
                    if isinstance(document, dict):
                        yield name, label, document
    for name, props in resources_of(template, *IAM_POLICY_RESOURCES):
        for document in alternatives(props.get("PolicyDocument", MISSING)):
            if isinstance(document, dict):
                yield name, "policy", document


def unscoped_actions() -> frozenset[str]:
    """The IAM actions that take no resource ("service:action", lower case), from cfn-lint's copy
    of AWS's service authorization reference. Such an action applies to "*" only: granted on a
    resource it grants nothing."""
    import cfnlint

    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    try:
        services = json.loads(path.read_text())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(
        f"{service.lower()}:{action.lower()}"
        for service, spec in services.items()
        for action, properties in (spec.get("Actions") or {}).items()
        if not (properties or {}).get("Resources")
    )


def check_least_privilege(template: dict):
    resources = template.get("Resources", {})
    unscoped = unscoped_actions()
    xray = {a.lower() for a in XRAY_WRITE_ACTIONS}
    for name, label, document in policy_documents(template):
        for index, statement in enumerate(items(document.get("Statement", []))):
            if not isinstance(statement, dict) or all(
                effect == "Deny" for effect in alternatives(statement.get("Effect"))
            ):
                continue
            where = f"{label}, statement {shown(statement.get('Sid', index))}"
            for key in ("NotAction", "NotResource"):
                if key in statement:
                    other = key[3:].lower()
                    yield Finding(
                        "least-privilege", name, f"{where}: {key} allows every other {other}"
                    )
            actions = [a for a in items(statement.get("Action", [])) if isinstance(a, str)]
            for action in actions:
                if "*" in action:
                    yield Finding("least-privilege", name, f"{where}: wildcard action {action!r}")
                elif action.lower() in unscoped and action.lower() not in xray:
                    message = f"{where}: {action} takes no resource in IAM (it applies to '*' only)"
                    yield Finding("least-privilege", name, f"{message}: drop it")
            xray_only = bool(actions) and all(a in XRAY_WRITE_ACTIONS for a in actions)
            for resource in items(statement.get("Resource", [])):
                if is_wildcard_resource(resource) and not xray_only:
                    granted = ", ".join(actions) or "its actions"
                    only = " and ".join(sorted(XRAY_WRITE_ACTIONS))
                    message = f"{where}: resource {shown(resource)!r} for {granted}"
                    yield Finding("least-privilege", name, f"{message} (only {only} may use '*')")
    for name, props in resources_of(template, *IAM_POLICY_HOLDERS):
        for arn in items(props.get("ManagedPolicyArns", [])):
            own = resources.get(target(arn), {}).get("Type") == "AWS::IAM::ManagedPolicy"
            if not own and not (isinstance(arn, str) and arn in ALLOWED_MANAGED_POLICY_ARNS):
                message = (
                    f"attaches managed policy {shown(arn)}: only this template's own "
                    "AWS::IAM::ManagedPolicy may be attached (AWS managed policies grant '*')"
                )
                yield Finding("least-privilege", name, message)


def check_visibility_timeouts(template: dict):
    resources = template.get("Resources", {})
    for _, props in resources_of(template, "AWS::Lambda::EventSourceMapping"):
        queue = target(props.get("EventSourceArn"))
        function = target(props.get("FunctionName"))
        if resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
            continue
        if resources.get(function, {}).get("Type") != "AWS::Lambda::Function":
            continue
        queue_props = resources[queue].get("Properties") or {}
        function_props = resources[function].get("Properties") or {}
        for visibility_value in alternatives(queue_props.get("VisibilityTimeout", MISSING)):
            for timeout_value in alternatives(function_props.get("Timeout", MISSING)):
                visibility = number(visibility_value, template, DEFAULT_VISIBILITY_TIMEOUT)
                timeout = number(timeout_value, template, DEFAULT_FUNCTION_TIMEOUT)
                if visibility is None or timeout is None:
                    message = (
                        f"VisibilityTimeout {shown(visibility_value)} or the Timeout of its "
                        f"consumer {function} ({shown(timeout_value)}) cannot be read"
                    )
                    yield Finding("visibility-timeout", queue, message)
                elif visibility < 6 * timeout:
                    message = (
                        f"VisibilityTimeout {visibility} s is under 6x the Timeout of its "
                        f"consumer {function} ({timeout} s): at least {6 * timeout} s"
                    )
                    yield Finding("visibility-timeout", queue, message)


def alarmed_metrics(template: dict):
    """(namespace, metric name, {dimension: logical id named}) of every alarm with an action."""
    for _, props in resources_of(template, "AWS::CloudWatch::Alarm"):
        if may_be_absent(props.get("AlarmActions", MISSING)):
            continue
        metrics = [props]  # a single-metric alarm, and the metrics of a metric math alarm
        for query in items(props.get("Metrics", [])):
            if isinstance(query, dict) and isinstance(query.get("MetricStat"), dict):
                metrics.append(query["MetricStat"].get("Metric") or {})
        for metric in metrics:
            dimensions = {
                d.get("Name"): target(d.get("Value"))
                for d in items(metric.get("Dimensions", []))
                if isinstance(d, dict)
            }
            yield metric.get("Namespace"), metric.get("MetricName"), dimensions


def dead_letter_queues(template: dict) -> dict[str, str]:
    """{queue: what it is the dead-letter queue of} for the template's own SQS queues."""
    resources = template.get("Resources", {})
    found: dict[str, str] = {}

    def add(arn, why: str) -> None:
        queue = target(arn)
        if resources.get(queue, {}).get("Type") == "AWS::SQS::Queue":
            found.setdefault(queue, why)

    for name, props in resources_of(template, "AWS::SQS::Queue", "AWS::SNS::Subscription"):
        for policy in alternatives(props.get("RedrivePolicy", MISSING)):
            if isinstance(policy, str):
                try:
                    policy = json.loads(policy)
                except ValueError:
                    continue
            if isinstance(policy, dict):
                add(policy.get("deadLetterTargetArn"), f"dead-letter queue of {name}")
    for name, props in resources_of(
        template, "AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"
    ):
        on_failure = (props.get("DestinationConfig") or {}).get("OnFailure") or {}
        add(on_failure.get("Destination"), f"on-failure destination of {name}")
    for name, props in resources_of(template, "AWS::Lambda::Function"):
        add((props.get("DeadLetterConfig") or {}).get("TargetArn"), f"dead-letter queue of {name}")
    return found


def stream_consumers(template: dict):
    """(function, stream's resource, event source mapping) of every DynamoDB or Kinesis stream
    consumer."""
    resources = template.get("Resources", {})
    for name, props in resources_of(template, "AWS::Lambda::EventSourceMapping"):
        source = props.get("EventSourceArn")
        source_name = target(source)
        kind = resources.get(source_name, {}).get("Type")
        from_table_stream = kind == "AWS::DynamoDB::Table" and "StreamArn" in json.dumps(source)
        function = target(props.get("FunctionName"))
        if function is not None and (from_table_stream or kind == "AWS::Kinesis::Stream"):
            yield function, source_name, name


def check_alarms(template: dict):
    alarmed = list(alarmed_metrics(template))
    for queue, why in sorted(dead_letter_queues(template).items()):
        if not any(
            namespace == "AWS/SQS"
            and metric in DEAD_LETTER_METRICS
            and dims.get("QueueName") == queue
            for namespace, metric, dims in alarmed
        ):
            metrics = " or ".join(sorted(DEAD_LETTER_METRICS))
            yield Finding(
                "dead-letter-alarm", queue, f"{why}: no alarm with an action on its {metrics}"
            )
    for function, source, mapping in stream_consumers(template):
        if not any(
            namespace == "AWS/Lambda"
            and metric == "IteratorAge"
            and dims.get("FunctionName") == function
            for namespace, metric, dims in alarmed
        ):
            message = f"reads the stream of {source} ({mapping}): no alarm with an action"
            yield Finding("relay-alarm", function, f"{message} on its IteratorAge")


def check_topic_encryption(template: dict):
    for name, props in resources_of(template, "AWS::SNS::Topic"):
        if may_be_absent(props.get("KmsMasterKeyId", MISSING)):
            yield Finding("topic-encryption", name, "SNS topic without KmsMasterKeyId (SSE-KMS)")


RULES = (
    check_auth,
    check_least_privilege,
    check_visibility_timeouts,
    check_alarms,
    check_topic_encryption,
)


def project_findings(template: dict) -> list[Finding]:
    """Every breach of the project rules in the expanded template."""
    return [finding for rule in RULES for finding in rule(template)]


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
    # samtranslator's ARN helpers look up a region for the partition name.
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

    total_fail = total_warn = 0

    if not rules_only:
        print(f"cfn-lint {template_path} (as written)")
        f, w = lint(template_path, template_path.name)
        total_fail += f
        total_warn += w

    print(f"SAM transform of {template_path.name}")
    try:
        template = cfn_yaml.load(str(template_path))
    except Exception as exc:  # cfn-lint already reported parse errors; be explicit anyway
        print(f"  ERROR cannot parse {template_path}: {exc}")
        return 1
    # Plain dicts/strings (the loader's node types carry line marks samtranslator does not need).
    template = json.loads(json.dumps(template))
    functions = placeholder_code_uris(template)
    try:
        expanded = transform(copy.deepcopy(template), {}, NoIamManagedPolicyLoader())
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"  ERROR transform: {cause.message}")
        return 1
    except Exception as exc:
        print(f"  ERROR transform: {type(exc).__name__}: {exc}")
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
            print("cfn-lint of the expansion")
            f, w = lint(expanded_path, "expanded")
            total_fail += f
            total_warn += w
            if f and os.environ.get("KEEP_EXPANDED"):
                keep = Path(tempfile.gettempdir()) / expanded_path.name
                keep.write_text(expanded_path.read_text())
                print(f"  expansion kept at {keep}")

    print("project rules on the expansion")
    findings = project_findings(expanded)
    for rule, resource, message in findings:
        print(f"  ERROR [{rule}] {resource}: {message}")
    total_fail += len(findings)

    print(
        f"check_template: {template_path.name}: {total_fail} error(s), "
        f"{total_warn} allowed warning(s)"
    )
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
