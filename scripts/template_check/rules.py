"""The project's own rules, applied to the expanded template (plain CloudFormation, intrinsic
functions unresolved): each yields a Finding (rule, resource, message) per breach. A value under
Fn::If counts with both branches: a rule must hold whatever the parameters. The rules, and what
each refuses, are listed in scripts/check_template.py's help and docs/deploy.md ("The template
check").
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import NamedTuple

from .compute import COMPUTE_PARAMETER, specialize
from .values import (
    MISSING,
    alternatives,
    function_of,
    is_wildcard_resource,
    items,
    may_be_absent,
    named_resources,
    named_unqualified,
    number,
    resources_of,
    shown,
    sub_text,
    target,
)

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


def policy_roles(template: dict, holder: str) -> set[str]:
    """The roles a policy holder's statements apply to: the holder itself (a role), or the roles
    an AWS::IAM::Policy or ManagedPolicy applies to (one of its Roles, or a role that lists it in
    its ManagedPolicyArns)."""
    resource = template.get("Resources", {}).get(holder, {})
    if resource.get("Type") == "AWS::IAM::Role":
        return {holder}
    roles = {target(r) for r in items((resource.get("Properties") or {}).get("Roles", []))}
    return roles | {
        name
        for name, props in resources_of(template, "AWS::IAM::Role")
        if holder in {target(arn) for arn in items(props.get("ManagedPolicyArns", []))}
    }


def policy_functions(template: dict, holder: str) -> list[str]:
    """The functions a policy holder's statements apply to: those whose Role is one of its roles
    (policy_roles). Users, groups and the roles of no function: none."""
    roles = policy_roles(template, holder)
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
                    who = f"no function has this role or policy: it owns {what}"
                message = f"{where}: may write {shown(pattern)!r} items ({who})"
                yield Finding("leading-keys", name, message)


# What invokes a function, and the property naming what it invokes.
INVOKERS = {
    "AWS::Lambda::EventSourceMapping": "FunctionName",
    "AWS::Lambda::Permission": "FunctionName",
    "AWS::ApiGatewayV2::Integration": "IntegrationUri",
    "AWS::Lambda::Url": "TargetFunctionArn",
}


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


# What CodeDeploy does with the role of a Lambda deployment group: shift the alias of the group's
# function (lambda: actions, on that function, its alias and its versions) and read the group's
# rollback alarms (cloudwatch:). No hooks, no triggers: nothing else.
DEPLOYMENT_ROLE_SERVICES = ("lambda", "cloudwatch")


def deployment_groups(template: dict) -> dict[str, str]:
    """{deployment group: the function whose alias it shifts} (the alias's UpdatePolicy)."""
    found = {}
    for name, resource in template.get("Resources", {}).items():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Lambda::Alias":
            update = (resource.get("UpdatePolicy") or {}).get("CodeDeployLambdaAliasUpdate") or {}
            group = target(update.get("DeploymentGroupName"))
            function = function_of(template, {"Ref": name})
            if group is not None and function is not None:
                found[group] = function
    return found


def check_deployment_roles(template: dict):
    resources = template.get("Resources", {})
    groups = deployment_groups(template)
    for group, props in resources_of(template, "AWS::CodeDeploy::DeploymentGroup"):
        function = groups.get(group)
        if function is None:
            continue
        alarm_config = props.get("AlarmConfiguration") or {}
        alarms = {target((a or {}).get("Name")) for a in items(alarm_config.get("Alarms", []))}
        alarms -= {None}
        for arn in alternatives(props.get("ServiceRoleArn", MISSING)):
            role = target(arn)
            if resources.get(role, {}).get("Type") != "AWS::IAM::Role":
                message = f"ServiceRoleArn {shown(arn)} is no role of this template: unchecked"
                yield Finding("deployment-role", group, message)
                continue
            allowed = {
                "lambda": ({function}, f"its function {function}"),
                "cloudwatch": (alarms, f"its alarms ({', '.join(sorted(alarms)) or 'none'})"),
            }
            for holder, where, statement in allow_statements(template):
                if role not in policy_roles(template, holder):
                    continue
                actions = [a for a in items(statement.get("Action", [])) if isinstance(a, str)]
                for service in sorted({a.split(":", 1)[0].lower() for a in actions}):
                    granted = ", ".join(a for a in actions if a.lower().startswith(f"{service}:"))
                    if service not in DEPLOYMENT_ROLE_SERVICES:
                        message = (
                            f"{where}: {granted}: CodeDeploy's role of {group} shifts the alias "
                            f"of {function} and reads its alarms, nothing else (no hooks, no "
                            "triggers)"
                        )
                        yield Finding("deployment-role", holder, message)
                        continue
                    names, what = allowed[service]
                    for resource in items(statement.get("Resource", [])):
                        named = named_resources(resource)
                        if not named or not named <= names:
                            message = (
                                f"{where}: {granted} on {shown(resource)!r}: only on {what}, "
                                f"as the role of {group}"
                            )
                            yield Finding("deployment-role", holder, message)


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
    check_deployment_roles,
    check_visibility_timeouts,
    check_alarms,
    check_topic_encryption,
    check_managed_instances,
)


def project_findings(template: dict) -> list[Finding]:
    """Every breach of the project rules in the expanded template."""
    return [finding for rule in RULES for finding in rule(template)]


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
