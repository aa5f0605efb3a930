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

Both cfn-lint passes run cfn-lint's own rules and the serverless rules of cfn-lint-serverless
(AWS's serverless-rules: ES... ids fail the check, WS... warn). A few of those do not apply to
this template; each is set aside for exactly the resources that LINT_EXCEPTIONS (below)
names, with the reason, and each pass prints a `set aside` line for it.

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
FAILING_WARNINGS below in either pass, a project rule fails, or the transform fails; 2 on bad
usage. Other warnings are printed and allowed.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

# Warnings that point at a wiring mistake rather than style, so they fail the check:
#   W1001  a Ref/GetAtt to a resource that may not exist under some condition (e.g. the
#          conditional email subscription used unconditionally): a deploy-time failure.
#   W1030  a Ref that resolves to a value its property refuses: with the parameter values of a
#          deployment (DEPLOYMENTS), a property wired to the wrong parameter (subnets given
#          security groups) or a value the service would refuse at deploy time.
#   W2001  a parameter that nothing uses: the wiring it was meant for is missing.
#   W3005  a DependsOn that Ref/GetAtt already implies: harmless but means a wrong mental
#          model of the graph.
#   W3037  an IAM action that does not exist (a typo, or e.g. dynamodb:TransactWriteItems,
#          which IAM does not know): the permission meant is silently missing.
FAILING_WARNINGS = {"W1001", "W1030", "W2001", "W3005", "W3037"}

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
REPO = Path(__file__).resolve().parent.parent

try:
    from cfnlint.api import ManualArgs, lint_file
    from cfnlint.context.parameters import ParameterSet
    from cfnlint.decode import cfn_yaml
    from samtranslator.translator.transform import transform
    from samtranslator.model.exceptions import InvalidDocumentException
except ImportError as exc:  # pragma: no cover - environment problem
    sys.exit(
        f"check_template: {exc}. Run with the tools venv: bash scripts/tools-venv.sh && "
        ".venv/bin/python scripts/check_template.py"
    )

# samtranslator warns, when its objects are collected, about usage metrics nobody publishes,
# and, for each DeploymentPreference, about a feature toggle only its service reads.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
logging.getLogger("samtranslator.feature_toggle.feature_toggle").setLevel(logging.ERROR)

# cfn-lint-serverless's rules, appended to cfn-lint's own in both passes.
SERVERLESS_RULES = "cfn_lint_serverless.rules"


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


def match_resource(match) -> str | None:
    """The logical id (resource or parameter) a cfn-lint finding is about, if any."""
    path = list(getattr(match, "path", []) or [])
    if len(path) >= 2 and path[0] in ("Resources", "Parameters"):
        return str(path[1])
    return None


def lint(
    path: Path,
    label: str,
    exceptions: dict[str, set[str]],
    parameter_sets: list[dict] | None = None,
) -> tuple[int, int]:
    """Lints one file (cfn-lint's rules and the serverless rules) and prints its findings, but
    those that `exceptions` ({rule id: logical ids}) sets aside, which it counts per rule. With
    parameter sets, cfn-lint resolves each Ref to a parameter to its value in every set (and
    to the parameter's default when a set has none). Returns (failures, allowed warnings)."""
    args = ManualArgs(regions=[REGION], append_rules=[SERVERLESS_RULES])
    if parameter_sets:
        args["parameters"] = [ParameterSet(parameters=values) for values in parameter_sets]
    matches = lint_file(path, args)
    failures = warnings = 0
    set_aside: dict[str, set[str]] = {}
    for m in matches:
        rule_id = m.rule.id
        if match_resource(m) in exceptions.get(rule_id, ()):
            set_aside.setdefault(rule_id, set()).add(match_resource(m))
            continue
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
    for rule_id, names in sorted(set_aside.items()):
        why = LINT_EXCEPTIONS[rule_id].why
        print(f"  set aside {rule_id} {label} ({', '.join(sorted(names))}): {why}")
    return failures, warnings


# ---------------------------------------------------------------- project rules
# They read the expanded template: plain CloudFormation, intrinsic functions unresolved. A value
# under Fn::If counts with both branches (a rule must hold whatever the parameters).

# The only actions an Allow statement may grant on "*": IAM has no resource (and these no
# condition key) to scope them to, and a role here needs them.
XRAY_WRITE_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})
#   dynamodb:ListStreams: AWS's documented policy for a DynamoDB stream trigger lists it (the
#   relay's role); it lists stream ARNs, nothing else.
STAR_ACTIONS = XRAY_WRITE_ACTIONS | {"dynamodb:ListStreams"}
# And in the operator role of a capacity provider (Lambda Managed Instances) only: the EC2 reads
# with which Lambda places its instances (AWSLambdaManagedEC2ResourceOperator lists them); they
# take no resource in IAM either.
OPERATOR_STAR_ACTIONS = frozenset(
    f"ec2:{action}"
    for action in (
        "DescribeAvailabilityZones",
        "DescribeCapacityReservations",
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeInstanceTypeOfferings",
        "DescribeInstanceTypes",
        "DescribeSecurityGroups",
        "DescribeSubnets",
        "DescribeVpcEncryptionControls",
    )
)

