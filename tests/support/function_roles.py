"""How a test process runs a function as its own role: the service's client factory takes up the role's keys.

The in-process runtime (`diskport_emulator`'s `InProcessLambdas`) runs every function in this process; each
invocation, and each AWS client its code makes, uses the credentials of the function's role inside
`acting_with(variables)`, as each Lambda instance would from its environment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from diskport.stores import aws


@contextmanager
def acting_with(variables: Mapping[str, str]) -> Iterator[None]:
    """The block's AWS clients sign with these credentials (AWS_ACCESS_KEY_ID, ... as an environment holds them)."""
    credentials = (variables["AWS_ACCESS_KEY_ID"], variables["AWS_SECRET_ACCESS_KEY"], variables["AWS_SESSION_TOKEN"])
    token = aws.invocation_credentials.set(credentials)
    try:
        yield
    finally:
        aws.invocation_credentials.reset(token)
