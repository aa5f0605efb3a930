"""From the template file to what CloudFormation deploys: the template read as plain data, the
AWS::LanguageExtensions transform applied (language_extensions), then the SAM transform, with
every local code location replaced by an s3:// placeholder (as `sam package` would) and a
managed-policy loader that makes no IAM call."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

from cfnlint.decode import cfn_yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform

from .language_extensions import LanguageExtensionsError, expand_language_extensions

# samtranslator warns, when its objects are collected, about usage metrics nobody publishes,
# and, for each DeploymentPreference, about a feature toggle only its service reads.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
logging.getLogger("samtranslator.feature_toggle.feature_toggle").setLevel(logging.ERROR)

# The region of both transforms and of cfn-lint: samtranslator's ARN helpers need one.
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


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


def load(template_path: Path) -> dict:
    """The template file as plain data: dicts, lists and strings (cfn-lint's loader reads the
    short forms, !Ref to Ref; its node types carry line marks nobody here needs)."""
    return json.loads(json.dumps(cfn_yaml.load(str(template_path))))


def expand(template_path: Path):
    """(the template as written, with the AWS::LanguageExtensions transform applied, its SAM
    expansion, how many SAM functions, errors): the expansion None on errors, the template too
    when the file cannot be read or the language extensions not applied."""
    try:
        written = load(template_path)
    except Exception as exc:  # cfn-lint reports parse errors too; be explicit anyway
        return None, None, 0, [f"cannot parse {template_path}: {exc}"]
    try:
        template = expand_language_extensions(written)
    except LanguageExtensionsError as exc:
        return None, None, 0, [f"AWS::LanguageExtensions: {exc}"]
    placeholders = copy.deepcopy(template)
    functions = placeholder_code_uris(placeholders)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    try:
        expanded = transform(placeholders, {}, NoIamManagedPolicyLoader())
    except InvalidDocumentException as exc:
        return template, None, functions, [f"transform: {c.message}" for c in exc.causes]
    except Exception as exc:
        return template, None, functions, [f"transform: {type(exc).__name__}: {exc}"]
    return template, expanded, functions, []