# DynamoDB actions that write an item (lower case). A transaction's actions are authorized as
# PutItem, UpdateItem, DeleteItem and ConditionCheckItem, one by one.
DYNAMODB_WRITE_ACTIONS = frozenset(
    f"dynamodb:{action}"
    for action in (
        "putitem",
        "updateitem",
        "deleteitem",
        "batchwriteitem",
        "conditioncheckitem",
        "partiqlinsert",
        "partiqlupdate",
        "partiqldelete",
    )
)

# The table's item kinds (partition key prefixes, layout 3: docs/storage.md) each function's
# role may write. The outbox is the events' source: the relay publishes every OUTBOX# item, so
# only the product's commits may insert one, and the relay and the sweeper only mark them. A
# role of no function here (or shared with one that is not) may write no item.
PRODUCT_ITEMS = ("PRODUCT#", "ORDER#", "BATCHREF#", "OUTBOX#")
ITEM_OWNERS: dict[str, tuple[str, ...]] = {
    "AddBatchFunction": PRODUCT_ITEMS,
    "AllocateFunction": PRODUCT_ITEMS,
    "ChangeBatchQuantityFunction": PRODUCT_ITEMS,
    "ReallocateFunction": PRODUCT_ITEMS,
    "PublishEventsFunction": ("OUTBOX#",),
    "RepublishEventsFunction": ("OUTBOX#",),
    "NotifyOutOfStockFunction": ("NOTIFIED#",),
}
# A function of ComputeType ManagedInstances (<Name>LmiFunction) is its Standard twin on a
# capacity provider, with the same role: it owns the same items.
ITEM_OWNERS.update(
    {name.replace("Function", "LmiFunction"): owned for name, owned in list(ITEM_OWNERS.items())}
)
LEADING_KEYS_OPERATORS = ("ForAllValues:StringLike", "ForAllValues:StringEquals")

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


def function_of(template: dict, value) -> str | None:
    """The AWS::Lambda::Function that a FunctionName (or a target's Arn) names: the function
    itself, or the function of the alias or version named (with AutoPublishAlias, every event
    source invokes the alias). None when it names none of the template's functions."""
    resources = template.get("Resources", {})
    name = target(value)
    kind = resources.get(name, {}).get("Type")
    if kind in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        name = target((resources[name].get("Properties") or {}).get("FunctionName"))
        kind = resources.get(name, {}).get("Type")
    return name if kind == "AWS::Lambda::Function" else None


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


