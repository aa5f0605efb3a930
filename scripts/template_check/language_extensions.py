"""The AWS::LanguageExtensions transform, as far as template.yaml uses it, expanded before the SAM
transform (which does not know it), as CloudFormation does on deploy.

Supported, and nothing else (anything else fails the check, so that the check never sees less than
CloudFormation deploys):
  Fn::ForEach::<Loop>: [Identifier, [values...], {OutputKey: OutputValue}]
      in Resources, Conditions, Outputs and anywhere inside a resource; nested loops too. Each
      value gives a copy of the fragment in which ${Identifier} and &{Identifier} (the value
      without its non-alphanumeric characters) are replaced in the keys and in Fn::Sub strings,
      and {"Ref": Identifier} is the value. The collection is a literal list.
  Fn::FindInMap whose map name and keys are then literal strings: the mapping's value.
  Ref and Fn::GetAtt whose argument is such an intrinsic function: the string it resolves to.
An Fn::Sub left without any ${...} is that string. Every other intrinsic function is left to
CloudFormation (a FindInMap keyed by a parameter stays as it is), and so are the
mappings it reads; those that only the transform read are left out of its result.
"""

from __future__ import annotations

import json
import re
from typing import Any

LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
FOR_EACH = "Fn::ForEach::"
# Intrinsic functions of the transform that the check does not expand.
UNSUPPORTED = ("Fn::Length", "Fn::ToJsonString")


class LanguageExtensionsError(ValueError):
    """A construct of the transform that the check cannot expand."""


def uses_language_extensions(template: dict) -> bool:
    transforms = template.get("Transform") or []
    transforms = transforms if isinstance(transforms, list) else [transforms]
    return LANGUAGE_EXTENSIONS in transforms


def expand_language_extensions(template: dict) -> dict:
    """A copy of `template` with the transform applied and removed from its Transform list."""
    if not uses_language_extensions(template):
        return template
    result = dict(template)
    transforms = template["Transform"] if isinstance(template["Transform"], list) else []
    rest = [t for t in transforms if t != LANGUAGE_EXTENSIONS]
    if rest:
        result["Transform"] = rest[0] if len(rest) == 1 else rest
    else:
        result.pop("Transform")
    mappings = template.get("Mappings") or {}
    for section in ("Conditions", "Resources", "Outputs"):
        if section in template:
            result[section] = resolve(loops(template[section], {}, section), mappings)
    # A mapping that only the transform read is gone from what it hands on; one that a lookup
    # left for CloudFormation reads (in Globals too, which SAM copies into each function) stays.
    text = json.dumps([result.get(s) for s in ("Conditions", "Resources", "Outputs", "Globals")])
    used = {m for m in mappings if f'{{"Fn::FindInMap": ["{m}"' in text}
    if "Mappings" in result:
        result["Mappings"] = {m: v for m, v in mappings.items() if m in used}
        if not result["Mappings"]:
            del result["Mappings"]
    return result


def substituted(text: str, values: dict[str, str]) -> str:
    """`text` with ${Identifier} and &{Identifier} of each loop identifier replaced."""
    for identifier, value in values.items():
        text = text.replace("${" + identifier + "}", value)
        text = text.replace("&{" + identifier + "}", re.sub(r"[^0-9A-Za-z]", "", value))
    return text


def loops(value: Any, values: dict[str, str], where: str) -> Any:
    """`value` with every Fn::ForEach expanded and the identifiers of the enclosing loops
    (`values`) substituted."""
    if isinstance(value, list):
        return [loops(v, values, where) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and isinstance(value["Ref"], str) and value["Ref"] in values:
        return values[value["Ref"]]
    if set(value) == {"Fn::Sub"} and values:
        sub = value["Fn::Sub"]
        if isinstance(sub, str):
            return {"Fn::Sub": substituted(sub, values)}
        if isinstance(sub, list) and sub and isinstance(sub[0], str):
            rest = [loops(v, values, where) for v in sub[1:]]
            return {"Fn::Sub": [substituted(sub[0], values), *rest]}
    result: dict = {}
    for key, item in value.items():
        if key in UNSUPPORTED:
            raise LanguageExtensionsError(f"{where}: {key} is not expanded by the check")
        if not key.startswith(FOR_EACH):
            name = substituted(key, values)
            if name in result:
                raise LanguageExtensionsError(f"{where}: {name} generated twice")
            result[name] = loops(item, values, f"{where}/{name}")
            continue
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            raise LanguageExtensionsError(f"{where}/{key}: not [Identifier, Collection, Fragment]")
        identifier, collection, fragment = item
        collection = loops(collection, values, where)
        if not (isinstance(collection, list) and all(isinstance(v, str) for v in collection)):
            raise LanguageExtensionsError(f"{where}/{key}: the collection is not a list of strings")
        if not isinstance(fragment, dict):
            raise LanguageExtensionsError(f"{where}/{key}: the fragment is not a mapping")
        for element in collection:
            for name, generated in loops(fragment, {**values, identifier: element}, where).items():
                if name in result or name in value:
                    raise LanguageExtensionsError(f"{where}: {name} generated twice")
                result[name] = generated
    return result


def resolve(value: Any, mappings: dict) -> Any:
    """`value` with each Fn::FindInMap of literal keys replaced by its value, each Ref and GetAtt
    of a resolved intrinsic by its string, and each Fn::Sub without variables by its text."""
    if isinstance(value, list):
        return [resolve(v, mappings) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: resolve(v, mappings) for k, v in value.items()}
    if len(value) != 1:
        return value
    (function, args), = value.items()
    if function == "Fn::FindInMap" and isinstance(args, list) and len(args) == 3:
        if all(isinstance(a, str) for a in args):
            name, top, second = args
            try:
                return mappings[name][top][second]
            except (KeyError, TypeError):
                raise LanguageExtensionsError(f"no {name}/{top}/{second} in Mappings") from None
    if function == "Fn::Sub" and isinstance(args, str) and "${" not in args:
        return args
    if function == "Ref" and isinstance(args, dict):
        raise LanguageExtensionsError(f"Ref of {args}: not a string after the transform")
    if function == "Fn::GetAtt" and isinstance(args, list) and args and not isinstance(args[0], str):
        raise LanguageExtensionsError(f"Fn::GetAtt of {args[0]}: not a string after the transform")
    return value
