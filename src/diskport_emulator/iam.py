"""IAM enforced in the emulator: each function calls AWS with credentials of its own role, built from the template.

`enforce_iam(stack)` (in the process that runs moto) does four things:

- creates, for each function, a role whose inline policies are the function's `Policies` from
  `template.yaml` (inline statements as written, SAM policy templates expanded by samtranslator), and
  answers credentials of that role (STS AssumeRole) for the function's instances;
- keeps the person at the keyboard an administrator: the access key `testing` / `testing` that the README
  and the CLI use belongs to a user allowed everything, as an account's own admin would be;
- lets moto's Step Functions interpreter (which signs with `ak` / `sk`) call the functions, as the service;
- turns moto's IAM enforcement on, and teaches it the resource each request names (a table, queue, key,
  snapshot, state machine or function ARN), since moto otherwise checks every non-S3 request against `*`
  and a policy scoped to a resource, as diskport's are, would allow nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from diskport_emulator.template import LocalStack

ADMIN_USER = "diskport-local-admin"
ADMIN_KEY = ("testing", "testing")  # what the README, the CLI and the tests use
STATE_MACHINE_USER = "diskport-local-step-functions"
STATE_MACHINE_KEY = ("ak", "sk")  # what moto's Step Functions interpreter signs with
ALLOW_EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def policy_documents(stack: LocalStack, logical_id: str) -> list[dict[str, Any]]:
    """The policies the template gives a function or state machine, intrinsics resolved for the local stack."""
    templates = _policy_templates()
    documents = []
    for written in stack.resources[logical_id].get("Properties", {}).get("Policies", []):
        # A policy may be conditional (Fn::If ... AWS::NoValue): what the stack's parameters choose, if anything.
        policy = stack.resolve(written) if isinstance(written, dict) and "Fn::If" in written else written
        if policy is None:
            continue
        if isinstance(policy, dict) and "Statement" in policy:
            document = {"Version": "2012-10-17", "Statement": policy["Statement"]}
        elif isinstance(policy, dict) and len(policy) == 1 and templates.has(next(iter(policy))):
            ((name, parameters),) = policy.items()
            document = {"Version": "2012-10-17", **templates.convert(name, parameters)}
        else:
            raise ValueError(f"{logical_id}: local mode cannot apply the policy {policy!r}")
        documents.append(stack.resolve(document))
    return documents


@functools.cache
def _policy_templates() -> Any:
    """SAM's policy templates (S3ReadPolicy, ...), loaded and checked once: it takes a while."""
    from samtranslator.policy_template_processor.processor import PolicyTemplatesProcessor

    return PolicyTemplatesProcessor(PolicyTemplatesProcessor.get_default_policy_templates_json())


def role_name(stack: LocalStack, logical_id: str) -> str:
    return f"{stack.physical_name(logical_id)}-role"[:64]


def role_arn(stack: LocalStack, logical_id: str) -> str:
    return f"arn:aws:iam::{stack.account_id}:role/{role_name(stack, logical_id)}"


def create_function_roles(stack: LocalStack) -> None:
    """One role per function, holding the function's policies from the template (made in moto's IAM directly)."""
    from moto.iam.models import iam_backends

    backend = iam_backends[stack.account_id]["aws"]
    for logical_id in stack.resources_of_type("AWS::Serverless::Function"):
        name = role_name(stack, logical_id)
        backend.create_role(name, json.dumps(LAMBDA_TRUST), "/", None, "", [], None)
        for number, document in enumerate(policy_documents(stack, logical_id)):
            backend.put_role_policy(name, f"policy-{number}", json.dumps(document))  # validates it, as IAM does