def allow_statements(template: dict):
    """(policy holder's logical id, "label, statement Sid", statement) of every statement that
    may allow (an Effect other than Deny under some condition)."""
    for name, label, document in policy_documents(template):
        for index, statement in enumerate(items(document.get("Statement", []))):
            if not isinstance(statement, dict) or all(
                effect == "Deny" for effect in alternatives(statement.get("Effect"))
            ):
                continue
            yield name, f"{label}, statement {shown(statement.get('Sid', index))}", statement


def operator_roles(template: dict) -> set[str]:
    """The roles that a capacity provider of the template names as its operator role."""
    return {
        target(arn)
        for _, props in resources_of(template, "AWS::Lambda::CapacityProvider")
        for arn in alternatives((props.get("PermissionsConfig") or {}).get(
            "CapacityProviderOperatorRoleArn", MISSING
        ))
    } - {None}


def spelled(actions) -> str:
    """ "a, b and c" of sorted actions."""
    actions = sorted(actions)
    return ", ".join(actions[:-1]) + " and " + actions[-1] if len(actions) > 1 else actions[0]


def check_least_privilege(template: dict):
    resources = template.get("Resources", {})
    unscoped = unscoped_actions()
    operators = operator_roles(template)
    for name, where, statement in allow_statements(template):
        star_actions = STAR_ACTIONS | (OPERATOR_STAR_ACTIONS if name in operators else set())
        on_star = {a.lower() for a in star_actions}
        only = spelled(star_actions)
        for key in ("NotAction", "NotResource"):
            if key in statement:
                other = key[3:].lower()
                yield Finding(
                    "least-privilege", name, f"{where}: {key} allows every other {other}"
                )
        actions = [a for a in items(statement.get("Action", [])) if isinstance(a, str)]
        statement_resources = list(items(statement.get("Resource", [])))
        scoped = [r for r in statement_resources if not is_wildcard_resource(r)]
        for action in actions:
            if "*" in action:
                yield Finding("least-privilege", name, f"{where}: wildcard action {action!r}")
            elif action.lower() in unscoped:
                message = f"{where}: {action} takes no resource in IAM (it applies to '*' only)"
                if action.lower() not in on_star:
                    yield Finding("least-privilege", name, f"{message}: drop it")
                elif scoped:
                    yield Finding("least-privilege", name, f"{message}: grant it on '*'")
        star_only = bool(actions) and all(a.lower() in on_star for a in actions)
        for resource in statement_resources:
            if is_wildcard_resource(resource) and not star_only:
                granted = ", ".join(actions) or "its actions"
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
        function = function_of(template, props.get("FunctionName"))
        if resources.get(queue, {}).get("Type") != "AWS::SQS::Queue" or function is None:
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
        function = function_of(template, props.get("FunctionName"))
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


def table_items(resource, template: dict) -> str | None:
    """The table whose items an IAM resource names, by its ARN (not an index, a stream or a
    backup of it): the logical id for GetAtt Table.Arn or "${Table.Arn}", else the text of a
    literal table ARN or a wildcard. None for any other resource."""
    if is_wildcard_resource(resource):
        return shown(resource)
    getatt = resource.get("Fn::GetAtt") if isinstance(resource, dict) else None
    if isinstance(getatt, str):
        getatt = getatt.split(".", 1)
    sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    sub = sub[0] if isinstance(sub, list) and sub else sub
    whole = re.fullmatch(r"\$\{([A-Za-z0-9]+)\.Arn\}", sub) if isinstance(sub, str) else None
    if whole:
        getatt = [whole.group(1), "Arn"]
    if isinstance(getatt, list) and len(getatt) == 2:
        kind = template.get("Resources", {}).get(getatt[0], {}).get("Type")
        return getatt[0] if kind == "AWS::DynamoDB::Table" and getatt[1] == "Arn" else None
    text = sub_text(resource)
    table_arn = r"arn:[^:]*:dynamodb:[^:]*:[^:]*:table/[^/]+"
    return shown(resource) if text is not None and re.fullmatch(table_arn, text) else None


