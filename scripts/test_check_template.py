#!/usr/bin/env python3
"""Tests of the template check's project rules (scripts/check_template.py): template.yaml passes,
and for each rule a copy of it broken in one place fails the check with a message that names the
resource and the rule, in the expansion of each compute choice (ComputeType). Plus the
expansion of the template's AWS::LanguageExtensions (as cfn-lint's own, a broken loop breaks
everything it generates, what the check does not expand fails), the comparison of two templates'
expansions, and the dashboard: valid JSON that shows every alarm and every application metric.

usage: .venv/bin/python scripts/test_check_template.py [-v]      (the tools venv)

Each broken copy is checked by the check's own entry point with --rules-only (the SAM transform
and the project rules: what a rule test needs, in a tenth of a second instead of five). The
whole check, both cfn-lint passes included, runs as a separate process, as
`scripts/check-template.sh` runs it, on template.yaml (which must pass), on one broken copy
(the rules are part of the full check and fail it), on one that only cfn-lint-serverless
catches (its rules run, and set aside only the findings that do not apply) and on one that only
cfn-lint with the parameter values of Lambda Managed Instances catches, concurrently with the
others.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import subprocess
import sys
import tempfile
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
CHECK = SCRIPTS / "check_template.py"

sys.path.insert(0, str(SCRIPTS))

import check_template  # noqa: E402
from template_check.expansion import load  # noqa: E402
from template_check.language_extensions import expand_language_extensions  # noqa: E402


def load_template() -> dict:
    """template.yaml as plain JSON data (short-form tags become Ref, Fn::GetAtt, ...), with its
    Fn::ForEach loops expanded: every resource by its name, as the broken copies need."""
    return expand_language_extensions(load(REPO / "template.yaml"))


def resource(template: dict, name: str) -> dict:
    return template["Resources"][name]["Properties"]


def statement(template: dict, holder: str, sid: str) -> dict:
    """A statement of a role's inline policies or of a managed policy."""
    props = resource(template, holder)
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    documents += [props["PolicyDocument"]] if "PolicyDocument" in props else []
    for document in documents:
        for found in document["Statement"]:
            if found.get("Sid") == sid:
                return found
    raise KeyError(f"{holder} has no statement {sid}")


# ---------------------------------------------------------------- the broken copies
# name -> (breaks a copy of the template in place, lines the check's output must contain).
# Every case breaks one thing only.
CASES = {}


def case(*expected: str):
    def register(breaks):
        CASES[breaks.__name__] = (breaks, expected)
        return breaks

    return register


@case(
    "ERROR [auth] AllocateRoute: route ANY /allocate has no authorizer (AuthorizationType 'NONE')"
)
def route_authorization_none(t):
    resource(t, "AllocateRoute")["AuthorizationType"] = "NONE"


@case(
    "ERROR [auth] AllocationsRoute: route ANY /allocations/{orderid} has no authorizer "
    "(AuthorizationType missing)"
)
def route_authorizer_only_in_jwt_mode(t):
    props = resource(t, "AllocationsRoute")
    props["AuthorizationType"] = {"Fn::If": ["UseJwt", "JWT", {"Ref": "AWS::NoValue"}]}


@case(
    "ERROR [auth] ServerlessHttpApi: route GET /stock has no authorizer (no security requirement)"
)
def sam_http_api_event_without_auth(t):
    # A function given an HttpApi event the SAM way: SAM adds an implicit API without authorizer.
    resource(t, "AllocationsFunction")["Events"] = {
        "Stock": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/stock"}}
    }


@case(
    "ERROR [least-privilege] AllocationsRolePolicy: policy, statement ReadModelByOrder: "
    "resource '*' for dynamodb:Query"
)
def resource_star(t):
    statement(t, "AllocationsRolePolicy", "ReadModelByOrder")["Resource"] = "*"


@case(
    "ERROR [least-privilege] AddBatchRolePolicy: policy, statement ProductUnitOfWork: "
    "resource 'arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:*'"
)
def resource_every_table(t):
    statement(t, "AddBatchRolePolicy", "ProductUnitOfWork")["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:*"
    }


@case(
    "ERROR [least-privilege] ReallocateRolePolicy: policy, statement "
    "ConsumeReallocationQueue: wildcard action 'sqs:*'"
)
def service_wildcard_action(t):
    statement(t, "ReallocateRolePolicy", "ConsumeReallocationQueue")["Action"] = "sqs:*"