def function_credentials(stack: LocalStack) -> dict[str, dict[str, str]]:
    """For each function, the environment variables that make its instances act as its role (STS AssumeRole)."""
    from moto.sts.models import sts_backends

    backend = sts_backends[stack.account_id]["aws"]
    credentials = {}
    for logical_id in stack.resources_of_type("AWS::Serverless::Function"):
        assumed = backend.assume_role(
            region_name=stack.region,
            role_session_name=stack.physical_name(logical_id),
            role_arn=role_arn(stack, logical_id),
            policy="",
            duration=43200,
            external_id="",
        )
        credentials[logical_id] = {
            "AWS_ACCESS_KEY_ID": assumed.access_key_id,
            "AWS_SECRET_ACCESS_KEY": assumed.secret_access_key,
            "AWS_SESSION_TOKEN": assumed.session_token,
        }
    return credentials


def _user_with_key(stack: LocalStack, user_name: str, key: tuple[str, str], documents: list[dict[str, Any]]) -> None:
    from moto.iam.models import iam_backends

    backend = iam_backends[stack.account_id]["aws"]
    if user_name in backend.users:
        return
    backend.create_user(region_name=stack.region, user_name=user_name, path="/", tags=[])
    for number, document in enumerate(documents):
        backend.put_user_policy(user_name, f"policy-{number}", json.dumps(document))
    access_key = backend.create_access_key(user_name)
    access_key.access_key_id, access_key.secret_access_key = key


def create_callers(stack: LocalStack) -> None:
    """The administrator behind `testing` / `testing`, and the state machine behind the interpreter's key."""
    _user_with_key(stack, ADMIN_USER, ADMIN_KEY, [ALLOW_EVERYTHING])
    # The interpreter is the emulated Step Functions service itself, not a function: it is not held to the
    # state machine's role (which IAM on AWS applies to it; the template lint checks that role).
    _user_with_key(stack, STATE_MACHINE_USER, STATE_MACHINE_KEY, [ALLOW_EVERYTHING])


def turn_enforcement_on() -> None:
    """moto checks every request's signature and policies from now on, against the resources it names."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    if not getattr(ActionAuthenticatorMixin._authenticate_and_authorize_normal_action, "names_resources", False):

        def authorize(response: Any, resource: str = "*") -> None:
            for action, named in requested_permissions(response) or [(None, resource)]:
                _authorize(response, action, named)

        authorize.names_resources = True  # type: ignore[attr-defined]
        ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize  # type: ignore[method-assign,assignment]
    # AWS authorizes HeadBucket as s3:ListBucket (there is no s3:HeadBucket action); moto asks for the latter.
    from moto.s3.responses import ACTION_MAP, S3Response

    ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"
    if not getattr(S3Response._authenticate_and_authorize_s3_action, "per_key_deletes", False):
        S3Response._authenticate_and_authorize_s3_action = _deletes_authorized_per_key(  # type: ignore[method-assign]
            S3Response._authenticate_and_authorize_s3_action
        )
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


def _deletes_authorized_per_key(authorize: Callable[..., None]) -> Callable[..., None]:
    """S3's check of a request, with DeleteObjects (a POST to the bucket) authorized as DeleteObject on each key.

    AWS authorizes a multi-object delete key by key; moto checks s3:DeleteObject against the bucket itself,
    which a policy on the bucket's objects (`arn:aws:s3:::bucket/prefix/*`) never matches, and then answers
    every key AccessDenied. Here each key is checked, and the request is refused if any key is.
    """

    def authorize_s3(response: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        deleted: list[str | None] = list(_keys_deleted(response)) if bucket_name and key_name is None else []
        for key in deleted or [key_name]:
            authorize(response, bucket_name=bucket_name, key_name=key)

    authorize_s3.per_key_deletes = True  # type: ignore[attr-defined]
    return authorize_s3


def _keys_deleted(response: Any) -> list[str]:
    """The keys a DeleteObjects request names; empty for any other request."""
    import xmltodict

    if response.data.get("Action") != "DeleteObject" or not response.is_delete_keys():
        return []
    try:
        objects = xmltodict.parse(response.body).get("Delete", {}).get("Object", [])
    except Exception:  # a malformed body: S3 itself answers MalformedXML
        return []
    return [str(item["Key"]) for item in (objects if isinstance(objects, list) else [objects]) if "Key" in item]


def _authorize(response: Any, action: str | None, resource: str) -> None:
    """moto's own check (`_authenticate_and_authorize_action`), for an action and resource of our choosing."""
    from urllib.parse import urlparse

    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMRequest

    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return
    if response.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    path = response.raw_path
    query = urlparse(response.uri).query
    request = IAMRequest(
        account_id=response.current_account,
        method=response.method,
        path=f"{path}?{query}" if query else path,
        data=response.data,
        body=response.raw_body,
        headers=response.headers,
        action=action or response._get_action(),
    )
    # The access key names the caller; its signature is not checked here, because moto recomputes some EBS
    # requests' signatures wrongly (CompleteSnapshot, with its x-amz-* parameters, never matches).
    if request._action == "sts:GetCallerIdentity":  # always allowed, as on AWS
        return
    if not _permitted(request._access_key.collect_policies(), request._action, resource, _context_of(response)):
        request._raise_access_denied()