def write_actions(actions) -> list[str]:
    """The actions of a statement that write DynamoDB items (a wildcard counts when it matches
    one of them)."""
    return [
        action
        for action in actions
        if any(fnmatch.fnmatchcase(write, action.lower()) for write in DYNAMODB_WRITE_ACTIONS)
    ]


def policy_functions(template: dict, holder: str) -> list[str]:
    """The functions a policy holder's statements apply to: those whose Role is the holder (a
    role), or one of the Roles of an AWS::IAM::Policy or ManagedPolicy. Users, groups and the
    roles of no function: none."""
    resource = template.get("Resources", {}).get(holder, {})
    roles = {holder}
    if resource.get("Type") != "AWS::IAM::Role":
        roles = {target(r) for r in items((resource.get("Properties") or {}).get("Roles", []))}
    return sorted(
        name
        for name, props in resources_of(template, "AWS::Lambda::Function")
        if any(target(role) in roles for role in alternatives(props.get("Role", MISSING)))
    )


def leading_keys(statement: dict):
    """The dynamodb:LeadingKeys patterns of a statement's ForAllValues condition, or None when it
    has none (a plain StringLike on a multivalued key, or ForAnyValue, does not bind them all).
    Under Fn::If, every branch's patterns; None when a branch has none."""
    patterns: list = []
    for condition in alternatives(statement.get("Condition", MISSING)):
        if not isinstance(condition, dict):
            return None
        found = [
            (condition.get(operator) or {}).get("dynamodb:LeadingKeys", MISSING)
            for operator in LEADING_KEYS_OPERATORS
            if isinstance(condition.get(operator), dict)
        ]
        found = [keys for keys in found if keys is not MISSING]
        if not found or any(may_be_absent(keys) for keys in found):
            return None
        patterns.extend(item for keys in found for item in items(keys))
    return patterns


def check_leading_keys(template: dict):
    for name, where, statement in allow_statements(template):
        actions = [a for a in items(statement.get("Action", [])) if isinstance(a, str)]
        writes = write_actions(actions)
        tables = [table_items(r, template) for r in items(statement.get("Resource", []))]
        tables = [table for table in tables if table is not None]
        if not writes or not tables:
            continue
        patterns = leading_keys(statement)
        if patterns is None:
            operator = " or ".join(LEADING_KEYS_OPERATORS)
            message = (
                f"{where}: {', '.join(writes)} on {tables[0]} without a "
                f"dynamodb:LeadingKeys condition ({operator}): it may write any item"
            )
            yield Finding("leading-keys", name, message)
            continue
        functions = policy_functions(template, name)
        for pattern in patterns:
            for function in functions or [None]:
                owned = ITEM_OWNERS.get(function, ())
                if owned and isinstance(pattern, str) and pattern.startswith(owned):
                    continue
                what = ", ".join(owned) if owned else "no item of the table"
                who = f"its function {function} owns {what}"
                if function is None:
                    who = f"no function has this role: it owns {what}"
                message = f"{where}: may write {shown(pattern)!r} items ({who})"
                yield Finding("leading-keys", name, message)


# What invokes a function, and the property naming what it invokes.
INVOKERS = {
    "AWS::Lambda::EventSourceMapping": "FunctionName",
    "AWS::Lambda::Permission": "FunctionName",
    "AWS::ApiGatewayV2::Integration": "IntegrationUri",
    "AWS::Lambda::Url": "TargetFunctionArn",
}


def named_unqualified(value) -> set[str]:
    """The logical ids a value names unqualified: a Ref or GetAtt, or each ${Name} or
    ${Name.Attr} of an Fn::Sub string that no ":qualifier" follows."""
    named: set[str] = set()
    for alt in alternatives(value):
        named |= {target(alt)} - {None}
        text = alt.get("Fn::Sub") if isinstance(alt, dict) else None
        text = text[0] if isinstance(text, list) and text else text
        if isinstance(text, str):
            named |= set(re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}(?!:)", text))
    return named