@case(
    "ERROR [least-privilege] PublishEventsRolePolicy: policy, statement PublishEvents: "
    "wildcard action '*'"
)
def action_star(t):
    statement(t, "PublishEventsRolePolicy", "PublishEvents")["Action"] = "*"


@case(
    "ERROR [least-privilege] AllocateRole: policy allocate, statement Tracing: resource '*' for "
    "xray:PutTraceSegments, xray:PutTelemetryRecords, xray:GetSamplingRules"
)
def xray_statement_with_more_than_the_write_actions(t):
    statement(t, "AllocateRole", "Tracing")["Action"].append("xray:GetSamplingRules")


@case(
    "ERROR [least-privilege] PublishEventsRole: policy publish_events, statement ListTables: "
    "dynamodb:ListTables takes no resource in IAM (it applies to '*' only): drop it"
)
def action_that_takes_no_resource(t):
    resource(t, "PublishEventsRole")["Policies"][0]["PolicyDocument"]["Statement"].append(
        {
            "Sid": "ListTables",
            "Effect": "Allow",
            "Action": "dynamodb:ListTables",
            "Resource": {"Fn::GetAtt": ["Table", "Arn"]},
        }
    )


@case(
    "ERROR [least-privilege] PublishEventsRolePolicy: policy, statement ListStreams: "
    "dynamodb:ListStreams takes no resource in IAM (it applies to '*' only): grant it on '*'"
)
def list_streams_on_the_stream(t):
    # Granted on the stream's ARN it grants nothing.
    statement(t, "PublishEventsRolePolicy", "ListStreams")["Resource"] = {
        "Fn::GetAtt": ["Table", "StreamArn"]
    }


@case(
    "ERROR [least-privilege] PublishEventsRolePolicy: policy, statement ListStreams: "
    "resource '*' for dynamodb:ListStreams, dynamodb:GetRecords (only dynamodb:ListStreams, "
    "xray:PutTelemetryRecords and xray:PutTraceSegments may use '*')"
)
def star_for_more_than_list_streams(t):
    statement(t, "PublishEventsRolePolicy", "ListStreams")["Action"] = [
        "dynamodb:ListStreams",
        "dynamodb:GetRecords",
    ]


@case(
    "ERROR [leading-keys] NotifyOutOfStockRolePolicy: policy, statement "
    "NotificationRecords: dynamodb:UpdateItem on Table without a "
    "dynamodb:LeadingKeys condition"
)
def notifier_update_without_leading_keys(t):
    del statement(t, "NotifyOutOfStockRolePolicy", "NotificationRecords")["Condition"]


@case(
    "ERROR [leading-keys] NotifyOutOfStockRolePolicy: policy, statement "
    "NotificationRecords: may write 'OUTBOX#*' items (its function NotifyOutOfStockFunction "
    "owns NOTIFIED#)"
)
def notifier_may_write_outbox_items(t):
    # It could insert an event that the relay then publishes: the forgery the topic policy bars.
    condition = statement(t, "NotifyOutOfStockRolePolicy", "NotificationRecords")["Condition"]
    condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("OUTBOX#*")


@case(
    "ERROR [leading-keys] PublishEventsRolePolicy: policy, statement MarkPublished: "
    "may write 'PRODUCT#*' items (its function PublishEventsFunction owns OUTBOX#)"
)
def relay_may_write_product_items(t):
    condition = statement(t, "PublishEventsRolePolicy", "MarkPublished")["Condition"]
    condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] = ["OUTBOX#*", "PRODUCT#*"]


@case(
    "ERROR [leading-keys] AllocateRolePolicy: policy, statement ProductCommit: "
    "dynamodb:PutItem, dynamodb:DeleteItem on Table without a dynamodb:LeadingKeys condition"
)
def leading_keys_for_any_value(t):
    # ForAnyValue lets a request through when one of its keys matches.
    commit = statement(t, "AllocateRolePolicy", "ProductCommit")
    commit["Condition"] = {"ForAnyValue:StringLike": commit["Condition"]["ForAllValues:StringLike"]}


@case(
    "ERROR [leading-keys] AllocationsRole: policy allocations, statement WriteOrders: "
    "may write 'ORDER#*' items (its function AllocationsFunction owns no item of the table)"
)
def read_model_role_writes(t):
    resource(t, "AllocationsRole")["Policies"][0]["PolicyDocument"]["Statement"].append(
        {
            "Sid": "WriteOrders",
            "Effect": "Allow",
            "Action": "dynamodb:PutItem",
            "Resource": {"Fn::GetAtt": ["Table", "Arn"]},
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["ORDER#*"]}},
        }
    )


