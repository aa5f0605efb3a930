"""The template as the stand-in reads it: `template.yaml` loaded with CloudFormation's short tags kept
as data, the `Table` resource's key schema and indexes (what the proxy prices writes by, and the
CreateTable request of the throw-away table), and what Globals gives every function."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml


class _CloudFormationLoader(yaml.SafeLoader):
    """PyYAML's safe loader, which also reads CloudFormation's short tags (!Ref, !GetAtt, !Sub...)."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    # The intrinsic stays as data ({"Ref": ...}): only literal values are read from the template.
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_CloudFormationLoader.add_multi_constructor("!", _tagged)


def load_template(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_CloudFormationLoader)


def table_properties(template: dict) -> dict:
    """The `Table` resource's properties, as deployed."""
    return template["Resources"]["Table"]["Properties"]


def key_names(key_schema: list) -> tuple[str, str | None]:
    """(hash key, range key or None) of a KeySchema."""
    by_type = {element["KeyType"]: element["AttributeName"] for element in key_schema}
    return by_type["HASH"], by_type.get("RANGE")


@dataclasses.dataclass(frozen=True)
class TableShape:
    """What the proxy needs to price writes: the table's key and its global indexes' keys."""

    key: tuple[str, str | None]
    indexes: dict[str, tuple[str, str | None]]

    @classmethod
    def of(cls, template: dict) -> "TableShape":
        properties = table_properties(template)
        return cls(
            key=key_names(properties["KeySchema"]),
            indexes={
                index["IndexName"]: key_names(index["KeySchema"])
                for index in properties.get("GlobalSecondaryIndexes", [])
            },
        )


def create_table_request(template: dict, table_name: str) -> tuple[dict, dict | None]:
    """CreateTable arguments from the template's `Table`, and UpdateTimeToLive's (or None).

    Point-in-time recovery and deletion protection are left out, as the tests leave them out: a
    throw-away table in DynamoDB Local wants neither."""
    properties = table_properties(template)
    request = {
        "TableName": table_name,
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
    }
    if properties.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
            for i in properties["GlobalSecondaryIndexes"]
        ]
    if properties.get("StreamSpecification"):
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": properties["StreamSpecification"]["StreamViewType"],
        }
    ttl = properties.get("TimeToLiveSpecification")
    ttl_request = None
    if ttl and ttl.get("Enabled"):
        ttl_request = {
            "TableName": table_name,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": ttl["AttributeName"]},
        }
    return request, ttl_request


@dataclasses.dataclass(frozen=True)
class FunctionSettings:
    """What the template's Globals give every function and Lambda turns into its environment."""

    memory_mb: int
    timeout_s: int
    # The functions' application log level (AWS_LAMBDA_LOG_LEVEL), which the binaries also filter
    # their logs by (no RUST_LOG: the template sets none).
    log_level: str

    @classmethod
    def of(cls, template: dict, log_level: str | None) -> "FunctionSettings":
        function = template["Globals"]["Function"]
        level = log_level or template["Parameters"]["LogLevel"]["Default"]
        return cls(int(function["MemorySize"]), int(function["Timeout"]), level)


def create_table(client, template: dict, table_name: str) -> None:
    request, ttl = create_table_request(template, table_name)
    client.create_table(**request)
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    if ttl:
        client.update_time_to_live(**ttl)