def check_live_alias(template: dict):
    aliases = {
        function_of(template, props.get("FunctionName")): name
        for name, props in resources_of(template, "AWS::Lambda::Alias")
    }
    invokers = [
        (name, props.get(INVOKERS[kind]))
        for kind in INVOKERS
        for name, props in resources_of(template, kind)
    ]
    invokers += [
        (name, rule_target.get("Arn"))
        for name, props in resources_of(template, "AWS::Events::Rule")
        for rule_target in items(props.get("Targets", []))
        if isinstance(rule_target, dict)
    ]
    for name, value in invokers:
        for function in sorted(named_unqualified(value) & set(aliases) - {None}):
            message = (
                f"invokes {function} itself, not its alias {aliases[function]}: past the "
                "gradual deployment (name the alias: !Ref Function.Alias)"
            )
            yield Finding("live-alias", name, message)


def check_topic_encryption(template: dict):
    for name, props in resources_of(template, "AWS::SNS::Topic"):
        if may_be_absent(props.get("KmsMasterKeyId", MISSING)):
            yield Finding("topic-encryption", name, "SNS topic without KmsMasterKeyId (SSE-KMS)")


# Lambda Managed Instances: the smallest function (2 GB and 1 vCPU), the most concurrent requests
# per vCPU, and the memory per vCPU when the function does not say.
MANAGED_INSTANCES_MIN_MEMORY = 2048
MANAGED_INSTANCES_MAX_CONCURRENCY_PER_VCPU = 64
MANAGED_INSTANCES_DEFAULT_GIB_PER_VCPU = 2
DEFAULT_MEMORY_SIZE = 128
DEFAULT_ARCHITECTURE = "x86_64"


