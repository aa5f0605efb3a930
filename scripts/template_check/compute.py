"""The compute choices of the template (the values of its ComputeType parameter), each checked as a
deployment of its own: the parameter values cfn-lint lints each with, and the template as
CloudFormation deploys it with each (the conditions that the compute parameter decides
evaluated, the rest left as it is)."""

from __future__ import annotations

import copy

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