@case(
    "ERROR [least-privilege] CodeDeployServiceRole: attaches managed policy "
    "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"
)
def deployments_with_the_role_sam_generates(t):
    # Without a DeploymentPreference Role (one function without its own is enough), SAM
    # generates one with an AWS managed policy.
    del resource(t, "PublishEventsFunction")["DeploymentPreference"]["Role"]


@case(
    "ERROR [deployment-role] PublishEventsDeploymentRole: policy shift-live-alias, statement "
    'ShiftTheLiveAlias: lambda:GetAlias, lambda:UpdateAlias on \'{"Fn::GetAtt": '
    '["RepublishEventsFunction", "Arn"]}\': only on its function PublishEventsFunction, as the '
    "role of PublishEventsFunctionDeploymentGroup"
)
def deployment_role_shifts_another_function(t):
    # Each function's deployments have a role of their own, allowed on that function only.
    statement(t, "PublishEventsDeploymentRole", "ShiftTheLiveAlias")["Resource"].append(
        {"Fn::GetAtt": ["RepublishEventsFunction", "Arn"]}
    )


@case(
    "ERROR [deployment-role] RepublishEventsDeploymentRole: policy shift-live-alias, statement "
    'ReadTheRollbackAlarm: cloudwatch:DescribeAlarms on \'{"Fn::GetAtt": '
    '["PublishEventsErrorsAlarm", "Arn"]}\': only on its alarms (RepublishEventsErrorsAlarm)'
)
def deployment_role_reads_another_functions_alarm(t):
    statement(t, "RepublishEventsDeploymentRole", "ReadTheRollbackAlarm")["Resource"] = {
        "Fn::GetAtt": ["PublishEventsErrorsAlarm", "Arn"]
    }


@case(
    "ERROR [deployment-role] AddBatchDeploymentRole: policy shift-live-alias, statement "
    'ShiftTheLiveAlias: lambda:GetAlias, lambda:UpdateAlias on \'{"Fn::GetAtt": '
    '["AddBatchFunction", "Arn"]}\': only on its function AllocateFunction, as the role of '
    "AllocateFunctionDeploymentGroup (ComputeType=Standard only)"
)
def deployment_role_shared_by_two_functions(t):
    # AllocateFunction deployed with AddBatch's role (its twin keeps its own).
    preference = resource(t, "AllocateFunction")["DeploymentPreference"]
    preference["Role"] = {"Fn::GetAtt": ["AddBatchDeploymentRole", "Arn"]}


@case(
    "ERROR [deployment-role] NotifyOutOfStockDeploymentRole: policy shift-live-alias, statement "
    "Trigger: sns:Publish: CodeDeploy's role of NotifyOutOfStockFunctionDeploymentGroup shifts "
    "the alias of NotifyOutOfStockFunction and reads its alarms, nothing else"
)
def deployment_role_with_a_trigger(t):
    resource(t, "NotifyOutOfStockDeploymentRole")["Policies"][0]["PolicyDocument"][
        "Statement"
    ].append({"Sid": "Trigger", "Effect": "Allow", "Action": "sns:Publish",
              "Resource": {"Ref": "EventsTopic"}})


@case(
    "ERROR [least-privilege] ChangeBatchQuantityRole: attaches managed policy "
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
)
def aws_managed_policy(t):
    resource(t, "ChangeBatchQuantityRole")["ManagedPolicyArns"].append(
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    )


@case(
    "ERROR [least-privilege] ReallocateFunctionRole: attaches managed policy "
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "ERROR [least-privilege] ReallocateFunctionRole: attaches managed policy "
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    # Its twin on Lambda Managed Instances, without a role either.
    "ERROR [least-privilege] ReallocateLmiFunctionRole: attaches managed policy "
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole: only this template's "
    "own AWS::IAM::ManagedPolicy may be attached (AWS managed policies grant '*') "
    "(ComputeType=ManagedInstances only)",
)
def function_with_the_role_sam_generates(t):
    # Without Role, SAM generates one with AWS managed policies (Resource "*"), for the
    # statements of the role and of its managed policy (both gone: a role of no function may
    # write no item).
    props = resource(t, "ReallocateFunction")
    del props["Role"]
    props["Policies"] = [
        resource(t, "ReallocateRole")["Policies"][0]["PolicyDocument"],
        resource(t, "ReallocateRolePolicy")["PolicyDocument"],
    ]
    del t["Resources"]["ReallocateRole"], t["Resources"]["ReallocateRolePolicy"]
    lmi = resource(t, "ReallocateLmiFunction")
    del lmi["Role"]
    lmi["Policies"] = props["Policies"]