def check_managed_instances(template: dict):
    resources = template.get("Resources", {})
    for name, props in resources_of(template, "AWS::Lambda::Function"):
        for config in alternatives(props.get("CapacityProviderConfig", MISSING)):
            if not isinstance(config, dict):
                continue
            config = config.get("LambdaManagedInstancesCapacityProviderConfig") or {}
            for memory_value in alternatives(props.get("MemorySize", MISSING)):
                memory = number(memory_value, template, DEFAULT_MEMORY_SIZE)
                if memory is None or memory < MANAGED_INSTANCES_MIN_MEMORY:
                    message = (
                        f"MemorySize {shown(memory_value) if memory is None else memory} MB on a "
                        f"capacity provider: at least {MANAGED_INSTANCES_MIN_MEMORY} MB"
                    )
                    yield Finding("managed-instances", name, message)
                    continue
                ratio = number(
                    config.get("ExecutionEnvironmentMemoryGiBPerVCpu", MISSING),
                    template,
                    MANAGED_INSTANCES_DEFAULT_GIB_PER_VCPU,
                )
                concurrency_value = config.get("PerExecutionEnvironmentMaxConcurrency", MISSING)
                concurrency = number(concurrency_value, template, 1)
                vcpus = max(1, memory // 1024 // (ratio or MANAGED_INSTANCES_DEFAULT_GIB_PER_VCPU))
                limit = MANAGED_INSTANCES_MAX_CONCURRENCY_PER_VCPU * vcpus
                if concurrency is None or concurrency > limit:
                    message = (
                        f"PerExecutionEnvironmentMaxConcurrency {shown(concurrency_value)} for "
                        f"{vcpus} vCPU: at most {limit}"
                    )
                    yield Finding("managed-instances", name, message)
            reservation = props.get("ReservedConcurrentExecutions", MISSING)
            if any(a is not MISSING for a in alternatives(reservation)):
                message = (
                    "ReservedConcurrentExecutions on a capacity provider: a reservation is of "
                    "Lambda's default compute; scale it with its execution environments instead"
                )
                yield Finding("managed-instances", name, message)
            providers = [
                n
                for n in sorted(named_unqualified(config.get("CapacityProviderArn")))
                if (resources.get(n) or {}).get("Type") == "AWS::Lambda::CapacityProvider"
            ]
            provider = providers[0] if providers else None
            provider_props = (resources.get(provider) or {}).get("Properties") or {}
            if provider is None:
                message = (
                    f"CapacityProviderArn {shown(config.get('CapacityProviderArn'))} is no "
                    "capacity provider of this template"
                )
                yield Finding("managed-instances", name, message)
                continue
            requirements = provider_props.get("InstanceRequirements") or {}
            provided = set(items(requirements.get("Architectures", [DEFAULT_ARCHITECTURE])))
            for architecture in items(props.get("Architectures", [DEFAULT_ARCHITECTURE])):
                if architecture not in provided:
                    message = (
                        f"architecture {architecture} on {provider}, whose instances are "
                        f"{', '.join(sorted(map(str, provided)))}"
                    )
                    yield Finding("managed-instances", name, message)


RULES = (
    check_auth,
    check_least_privilege,
    check_leading_keys,
    check_live_alias,
    check_visibility_timeouts,
    check_alarms,
    check_topic_encryption,
    check_managed_instances,
)


# ---------------------------------------------------------------- linter findings set aside
# cfn-lint (and cfn-lint-serverless) findings that do not apply here, each for exactly the
# resources its function returns from the expansion (the template's own resources keep their
# logical ids in it, so one list serves both passes).


def sqs_mappings(template: dict) -> set[str]:
    """Event source mappings that read an SQS queue with a RedrivePolicy."""
    resources = template.get("Resources", {})
    found = set()
    for name, props in resources_of(template, "AWS::Lambda::EventSourceMapping"):
        queue = resources.get(target(props.get("EventSourceArn")), {})
        redrive = (queue.get("Properties") or {}).get("RedrivePolicy", MISSING)
        if queue.get("Type") == "AWS::SQS::Queue" and not may_be_absent(redrive):
            found.add(name)
    return found


def functions_logging_to_a_kept_group(template: dict) -> set[str]:
    """Functions whose LoggingConfig.LogGroup is a log group of the template with a retention."""
    resources = template.get("Resources", {})
    found = set()
    for name, props in resources_of(template, "AWS::Lambda::Function"):
        group = resources.get(target((props.get("LoggingConfig") or {}).get("LogGroup")), {})
        retention = (group.get("Properties") or {}).get("RetentionInDays", MISSING)
        if group.get("Type") == "AWS::Logs::LogGroup" and not may_be_absent(retention):
            found.add(name)
    return found


# The sweeper (republish_events), whose schedule invokes it asynchronously with a constant
# event (a full sweep).
SWEEPER = "RepublishEventsFunction"


def sweep_schedule(template: dict) -> set[str]:
    """The sweeper (its Schedule event, as written) and, in the expansion, the EventBridge rules
    that target it and their invoke permissions."""
    found = {SWEEPER}
    for name, props in resources_of(template, "AWS::Events::Rule"):
        if any(
            function_of(template, t.get("Arn")) == SWEEPER
            for t in items(props.get("Targets", []))
            if isinstance(t, dict)
        ):
            found.add(name)
    for name, props in resources_of(template, "AWS::Lambda::Permission"):
        if props.get("Principal") == "events.amazonaws.com":
            if function_of(template, props.get("FunctionName")) == SWEEPER:
                found.add(name)
    return found


def deployment_preference_parameters(template: dict) -> set[str]:
    """Parameters that the as-written template's DeploymentPreferences name (Globals or a
    function's), kept by the expansion in its Parameters."""
    names = set(template.get("Parameters", {}))
    text = json.dumps(
        [template.get("Globals", {}).get("Function", {}).get("DeploymentPreference")]
        + [
            (r.get("Properties") or {}).get("DeploymentPreference")
            for r in template.get("Resources", {}).values()
            if isinstance(r, dict)
        ]
    )
    return {n for n in names if f'{{"Ref": "{n}"}}' in text}


class LintException(NamedTuple):
    why: str  # why the rule does not apply there, printed with the findings set aside
    names: Callable[[dict], set[str]]  # the logical ids it does not apply to, read from...
    of_template: bool = False  # ...the template as written (True) or its expansion


LINT_EXCEPTIONS = {
    # Lambda takes no on-failure destination for an SQS event source: the queue's redrive
    # policy is the dead-letter path (and the dead-letter-alarm rule watches it).
    "ES1001": LintException(
        "an SQS mapping takes no on-failure destination: its queue's RedrivePolicy is one",
        sqs_mappings,
    ),
    "ES1007": LintException(
        "the sweep's event is a constant: a run that failed is redone by the next one 5 "
        "minutes later (the outbox items stay pending), and RepublishEventsErrorsAlarm "
        "reports it",
        sweep_schedule,
    ),
    "ES4000": LintException(
        "the sweep's event is a constant: an undelivered one holds nothing to redrive; the "
        "next sweep runs 5 minutes later",
        sweep_schedule,
    ),
    "ES6000": LintException(
        "a dead-letter queue needs none of its own: its messages stay 14 days and its alarm "
        "calls an operator",
        lambda expanded: set(dead_letter_queues(expanded)),
    ),
    "ES7000": LintException(
        "the operations topic carries the alarms: an alarm on a dead-letter queue of its email "
        "subscription would notify that same topic",
        lambda expanded: {"OpsEmailSubscription"},
    ),
    "WS1004": LintException(
        "each function logs to its own group (LoggingConfig.LogGroup), named per stack and "
        "binary, with RetentionInDays; the rule looks for a group named after the function",
        functions_logging_to_a_kept_group,
    ),
    # SAM substitutes the parameters of DeploymentPreference while transforming (with the
    # stack's values on deploy, the defaults offline): the expansion no longer names them.
    "W2001": LintException(
        "SAM substitutes DeploymentPreference's parameters while transforming",
        deployment_preference_parameters,
        of_template=True,
    ),
}


def lint_exceptions(template: dict, expanded: dict | None) -> dict[str, set[str]]:
    """{rule id: logical ids} that LINT_EXCEPTIONS sets aside; none without an expansion."""
    if expanded is None:
        return {}
    return {
        rule_id: exception.names(template if exception.of_template else expanded)
        for rule_id, exception in LINT_EXCEPTIONS.items()
    }


def project_findings(template: dict) -> list[Finding]:
    """Every breach of the project rules in the expanded template."""
    return [finding for rule in RULES for finding in rule(template)]


# ---------------------------------------------------------------- compute choices
# The parameter that chooses where the functions run. Each of its values is a deployment of its
# own: its expansion is linted with the parameter values of DEPLOYMENTS (what `sam deploy`
# would be given: OpsEmail has no default, the network of Lambda Managed Instances is
# placeholders of the right form), and the project rules run on the expansion specialized to
# it. A parameter the template requires and a deployment lacks fails cfn-lint (E2900).
COMPUTE_PARAMETER = "ComputeType"
DEPLOYMENTS: dict[str, dict] = {
    "Standard": {"ComputeType": "Standard", "OpsEmail": "ops@example.com"},
    "ManagedInstances": {
        "ComputeType": "ManagedInstances",
        "OpsEmail": "ops@example.com",
        "ManagedInstancesSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
        "ManagedInstancesSecurityGroupIds": ["sg-0aaaaaaaaaaaaaaa1"],
    },
}


def compute_choices(template: dict) -> list[str]:
    """The values of the compute parameter (its AllowedValues), none when the template has no
    such parameter."""
    parameter = (template.get("Parameters") or {}).get(COMPUTE_PARAMETER) or {}
    return [str(v) for v in parameter.get("AllowedValues") or []]


def condition_values(template: dict, parameters: dict[str, str]) -> dict[str, bool | None]:
    """{condition: True, False, or None when the given parameters do not decide it}."""
    conditions = template.get("Conditions") or {}
    unknown = object()

    def operand(value):
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters:
            return str(parameters[value["Ref"]])
        return value if isinstance(value, (str, int, float)) else unknown

    def evaluate(expression, seen: frozenset):
        if not isinstance(expression, dict) or len(expression) != 1:
            return None
        (function, args), = expression.items()
        if function == "Condition":
            return named(args, seen)
        if not isinstance(args, list):
            return None
        if function == "Fn::Equals" and len(args) == 2:
            left, right = (operand(a) for a in args)
            return None if unknown in (left, right) else str(left) == str(right)
        values = [evaluate(a, seen) for a in args]
        if function == "Fn::Not" and len(values) == 1:
            return None if values[0] is None else not values[0]
        if function == "Fn::And":
            return False if False in values else (None if None in values else True)
        if function == "Fn::Or":
            return True if True in values else (None if None in values else False)
        return None

    def named(name, seen: frozenset):
        if not isinstance(name, str) or name in seen or name not in conditions:
            return None
        return evaluate(conditions[name], seen | {name})

    return {name: named(name, frozenset()) for name in conditions}


def specialize(template: dict, parameters: dict[str, str]) -> dict:
    """A copy of `template` as CloudFormation deploys it with these parameter values, as far as
    they decide the conditions: a resource or output whose condition is false is left out, an
    Fn::If on a decided condition is its branch (AWS::NoValue: the property left out). The
    rest, decided by other parameters, stays as it is."""
    known = {k: v for k, v in condition_values(template, parameters).items() if v is not None}
    drop = object()

    def resolve(value):
        if isinstance(value, dict):
            branches = value.get("Fn::If")
            if len(value) == 1 and isinstance(branches, list) and len(branches) == 3:
                if branches[0] in known:
                    chosen = branches[1] if known[branches[0]] else branches[2]
                    return drop if chosen == {"Ref": "AWS::NoValue"} else resolve(chosen)
            resolved = {k: resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not drop}
        if isinstance(value, list):
            return [v for v in (resolve(v) for v in value) if v is not drop]
        return value

    result = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        entries = result.get(section) or {}
        for name in list(entries):
            if known.get((entries[name] or {}).get("Condition")) is False:
                del entries[name]
    for section in ("Resources", "Outputs"):
        if section in result:
            result[section] = resolve(result[section])
    return result


def findings_by_choice(expanded: dict, choices: list[str]) -> list[tuple[Finding, list[str]]]:
    """The project rules' findings on the expansion specialized to each compute choice (the
    expansion itself when there are none), each once with the choices it holds for."""
    if not choices:
        return [(finding, []) for finding in dict.fromkeys(project_findings(expanded))]
    found: dict[Finding, list[str]] = {}
    for choice in choices:
        specialized = specialize(expanded, {COMPUTE_PARAMETER: choice})
        for finding in project_findings(specialized):
            found.setdefault(finding, [])
            if choice not in found[finding]:
                found[finding].append(choice)
    return [(f, [] if len(where) == len(choices) else where) for f, where in found.items()]


def expand(template_path: Path):
    """(the template as plain data, its SAM expansion, how many functions, errors): the
    expansion None (and the template None when it cannot be parsed) on errors."""
    try:
        template = cfn_yaml.load(str(template_path))
    except Exception as exc:  # cfn-lint reports parse errors too; be explicit anyway
        return None, None, 0, [f"cannot parse {template_path}: {exc}"]
    # Plain dicts/strings (the loader's node types carry line marks samtranslator does not need).
    template = json.loads(json.dumps(template))
    placeholders = copy.deepcopy(template)
    functions = placeholder_code_uris(placeholders)
    try:
        expanded = transform(placeholders, {}, NoIamManagedPolicyLoader())
    except InvalidDocumentException as exc:
        return template, None, functions, [f"transform: {c.message}" for c in exc.causes]
    except Exception as exc:
        return template, None, functions, [f"transform: {type(exc).__name__}: {exc}"]
    return template, expanded, functions, []


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
