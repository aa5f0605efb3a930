"""cfn-lint (its own rules and cfn-lint-serverless's) on the template as written and on its
expansion: the findings it prints, those that fail the check, and those set aside where a rule
does not apply (LINT_EXCEPTIONS, each with its reason, printed as a `set aside` line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, NamedTuple

from cfnlint.api import ManualArgs, lint_file
from cfnlint.context.parameters import ParameterSet

from .expansion import REGION
from .rules import dead_letter_queues
from .values import MISSING, function_of, items, may_be_absent, resources_of, target

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

# cfn-lint-serverless's rules, appended to cfn-lint's own in both passes.
SERVERLESS_RULES = "cfn_lint_serverless.rules"


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