def _permitted(policies: list[Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's decision for an identity's policies: an explicit Deny wins, else any Allow, else no.

    moto evaluates only StringEquals conditions, against no request values, and takes a failed condition for an
    explicit Deny; on AWS a statement whose condition does not hold simply does not apply. So each statement's
    condition is decided here, with the request's own condition keys, and moto matches action and resource.
    """
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

    allowed = False
    for policy in policies:
        statements = IAMPolicy(policy)._policy_json["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            if not _condition_holds(statement.get("Condition") or {}, context):
                continue
            unconditional = {key: value for key, value in statement.items() if key != "Condition"}
            result = IAMPolicyStatement(unconditional).is_action_permitted(action, resource)
            if result == PermissionResult.DENIED:
                return False
            allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    """Every operator of a statement's Condition block, for the request's condition keys (an unknown one fails)."""
    import fnmatch

    def listed(values: Any) -> list[str]:
        return [
            str(value).lower() if isinstance(value, bool) else str(value)
            for value in (values if isinstance(values, list) else [values])
        ]

    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = context.get(key)
            wanted = listed(expected)
            if operator == "Null":
                holds = (actual is None) == (wanted[0].lower() == "true")
            elif operator in ("StringEquals", "ArnEquals", "Bool"):
                holds = actual is not None and actual in wanted
            elif operator in ("StringLike", "ArnLike"):
                holds = actual is not None and any(fnmatch.fnmatchcase(actual, pattern) for pattern in wanted)
            else:
                return False
            if not holds:
                return False
    return True


def _context_of(response: Any) -> dict[str, str]:
    """The condition keys a request carries that the template's policies test: a KMS request's encryption context."""
    if (getattr(response, "service_name", "") or "") != "kms":
        return {}
    try:
        body = json.loads(response.raw_body or b"{}")
    except (TypeError, ValueError):
        return {}
    context = body.get("EncryptionContext") or {}
    return {f"kms:EncryptionContext:{key}": str(value) for key, value in context.items()}


def turn_enforcement_off() -> None:
    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")


def requested_permissions(response: Any) -> list[tuple[str | None, str]]:
    """(action, resource ARN) pairs a request needs, as IAM evaluates it; None keeps the request's own action.

    Empty when the request names no resource (then moto's check against `*` stands).
    """
    service = getattr(response, "service_name", "") or ""
    body = _body(response)
    if service == "dynamodb" and ("TransactItems" in body):
        return _dynamodb_transaction(body, response.region, response.current_account)
    resolver = _RESOURCE_RESOLVERS.get(service)
    if resolver is None:
        return []
    try:
        return [(None, arn) for arn in resolver(response, body, response.region, response.current_account)]
    except (KeyError, TypeError, ValueError, AttributeError):
        return []


# DynamoDB authorizes each item of a transaction as the item operation (there is no TransactWriteItems action).
_TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_transaction(body: dict[str, Any], region: str, account: str) -> list[tuple[str | None, str]]:
    return sorted(
        {
            (_TRANSACTION_ITEM_ACTIONS[kind], f"arn:aws:dynamodb:{region}:{account}:table/{operation['TableName']}")
            for item in body["TransactItems"]
            for kind, operation in item.items()
        }
    )


def _body(response: Any) -> dict[str, Any]:
    """The request's parameters: moto has parsed a JSON body already for some services, not for others."""
    body = response.body
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body or "{}")
        except ValueError:
            body = {}
    if not isinstance(body, dict) or not body:
        querystring = getattr(response, "querystring", None) or {}
        body = {name: values[0] for name, values in querystring.items() if values}
    return dict(body)


def _dynamodb(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    def table(name: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    if "TableName" in body:
        return [table(body["TableName"], body.get("IndexName"))]
    if "TransactItems" in body:
        return sorted({table(operation["TableName"]) for item in body["TransactItems"] for operation in item.values()})
    if "RequestItems" in body:
        return [table(name) for name in body["RequestItems"]]
    return []


def _sqs(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    if "QueueUrl" in body:
        return [f"arn:aws:sqs:{region}:{account}:{str(body['QueueUrl']).rstrip('/').rpartition('/')[2]}"]
    if "QueueName" in body:
        return [f"arn:aws:sqs:{region}:{account}:{body['QueueName']}"]
    return []


def _kms(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    from moto.kms.models import kms_backends

    key_id = body.get("KeyId")
    if key_id is None and "CiphertextBlob" in body:
        # Decrypt names no key: KMS finds it in the ciphertext, and authorizes the request on that key.
        import base64

        from moto.kms.utils import _deserialize_ciphertext_blob

        try:
            key_id = _deserialize_ciphertext_blob(base64.b64decode(body["CiphertextBlob"])).key_id
        except Exception:  # not a ciphertext of this emulator: the service itself answers InvalidCiphertextException
            return []
    if key_id is None:
        return []
    try:
        return [str(kms_backends[account][region].describe_key(key_id).arn)]
    except Exception:  # an unknown key: authorized on the ARN it names, and the service answers NotFoundException
        return [_kms_arn(str(key_id), region, account)]


def _kms_arn(key_id: str, region: str, account: str) -> str:
    if key_id.startswith("arn:"):
        return key_id
    if key_id.startswith("alias/"):
        return f"arn:aws:kms:{region}:{account}:{key_id}"
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def _states(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    for name in ("stateMachineArn", "executionArn", "mapRunArn"):
        if name in body:
            return [str(body[name])]
    return []


def _ebs(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    snapshot_id = (response.uri_match or {}).get("snapshot_id") or "*"
    return [f"arn:aws:ec2:{region}::snapshot/{snapshot_id}"]


def _ec2(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    snapshot_id = body.get("SnapshotId")
    return [f"arn:aws:ec2:{region}::snapshot/{snapshot_id}"] if snapshot_id else []


def _lambda(response: Any, body: dict[str, Any], region: str, account: str) -> list[str]:
    path = str(response.path)
    if "/functions/" not in path:
        return []
    name = path.split("/functions/")[1].split("/")[0]
    from urllib.parse import unquote

    name = unquote(name).split(":function:")[-1].split(":")[0]
    return [f"arn:aws:lambda:{region}:{account}:function:{name}"]


_RESOURCE_RESOLVERS: dict[str, Callable[[Any, dict[str, Any], str, str], list[str]]] = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "kms": _kms,
    "stepfunctions": _states,
    "ebs": _ebs,
    "ec2": _ec2,
    "awslambda": _lambda,
    "lambda": _lambda,
}