@case(
    "ERROR [least-privilege] ApiReadPolicy: policy, statement ReadRoute: resource "
    "'arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*' "
    "for execute-api:Invoke"
)
def caller_policy_on_every_api(t):
    resource(t, "ApiReadPolicy")["PolicyDocument"]["Statement"][0]["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*"
    }


@case(
    "ERROR [live-alias] AllocateIntegration: invokes AllocateFunction itself, not its alias "
    "AllocateFunctionAliaslive: past the gradual deployment",
    "ERROR [live-alias] AllocateInvokePermission: invokes AllocateFunction itself",
)
def route_invokes_latest(t):
    # The route would reach $LATEST: every new version at once, whatever the canary says.
    resource(t, "AllocateIntegration")["IntegrationUri"] = {
        "Fn::GetAtt": ["AllocateFunction", "Arn"]
    }
    resource(t, "AllocateInvokePermission")["FunctionName"] = {"Ref": "AllocateFunction"}


@case("ERROR [live-alias] SweepRule: invokes RepublishEventsFunction itself")
def rule_targets_the_function_itself(t):
    # A schedule of the template's own (not a SAM event) on the function's unqualified ARN.
    function_arn = {"Fn::Sub": "${RepublishEventsFunction.Arn}"}
    t["Resources"]["SweepRule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": "rate(5 minutes)",
            "Targets": [{"Id": "sweep", "Arn": function_arn}],
        },
    }


@case(
    "ERROR [visibility-timeout] ReallocationQueue: VisibilityTimeout 59 s is under 6x the Timeout "
    "of its consumer ReallocateFunction (10 s): at least 60 s"
)
def visibility_timeout_too_short(t):
    resource(t, "ReallocationQueue")["VisibilityTimeout"] = 59


@case(
    "ERROR [visibility-timeout] ReallocationQueue: VisibilityTimeout 60 s is under 6x the Timeout "
    "of its consumer ReallocateFunction (15 s): at least 90 s"
)
def consumer_timeout_raised(t):
    resource(t, "ReallocateFunction")["Timeout"] = 15


@case(
    "ERROR [dead-letter-alarm] ReallocationDeadLetterQueue: dead-letter queue of "
    "ReallocationQueue: no alarm with an action"
)
def dead_letter_alarm_without_action(t):
    del resource(t, "ReallocationDeadLetterAlarm")["AlarmActions"]


@case(
    "ERROR [dead-letter-alarm] PublishEventsFailureQueue: on-failure destination of "
    "PublishEventsFunctionOutbox: no alarm with an action"
)
def failure_queue_alarm_watches_another_queue(t):
    resource(t, "PublishEventsFailureAlarm")["Dimensions"][0]["Value"] = {
        "Fn::GetAtt": ["ReallocationQueue", "QueueName"]
    }


@case(
    "ERROR [dead-letter-alarm] ReallocationQueue: dead-letter queue of "
    "OutOfStockEmailSubscription: no alarm with an action"
)
def subscription_dead_letter_queue_without_alarm(t):
    resource(t, "OutOfStockEmailSubscription")["RedrivePolicy"] = {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ReallocationQueue", "Arn"]}
    }


@case(
    "ERROR [relay-alarm] PublishEventsFunction: reads the stream of Table "
    "(PublishEventsFunctionOutbox): no alarm with an action on its IteratorAge"
)
def relay_without_iterator_age_alarm(t):
    resource(t, "RelayIteratorAgeAlarm")["MetricName"] = "Duration"


@case("ERROR [relay-alarm] PublishEventsFunction: reads the stream of Table")
def relay_alarm_without_action_when_no_ops_topic(t):
    props = resource(t, "RelayIteratorAgeAlarm")
    props["AlarmActions"] = [
        {"Fn::If": ["CreateOpsTopic", {"Ref": "OpsTopic"}, {"Ref": "AWS::NoValue"}]}
    ]


