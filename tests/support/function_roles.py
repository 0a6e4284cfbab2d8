"""How a test process runs a function as its own role: the service's client factory takes up the role's keys.

The in-process runtime (`diskport_emulator`'s `InProcessLambdas`) runs every function in this process; each
invocation, and each AWS client its code makes, uses the credentials of the function's role inside
`acting_with(variables)`, as each Lambda instance would from its environment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from diskport.stores import aws

from diskport_emulator import LocalStack


@contextmanager
def acting_with(variables: Mapping[str, str]) -> Iterator[None]:
    """The block's AWS clients sign with these credentials (AWS_ACCESS_KEY_ID, ... as an environment holds them)."""
    credentials = (variables["AWS_ACCESS_KEY_ID"], variables["AWS_SECRET_ACCESS_KEY"], variables["AWS_SESSION_TOKEN"])
    token = aws.invocation_credentials.set(credentials)
    try:
        yield
    finally:
        aws.invocation_credentials.reset(token)


def without_action(local: LocalStack, function: str, missing: str) -> LocalStack:
    """The template, with the function's role lacking one action (a statement left with none is dropped)."""
    for policy in local.template["Resources"][function]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [action for action in actions if action != missing]
        if isinstance(policy, dict) and "Statement" in policy:
            policy["Statement"] = [statement for statement in policy["Statement"] if statement["Action"]]
    return local
