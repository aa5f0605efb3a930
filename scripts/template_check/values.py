"""Reading the values of a CloudFormation template as the project rules need them: a value under
Fn::If may take either branch (both count), AWS::NoValue leaves the property out (MISSING), and
Ref, Fn::GetAtt and Fn::Sub name the resources they point at."""

from __future__ import annotations

import json
import re

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


def named_resources(value) -> set[str]:
    """The logical ids a value names, qualified or not: a Ref or GetAtt, or each ${Name} or
    ${Name.Attr} of an Fn::Sub string (a variable of the Fn::Sub: what its value names)."""
    named: set[str] = set()
    for alt in alternatives(value):
        named |= {target(alt)} - {None}
        sub = alt.get("Fn::Sub") if isinstance(alt, dict) else None
        text, variables = (sub[0], sub[1]) if isinstance(sub, list) and len(sub) == 2 else (sub, {})
        if not isinstance(text, str):
            continue
        for name in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", text):
            variables = variables if isinstance(variables, dict) else {}
            named |= named_resources(variables[name]) if name in variables else {name}
    return named
