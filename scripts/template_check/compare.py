"""Two templates set side by side as CloudFormation deploys them: each expanded (language
extensions, SAM) and specialized to the same parameter values (the compute choice), then compared
resource by resource, every property. A rewrite of template.yaml that means to change nothing
shows no difference.

usage: python scripts/template_check/compare.py OLD NEW [NAME=VALUE ...]
       (from the repo root, with the tools venv's python; NAME=VALUE: e.g. ComputeType=Standard,
       the parameters the expansions are specialized to; default: each compute choice of NEW)

Two spellings of one value count as the same:
  - an Fn::Sub whose variables are literal strings, Refs or GetAtts, and the Fn::Sub with them
    written into its text (what CloudFormation resolves either to); an Fn::Sub of a text
    without ${...} and that text;
  - a role's statements, whether in its inline policies or in a customer managed policy of the
    template that it attaches (ManagedPolicyArns): the role is compared with its attached
    policies' statements, and a managed policy that only one template has is reported as such.
  - a dashboard's body laid out differently: its JSON is compared (each ${...} kept as text).
A Condition that the parameter values make true is left out (it creates the resource either way)
and listed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the package's parent on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "template_check"

from .compute import COMPUTE_PARAMETER, compute_choices, condition_values, specialize  # noqa: E402
from .expansion import expand, load  # noqa: E402
from .values import items, target  # noqa: E402


def inline_sub(value):
    """`value` with each Fn::Sub's literal, Ref and GetAtt variables written into its text."""
    if isinstance(value, list):
        return [inline_sub(v) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: inline_sub(v) for k, v in value.items()}
    sub = value.get("Fn::Sub")
    if len(value) == 1 and isinstance(sub, str) and "${" not in sub:
        return sub
    if len(value) != 1 or not (isinstance(sub, list) and len(sub) == 2):
        return value
    text, variables = sub
    if not (isinstance(text, str) and isinstance(variables, dict)):
        return value
    kept = {}
    for name, variable in variables.items():
        if isinstance(variable, str):
            written = variable
        elif isinstance(variable, dict) and isinstance(variable.get("Ref"), str):
            written = "${" + variable["Ref"] + "}"
        elif isinstance(variable, dict) and isinstance(variable.get("Fn::GetAtt"), list):
            written = "${" + ".".join(variable["Fn::GetAtt"]) + "}"
        else:
            kept[name] = variable
            continue
        text = re.sub(r"\$\{" + re.escape(name) + r"\}", lambda _: written, text)
    if not kept and "${" not in text:
        return text
    return {"Fn::Sub": [text, kept] if kept else text}


def statements_of_roles(resources: dict) -> tuple[dict, set[str]]:
    """{role: its statements, inline and of the template's managed policies it attaches, in a
    canonical order}, and the managed policies so attached."""
    attached: set[str] = set()
    found: dict[str, list] = {}
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        props = resource.get("Properties") or {}
        statements = [
            s
            for policy in props.get("Policies") or []
            for s in items((policy.get("PolicyDocument") or {}).get("Statement", []))
        ]
        for arn in items(props.get("ManagedPolicyArns", [])):
            policy = resources.get(target(arn)) or {}
            if policy.get("Type") == "AWS::IAM::ManagedPolicy":
                attached.add(target(arn))
                document = (policy.get("Properties") or {}).get("PolicyDocument") or {}
                statements += list(items(document.get("Statement", [])))
        found[name] = sorted(json.dumps(s, sort_keys=True) for s in statements)
    return found, attached


def dashboard_json(resource: dict) -> dict:
    """A dashboard with its body's text replaced by the JSON it holds (${...} read as strings)."""
    props = resource.get("Properties") or {}
    body = props.get("DashboardBody")
    text = body if isinstance(body, str) else (body or {}).get("Fn::Sub")
    rest = None
    if isinstance(text, list) and text:
        text, rest = text[0], text[1:]
    if resource.get("Type") != "AWS::CloudWatch::Dashboard" or not isinstance(text, str):
        return resource
    try:
        parsed = json.loads(text)
    except ValueError:
        return resource
    return {**resource, "Properties": {**props, "DashboardBody": {"json": parsed, "rest": rest}}}


