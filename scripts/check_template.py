#!/usr/bin/env python3
"""Checks the SAM template offline: lints it as written, expands the SAM transform, lints the
expansion.

usage: check_template.py [TEMPLATE]        (default: template.yaml at the repository root)

Run it with the tools venv's python (scripts/tools-venv.sh makes it), e.g.
    .venv/bin/python scripts/check_template.py

Why expand: cfn-lint on the SAM template does not see inside AWS::Serverless::Function
(a broken !Ref in a function's Environment or event passes). The transform is expanded with
samtranslator exactly as CloudFormation would, with every CodeUri replaced by an s3://
placeholder and a managed-policy loader that makes no IAM call, and the plain CloudFormation
result is linted.

Exit status: 0 when there is no error; 1 when cfn-lint reports an error (E...) or one of the
FAILING_WARNINGS below in either pass, or the transform fails; 2 on bad usage.
Other warnings are printed and allowed.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from pathlib import Path

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


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        usage = next(line for line in __doc__.splitlines() if line.startswith("usage:"))
        print(usage, file=sys.stderr)
        return 2
    template_path = Path(argv[1]) if len(argv) == 2 else REPO / "template.yaml"
    if not template_path.is_file():
        print(f"check_template: no such file: {template_path}", file=sys.stderr)
        return 2
    # samtranslator's ARN helpers look up a region for the partition name.
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

    total_fail = total_warn = 0

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

    print(
        f"check_template: {template_path.name}: {total_fail} error(s), "
        f"{total_warn} allowed warning(s)"
    )
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