# ---------------------------------------------------------------- Lambda Managed Instances
# Breaks of the ComputeType ManagedInstances part only: the rules see them in the expansion of
# that compute choice, and say so.
ONLY_LMI = "(ComputeType=ManagedInstances only)"


@case(
    "ERROR [managed-instances] AllocateLmiFunction: MemorySize 1024 MB on a capacity provider: "
    f"at least 2048 MB {ONLY_LMI}"
)
def lmi_function_below_two_gigabytes(t):
    resource(t, "AllocateLmiFunction")["MemorySize"] = 1024


@case(
    "ERROR [managed-instances] ReallocateLmiFunction: ReservedConcurrentExecutions on a capacity "
    f"provider: a reservation is of Lambda's default compute; scale it with its execution "
    f"environments instead {ONLY_LMI}"
)
def lmi_function_with_reserved_concurrency(t):
    resource(t, "ReallocateLmiFunction")["ReservedConcurrentExecutions"] = resource(
        t, "ReallocateFunction"
    )["ReservedConcurrentExecutions"]


@case(
    "ERROR [managed-instances] AllocationsLmiFunction: PerExecutionEnvironmentMaxConcurrency 65 "
    f"for 1 vCPU: at most 64 {ONLY_LMI}"
)
def lmi_function_with_more_concurrency_than_its_vcpu_takes(t):
    config = resource(t, "AllocationsLmiFunction")["CapacityProviderConfig"]
    config["PerExecutionEnvironmentMaxConcurrency"] = 65


@case(
    *(
        f"ERROR [managed-instances] {name}LmiFunction: architecture arm64 on CapacityProvider, "
        f"whose instances are x86_64 {ONLY_LMI}"
        for name in ("AddBatch", "Allocate", "ChangeBatchQuantity", "Allocations", "Reallocate")
    )
)
def lmi_capacity_provider_of_another_architecture(t):
    resource(t, "CapacityProvider")["InstanceRequirements"]["Architectures"] = ["x86_64"]


@case(
    "ERROR [live-alias] AllocateIntegration: invokes AllocateLmiFunction itself, not its alias "
    f"AllocateLmiFunctionAliaslive: past the gradual deployment (name the alias: !Ref "
    f"Function.Alias) {ONLY_LMI}"
)
def lmi_route_invokes_latest(t):
    # The Standard branch still names the alias: only the expansion of ManagedInstances breaks.
    uri = resource(t, "AllocateIntegration")["IntegrationUri"]["Fn::If"]
    uri[1] = {"Fn::GetAtt": ["AllocateLmiFunction", "Arn"]}


@case(
    "ERROR [least-privilege] CapacityProviderOperatorRole: policy operate-managed-instances, "
    "statement PlaceManagedInstances: resource '*' for ec2:DescribeAvailabilityZones"
)
def operator_role_star_for_more_than_the_ec2_reads(t):
    # The operator role may read EC2 on "*", not act on it.
    statement(t, "CapacityProviderOperatorRole", "PlaceManagedInstances")["Action"].append(
        "ec2:TerminateInstances"
    )


@case(
    "ERROR [least-privilege] AllocateRole: policy allocate, statement Tracing: "
    "ec2:DescribeSubnets takes no resource in IAM (it applies to '*' only): drop it"
)
def ec2_reads_in_a_function_role(t):
    # Only a capacity provider's operator role may read EC2.
    statement(t, "AllocateRole", "Tracing")["Action"].append("ec2:DescribeSubnets")


@case("ERROR [topic-encryption] EventsTopic: SNS topic without KmsMasterKeyId (SSE-KMS)")
def events_topic_unencrypted(t):
    del resource(t, "EventsTopic")["KmsMasterKeyId"]


@case("ERROR [topic-encryption] OpsTopic: SNS topic without KmsMasterKeyId (SSE-KMS)")
def ops_topic_encrypted_under_one_condition_only(t):
    resource(t, "OpsTopic")["KmsMasterKeyId"] = {
        "Fn::If": ["UseJwt", {"Fn::GetAtt": ["TopicKey", "Arn"]}, {"Ref": "AWS::NoValue"}]
    }