def deployed(path: Path, parameters: dict[str, str]) -> tuple[dict, dict, list[str]]:
    """The resources `path` deploys with these parameter values, as written and normalized, and
    those whose Condition the values make true."""
    _, expanded, _, errors = expand(path)
    if expanded is None:
        raise SystemExit(f"{path}: {'; '.join(errors)}")
    known = condition_values(expanded, parameters)
    resources = specialize(expanded, parameters).get("Resources", {})
    true = []
    for name, resource in resources.items():
        if known.get(resource.get("Condition")) is True:
            del resource["Condition"]
            true.append(name)
    normalized = {name: dashboard_json(r) for name, r in inline_sub(resources).items()}
    return resources, normalized, sorted(true)


def differences(old, new, path: str = ""):
    """The paths at which two values differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            where = f"{path}/{key}"
            if key not in old or key not in new:
                yield where, old.get(key, "(absent)"), new.get(key, "(absent)")
            else:
                yield from differences(old[key], new[key], where)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, f"{path}/{index}")
    elif old != new:
        yield path or "/", old, new


def without_policies(resource: dict) -> dict:
    """A role without its policies (compared as statements_of_roles)."""
    props = resource.get("Properties") or {}
    rest = {k: v for k, v in props.items() if k not in ("Policies", "ManagedPolicyArns")}
    return {**resource, "Properties": rest}


def compare(old_path: Path, new_path: Path, parameters: dict[str, str]) -> int:
    """Prints the comparison; returns how many resources differ or exist in one only (a managed
    policy that a role attaches is compared with that role)."""
    old_written, old, _ = deployed(old_path, parameters)
    new_written, new, true = deployed(new_path, parameters)
    old_roles, old_attached = statements_of_roles(old)
    new_roles, new_attached = statements_of_roles(new)
    shown = ", ".join(f"{k}={v}" for k, v in parameters.items()) or "no parameters"
    print(f"{old_path.name} ({len(old)} resources) and {new_path.name} ({len(new)}), {shown}")
    changed = 0
    for name in sorted(set(old) ^ set(new)):
        which, attached = ("old", old_attached) if name in old else ("new", new_attached)
        if name in attached:
            print(f"  only in {which}: {name}, a managed policy of its role (compared there)")
        else:
            print(f"  only in {which}: {name}")
            changed += 1
    both = sorted(set(old) & set(new))
    for name in both:
        a, b = old[name], new[name]
        found = []
        if a.get("Type") == "AWS::IAM::Role" and b.get("Type") == "AWS::IAM::Role":
            if old_roles[name] != new_roles[name]:
                found.append(("statements", old_roles[name], new_roles[name]))
            a, b = without_policies(a), without_policies(b)
        found += list(differences(a, b))
        if found:
            changed += 1
            print(f"  {name}:")
            for where, x, y in found:
                print(f"    {where}: {json.dumps(x, sort_keys=True)} -> {json.dumps(y, sort_keys=True)}")
            continue
        written = [where for where, _, _ in differences(old_written[name], new_written[name])]
        policies = ("/Properties/Policies", "/Properties/ManagedPolicyArns")
        if a.get("Type") == "AWS::IAM::Role" and any(w.startswith(policies) for w in written):
            written = [w for w in written if not w.startswith(policies)] + ["its policies"]
        if written:
            where = ", ".join(written[:3]) + (", ..." if len(written) > 3 else "")
            print(f"  {name}: the same, spelled differently at {where}")
    print(f"  {len(both)} in both; differing, or in one only: {changed}")
    if true:
        print(f"  Condition true with these values, left out: {', '.join(true)}")
    return changed


def main(argv: list[str]) -> int:
    paths = [a for a in argv[1:] if "=" not in a]
    if len(paths) != 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    old_path, new_path = map(Path, paths)
    given = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    runs = [given]
    if not given:
        choices = compute_choices(load(new_path))
        runs = [{COMPUTE_PARAMETER: choice} for choice in choices] or [{}]
    return 1 if sum(compare(old_path, new_path, run) for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
