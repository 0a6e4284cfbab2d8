"""`diskport image delete|update|tags`: the rest of an image's life, through the same IMS calls as the SDKs.

    diskport image update IMAGE_ID [--name N] [--description D]     PATCH /v2/cloudimages/{image_id}
    diskport image tags IMAGE_ID [--set KEY=VALUE]... [--unset KEY]...  the image's tags, changed first if asked
    diskport image delete IMAGE_ID                                    DELETE /v2/images/{image_id}

Each prints what the API answered: for people on a terminal, as JSON with `--json` or when the output is piped
(the CLI's shared output option).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from diskport_local import output
from diskport_local.command_help import add_command, add_command_group
from diskport_local.server import DEFAULT_PROJECT_ID

IMAGE_ID_HELP = "the image's id (see `diskport images`)"


def add_image_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    remote: argparse.ArgumentParser,
    printed: argparse.ArgumentParser,
) -> None:
    """The `image` command and its actions, on the CLI's parser, printing as the other commands do (`printed`)."""
    actions = add_command_group(
        commands,
        "image",
        help="update, tag or delete an image",
        example="diskport image update 5c3b4a1e-0d1f-4e5a-9b7c-2f6e8d9a0b1c --name data-2",
        actions="update, tags or delete",
    )
    update = add_command(actions, "update", run_update, parents=[remote, printed])
    update.add_argument("image_id", metavar="IMAGE_ID", help=IMAGE_ID_HELP)
    update.add_argument("--name", help="the new name (1-128 characters)")
    update.add_argument("--description", help="the new description ('' removes it)")

    tags = add_command(actions, "tags", run_tags, parents=[remote, printed])
    tags.add_argument("image_id", metavar="IMAGE_ID", help=IMAGE_ID_HELP)
    tags.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="add or change a tag (repeatable)"
    )
    tags.add_argument("--unset", action="append", default=[], metavar="KEY", help="remove a tag (repeatable)")
    tags.add_argument("--project-id", help="the project in the tags path (default: your credentials' project)")

    delete = add_command(actions, "delete", run_delete, parents=[remote, printed])
    delete.add_argument("image_id", metavar="IMAGE_ID", help=IMAGE_ID_HELP)


def run_update(arguments: argparse.Namespace) -> int:
    """Change an active image's name or description.

    Example: diskport image update 5c3b4a1e-0d1f-4e5a-9b7c-2f6e8d9a0b1c --description 'Data disk 1'
    """
    from diskport_local.cli import CommandError, target_of

    patch: list[dict[str, Any]] = []
    if arguments.name is not None:
        patch.append({"op": "replace", "path": "/name", "value": arguments.name})
    if arguments.description is not None:
        if arguments.description == "":
            patch.append({"op": "remove", "path": "/__description"})
        else:
            patch.append({"op": "replace", "path": "/__description", "value": arguments.description})
    if not patch:
        raise CommandError("Name what to change: --name and/or --description.")
    record = target_of(arguments).api.call("PATCH", f"/v2/cloudimages/{arguments.image_id}", body=patch)
    output.show(
        record,
        as_json=output.wants_json(arguments.json),
        render=lambda image: (
            f"{image['id']}  {image['status']}  {image['name']}  {image.get('__description', '')}".rstrip()
        ),
    )
    return 0


def run_tags(arguments: argparse.Namespace) -> int:
    """Show an image's tags, setting or removing some first.

    Example: diskport image tags 5c3b4a1e-0d1f-4e5a-9b7c-2f6e8d9a0b1c --set team=storage --unset old
    """
    from diskport_local.cli import CommandError, target_of

    target = target_of(arguments)
    project_id = arguments.project_id or _project_of(target)
    path = f"/v2/{project_id}/images/{arguments.image_id}/tags"
    if arguments.unset:
        removed = [{"key": key, "value": ""} for key in arguments.unset]
        target.api.call("POST", f"{path}/action", body={"action": "delete", "tags": removed})
    if arguments.set:
        if any("=" not in text for text in arguments.set):
            raise CommandError("Give each tag to set as KEY=VALUE.")
        added = [dict(zip(("key", "value"), text.split("=", 1), strict=True)) for text in arguments.set]
        target.api.call("POST", f"{path}/action", body={"action": "create", "tags": added})
    answer = target.api.call("GET", path)
    output.show(
        answer,
        as_json=output.wants_json(arguments.json),
        render=lambda listed: "\n".join(f"{tag['key']}={tag['value']}" for tag in listed["tags"]),
    )
    return 0


def run_delete(arguments: argparse.Namespace) -> int:
    """Delete an image and its snapshot.

    Example: diskport image delete 5c3b4a1e-0d1f-4e5a-9b7c-2f6e8d9a0b1c
    """
    from diskport_local.cli import target_of

    target_of(arguments).api.call("DELETE", f"/v2/images/{arguments.image_id}")
    deleted = {"image_id": arguments.image_id, "deleted": True}
    output.show(deleted, as_json=output.wants_json(arguments.json), render=lambda done: f"deleted {done['image_id']}")
    return 0


def _project_of(target: Any) -> str:
    """The caller's project: local mode's (LOCAL_PROJECT_ID), or the AWS account of the credentials when deployed."""
    if target.is_local:
        return os.environ.get("LOCAL_PROJECT_ID") or DEFAULT_PROJECT_ID
    return str(target.session.client("sts").get_caller_identity()["Account"])
