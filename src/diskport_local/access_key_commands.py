"""`diskport access-key create|list|revoke`: the IMS access keys IMS clients sign with (AK/SK).

    diskport access-key create --project P [--json]   a new key for project P; its secret is printed this once
    diskport access-key list [--json]                 every key: id, project, status, created, last used
    diskport access-key revoke ACCESS_KEY             disable a key: requests it signs are refused from now on

Like the other commands they talk to local mode (started with LOCAL_AUTH=aksk) unless `--endpoint` names a stack
deployed with Authentication=AccessKey; there they are signed with the operator's AWS credentials (SigV4), since
managing keys is the account's business, not a project's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from diskport.errors import DiskportError

from diskport_local.command_help import add_command, add_command_group

ACCESS_KEYS_PATH = "/diskport/access-keys"
NOT_MANAGED = (
    "This endpoint does not manage access keys: start local mode with LOCAL_AUTH=aksk (diskport serve --auth aksk), "
    "or deploy the stack with Authentication=AccessKey."
)

# cli.target_of: where the command goes (local mode or --endpoint), passed in to keep this module apart from cli.py.
TargetOf = Callable[[argparse.Namespace], Any]


class AccessKeyCommandError(DiskportError):
    code = "IMG.0001"
    http_status = 400


def _call(target_of: TargetOf, arguments: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    try:
        return target_of(arguments).api.call(method, path, body=body)
    except DiskportError as error:
        if error.code == "IMG.0404" and error.http_status == 404 and "route" in error.reason.lower():
            raise AccessKeyCommandError(NOT_MANAGED) from None
        raise


def run_create(target_of: TargetOf, arguments: argparse.Namespace) -> int:
    """A new access key for a project (secret shown once).

    Example: diskport access-key create --project 0123456789abcdef0123456789abcdef --json
    """
    created = _call(target_of, arguments, "POST", ACCESS_KEYS_PATH, {"project_id": arguments.project})
    if arguments.json:
        pair = {name: created[name] for name in ("access_key", "secret_key", "project_id")}
        print(json.dumps(pair))
        return 0
    print(f"access key  {created['access_key']}")
    print(f"secret key  {created['secret_key']}")
    print(f"project id  {created['project_id']}")
    print("The secret key is shown this once and cannot be read back: keep it now.", file=sys.stderr)
    return 0


def run_list(target_of: TargetOf, arguments: argparse.Namespace) -> int:
    """Every key: id, project, created, last used.

    Example: diskport access-key list
    """
    keys = list(_call(target_of, arguments, "GET", ACCESS_KEYS_PATH)["access_keys"])
    if arguments.json:
        print(json.dumps(keys, indent=2))
        return 0
    columns = ("access_key", "project_id", "status", "created_at", "last_used_at")
    rows: list[list[str]] = [["ACCESS KEY", "PROJECT", "STATUS", "CREATED", "LAST USED"]]
    rows += [[str(key.get(column) or "-") for column in columns] for key in keys]
    widths = [max(len(row[index]) for row in rows) for index in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def run_revoke(target_of: TargetOf, arguments: argparse.Namespace) -> int:
    """Disable a key at once.

    Example: diskport access-key revoke DPAK0123456789ABCDEF
    """
    revoked = _call(target_of, arguments, "DELETE", f"{ACCESS_KEYS_PATH}/{arguments.access_key}")
    print(f"revoked {revoked['access_key']} (project {revoked['project_id']}) at {revoked['revoked_at']}")
    return 0


def add_access_key_commands(commands: Any, remote: argparse.ArgumentParser, target_of: TargetOf) -> None:
    """The `access-key` command and its three actions, on the CLI's parser."""
    actions = add_command_group(
        commands,
        "access-key",
        help="create, list and revoke IMS access keys (AK/SK)",
        example="diskport access-key create --project 0123456789abcdef0123456789abcdef",
        actions="create, list or revoke",
    )
    create = add_command(actions, "create", partial(run_create, target_of), parents=[remote])
    create.add_argument("--project", required=True, help="the project id the key signs for")
    create.add_argument("--json", action="store_true", help='print {"access_key", "secret_key", "project_id"}')

    listing = add_command(actions, "list", partial(run_list, target_of), parents=[remote])
    listing.add_argument("--json", action="store_true", help="print the keys as JSON")

    revoke = add_command(actions, "revoke", partial(run_revoke, target_of), parents=[remote])
    revoke.add_argument("access_key", metavar="ACCESS_KEY", help="the access key id (see `diskport access-key list`)")