def run_full_check(path: Path) -> tuple[int, str]:
    """The whole check in its own process, as scripts/check-template.sh runs it."""
    result = subprocess.run(
        [sys.executable, str(CHECK), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.returncode, result.stdout + result.stderr


def run_rules(path: Path) -> tuple[int, str]:
    """The check's entry point with --rules-only, in this process."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = check_template.main(["check_template.py", "--rules-only", str(path)])
    return code, output.getvalue()


# The broken copy that also goes through the full check (cfn-lint included).
FULL_CHECK_CASE = "route_authorization_none"


def lmi_subnets_given_the_security_groups(t):
    """A break that only cfn-lint with the parameter values of the ManagedInstances deployment
    finds: the capacity provider's subnets wired to the security group parameter."""
    subnets = {"Ref": "ManagedInstancesSecurityGroupIds"}
    resource(t, "CapacityProvider")["VpcConfig"]["SubnetIds"] = subnets


def reallocation_queue_without_redrive_policy(t):
    """A break that cfn-lint-serverless finds (no project rule does): the reallocation queue
    loses its redrive policy, so its dead-letter queue is one no more and its mapping has no
    dead-letter path; the findings set aside elsewhere (the other dead-letter queues) stay so."""
    del resource(t, "ReallocationQueue")["RedrivePolicy"]


class TemplateCheckRules(unittest.TestCase):
    results: dict[str, tuple[int, str]] = {}

    @classmethod
    def setUpClass(cls):
        original = load_template()
        with tempfile.TemporaryDirectory(prefix="template-check-test-") as tmp:
            paths = {}
            for name, (breaks, _) in CASES.items():
                broken = copy.deepcopy(original)
                breaks(broken)
                paths[name] = Path(tmp) / f"{name}.json"
                paths[name].write_text(json.dumps(broken, indent=1))
            with ThreadPoolExecutor(max_workers=2) as pool:
                serverless = copy.deepcopy(original)
                reallocation_queue_without_redrive_policy(serverless)
                paths["serverless"] = Path(tmp) / "serverless.json"
                paths["serverless"].write_text(json.dumps(serverless, indent=1))
                subnets = copy.deepcopy(original)
                lmi_subnets_given_the_security_groups(subnets)
                paths["lmi lint"] = Path(tmp) / "lmi-lint.json"
                paths["lmi lint"].write_text(json.dumps(subnets, indent=1))
                full = {
                    "the template": pool.submit(run_full_check, REPO / "template.yaml"),
                    "full check": pool.submit(run_full_check, paths[FULL_CHECK_CASE]),
                    "serverless": pool.submit(run_full_check, paths.pop("serverless")),
                    "lmi lint": pool.submit(run_full_check, paths.pop("lmi lint")),
                }
                cls.results = {name: run_rules(path) for name, path in paths.items()}
                cls.results.update({name: future.result() for name, future in full.items()})

    def test_the_template_passes(self):
        code, output = self.results["the template"]
        self.assertEqual(code, 0, output)
        self.assertIn("cfn-lint of the expansion", output)
        self.assertIn("project rules on the expansion", output)
        self.assertIn("check_template: template.yaml: 0 error(s)", output)
        # cfn-lint-serverless ran, and set aside only what does not apply.
        self.assertIn("set aside ES7000 expanded (OpsEmailSubscription):", output)
        # Both compute choices: linted with their parameters, and each one's expansion checked.
        self.assertIn(
            "cfn-lint of the expansion with the parameters of ComputeType Standard, "
            "ManagedInstances",
            output,
        )
        self.assertIn(
            "project rules on the expansion with ComputeType Standard, then ManagedInstances",
            output,
        )

    def test_the_deployment_values_of_lambda_managed_instances_are_linted(self):
        code, output = self.results["lmi lint"]
        self.assertEqual(code, 1, output)
        self.assertIn(
            "WARNING->ERROR W1030 expanded (Resources/CapacityProvider/Properties/VpcConfig/"
            "SubnetIds/Ref): 'sg-0aaaaaaaaaaaaaaa1' does not match '^subnet-[0-9a-z]*$'",
            output,
        )
        self.assertIn("check_template: lmi-lint.json: 1 error(s)", output)

    def test_the_serverless_rules_run_and_set_aside_only_what_does_not_apply(self):
        code, output = self.results["serverless"]
        self.assertEqual(code, 1, output)
        for line in (
            "SQS Queue ReallocationQueue should have a RedrivePolicy property configured.",
            "SQS Queue ReallocationDeadLetterQueue should have a RedrivePolicy property",
            "ERROR ES1001 expanded (Resources/ReallocateFunctionAllocationRequired): ",
            "set aside ES1001 expanded (NotifyOutOfStockFunctionOutOfStock): ",
            "set aside ES6000 expanded (OutOfStockDeadLetterQueue, PublishEventsFailureQueue, "
            "SubscriptionDeadLetterQueue): ",
        ):
            self.assertIn(line, output)
        self.assertNotIn("ERROR [", output, "a project rule failed: the break is not one only")

    def test_the_full_check_fails_on_a_broken_rule(self):
        code, output = self.results["full check"]
        self.assertEqual(code, 1, output)
        self.assertIn("cfn-lint of the expansion", output)
        for line in CASES[FULL_CHECK_CASE][1]:
            self.assertIn(line, output)
        self.assertIn(f"check_template: {FULL_CHECK_CASE}.json: 1 error(s)", output)

    def assert_case_fails(self, name: str):
        code, output = self.results[name]
        self.assertEqual(code, 1, f"the check accepted the broken copy '{name}':\n{output}")
        for line in CASES[name][1]:
            self.assertIn(line, output, f"'{name}': the check failed without saying so:\n{output}")
        # The break is the only thing the rules report: no unrelated finding hides behind it.
        reported = set(re.findall(r"ERROR \[[a-z-]+\] \S+:", output))
        wanted = {re.match(r"ERROR \[[a-z-]+\] \S+:", line).group(0) for line in CASES[name][1]}
        self.assertEqual(reported, wanted, output)


for _name in CASES:

    def _test(self, name=_name):
        self.assert_case_fails(name)

    _test.__name__ = f"test_{_name}_fails"
    setattr(TemplateCheckRules, _test.__name__, _test)


class LanguageExtensions(unittest.TestCase):
    def test_the_expansion_is_cfn_lints_own(self):
        # cfn-lint expands the transform for its pass on the template as written; the check's
        # expansion (what the SAM transform and the rules see) generates the same resources.
        from cfnlint.decode import cfn_yaml
        from cfnlint.template import Template
        from cfnlint.template.transforms._language_extensions import language_extension

        written = cfn_yaml.load(str(REPO / "template.yaml"))
        matches, theirs = language_extension(Template("template.yaml", written, ["us-east-1"]))
        self.assertEqual(matches, [])
        theirs = json.loads(json.dumps(theirs))["Resources"]
        ours = load_template()["Resources"]
        self.assertEqual(sorted(ours), sorted(theirs))
        for name in ours:
            self.assertEqual(ours[name], theirs[name], name)

    def test_a_broken_loop_breaks_what_it_generates(self):
        # The dead-letter queues' alarms are written once: without actions, all four fail.
        template = load(REPO / "template.yaml")
        loop = template["Resources"]["Fn::ForEach::DeadLetterQueues"][2]
        del loop["${Name}Alarm"]["Properties"]["AlarmActions"]
        with tempfile.TemporaryDirectory(prefix="template-check-test-") as tmp:
            path = Path(tmp) / "loop.json"
            path.write_text(json.dumps(template))
            code, output = run_rules(path)
        self.assertEqual(code, 1, output)
        for queue in ("ReallocationDeadLetter", "PublishEventsFailure", "OutOfStockDeadLetter",
                      "SubscriptionDeadLetter"):
            self.assertIn(f"ERROR [dead-letter-alarm] {queue}Queue: ", output)
        self.assertIn("4 error(s)", output)

    def test_a_mapping_a_lookup_left_to_cloudformation_reads_stays(self):
        # Keyed by a parameter, the lookup is CloudFormation's: the mapping it reads stays, in
        # Globals too (SAM copies it into each function); one only the transform read goes.
        template = {
            "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
            "Parameters": {"Level": {"Type": "String", "Default": "INFO"}},
            "Mappings": {"Filters": {"INFO": {"Filter": "info"}}, "Names": {"A": {"Name": "a"}}},
            "Globals": {"Function": {"Environment": {"Variables": {
                "FILTER": {"Fn::FindInMap": ["Filters", {"Ref": "Level"}, "Filter"]}}}}},
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic",
                                    "Properties": {"DisplayName": {"Fn::FindInMap": ["Names", "A", "Name"]}}}},
        }
        expanded = expand_language_extensions(template)
        self.assertEqual(expanded["Mappings"], {"Filters": {"INFO": {"Filter": "info"}}})
        self.assertEqual(expanded["Resources"]["Topic"]["Properties"]["DisplayName"], "a")

    def test_what_the_check_does_not_expand_fails_it(self):
        from template_check.language_extensions import LanguageExtensionsError

        template = {
            "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic",
                                    "Properties": {"DisplayName": {"Fn::Length": [1, 2]}}}},
        }
        with self.assertRaises(LanguageExtensionsError):
            expand_language_extensions(template)
        template["Resources"] = {"Fn::ForEach::Topics": ["Name", {"Ref": "Names"}, {}]}
        with self.assertRaises(LanguageExtensionsError):
            expand_language_extensions(template)


