"""`diskport image update|tags|delete` against local mode: an imported image renamed, tagged and deleted."""

from __future__ import annotations

import json

from .conftest import LocalModeProcess, SampleDisk


def test_the_cli_renames_tags_and_deletes_an_imported_image(
    local_mode: LocalModeProcess, sample_disk: SampleDisk
) -> None:
    # Given an image imported through the CLI, with a tag
    imported = local_mode.cli(
        "import", str(sample_disk.qcow2), "--name", "cli-life", "--min-disk", "40", "--tag", "a=1", "--wait"
    )
    assert imported.returncode == 0, imported.stderr
    image_id = json.loads(imported.stdout)["entities"]["image_id"]

    # When it is renamed and described, then its tags changed
    updated = local_mode.cli("image", "update", image_id, "--name", "cli-life-2", "--description", "renamed", "--json")
    tagged = local_mode.cli(
        "image", "tags", image_id, "--unset", "a", "--set", "os=version.1.2", "--set", "环境=生产", "--json"
    )
    listed_tags = local_mode.cli("image", "tags", image_id)  # piped, so JSON without --json, as every command

    # Then each command answers what the API did
    assert updated.returncode == 0, updated.stderr
    record = json.loads(updated.stdout)
    assert (record["id"], record["name"], record["__description"]) == (image_id, "cli-life-2", "renamed")
    assert tagged.returncode == 0, tagged.stderr
    assert json.loads(tagged.stdout) == {
        "tags": [{"key": "os", "value": "version.1.2"}, {"key": "环境", "value": "生产"}]
    }
    assert json.loads(listed_tags.stdout) == {
        "tags": [{"key": "os", "value": "version.1.2"}, {"key": "环境", "value": "生产"}]
    }

    # When it is deleted
    deleted = local_mode.cli("image", "delete", image_id, "--json")
    # Then it is gone from the listing, and deleting it again says so
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"image_id": image_id, "deleted": True}
    assert json.loads(local_mode.cli("images", "--id", image_id).stdout) == []
    again = local_mode.cli("image", "delete", image_id)
    assert again.returncode == 1 and "IMG.0404" in again.stderr


def test_an_update_naming_nothing_to_change_is_refused(local_mode: LocalModeProcess) -> None:
    run = local_mode.cli("image", "update", "aa5306f7-0000-4000-8000-000000000001")
    assert run.returncode == 1 and "--name" in run.stderr