class Comparison(unittest.TestCase):
    def test_a_changed_property_is_the_one_difference(self):
        from template_check import compare

        # As written (its loops expanded by the comparison), one resource outside them changed.
        template = load(REPO / "template.yaml")
        template["Resources"]["RelayIteratorAgeAlarm"]["Properties"]["Threshold"] = 120000
        with tempfile.TemporaryDirectory(prefix="template-check-test-") as tmp:
            changed = Path(tmp) / "changed.json"
            changed.write_text(json.dumps(template))
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                same = compare.compare(REPO / "template.yaml", REPO / "template.yaml",
                                       {"ComputeType": "Standard"})
                differ = compare.compare(REPO / "template.yaml", changed, {"ComputeType": "Standard"})
        self.assertEqual((same, differ), (0, 1), output.getvalue())
        self.assertIn("    /Properties/Threshold: 60000 -> 120000", output.getvalue())


class Dashboard(unittest.TestCase):
    def test_the_dashboard_shows_every_alarm_and_application_metric(self):
        template = load_template()
        # The code's metrics are in the stack's namespace (METRICS_NAMESPACE), which every
        # widget of them reads (with ${...} as "x", as the body is read below).
        variables = template["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(
            variables["METRICS_NAMESPACE"], {"Fn::Sub": "Allocation/${AWS::StackName}"}
        )
        namespace = re.sub(r"\$\{[^}]+\}", "x", variables["METRICS_NAMESPACE"]["Fn::Sub"])
        # The text, and the variables that name the functions of the compute choice.
        body, named = resource(template, "Dashboard")["DashboardBody"]["Fn::Sub"]
        names = set(re.findall(r"\$\{([A-Za-z0-9:]+)(?:\.[A-Za-z]+)?\}", body)) - set(named)
        for variable, value in named.items():
            for branch in value["Fn::If"][1:]:
                names.add(branch["Ref"])
        unknown = {n for n in names if not n.startswith("AWS::")} - set(template["Resources"])
        self.assertEqual(unknown, set(), "the dashboard names resources that do not exist")
        dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
        alarm_section = body[body.index('"type": "alarm"') :]
        alarm_section = alarm_section[: alarm_section.index("]")]
        shown = set(re.findall(r"\$\{([A-Za-z0-9]+)\.Arn\}", alarm_section))
        alarms = {
            n for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"
        }
        self.assertEqual(shown, alarms, "the dashboard's alarm widget and the alarms differ")
        expressions = [
            query["expression"]
            for widget in dashboard["widgets"]
            for line in widget["properties"].get("metrics", [])
            for query in line
            if isinstance(query, dict) and "expression" in query
        ]
        for metric in (
            "Allocations",
            "OutOfStock",
            "VersionConflictRetries",
            "EventsPublished",
            "ReallocationFailures",
            "ColdStarts",
            "RecordsRead",
        ):
            self.assertTrue(
                any(f'{{"{namespace}",function}} MetricName="{metric}"' in e for e in expressions),
                f"no widget shows the application metric {metric}",
            )
        searches = [e for e in expressions if "SEARCH(" in e]
        self.assertTrue(all(f'{{"{namespace}",' in e for e in searches), searches)

    def test_no_alarm_reads_the_metrics_of_another_namespace(self):
        template = load_template()
        for name, r in template["Resources"].items():
            if r["Type"] == "AWS::CloudWatch::Alarm":
                namespaces = [r["Properties"].get("Namespace")] + [
                    query["MetricStat"]["Metric"].get("Namespace")
                    for query in r["Properties"].get("Metrics", [])
                    if "MetricStat" in query
                ]
                for namespace in namespaces:
                    if isinstance(namespace, str):
                        self.assertTrue(namespace.startswith("AWS/"), f"{name}: {namespace}")
                    elif namespace is not None:
                        self.assertEqual(
                            namespace, {"Fn::Sub": "Allocation/${AWS::StackName}"}, name
                        )


if __name__ == "__main__":
    unittest.main()
