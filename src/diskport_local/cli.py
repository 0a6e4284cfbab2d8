"""`diskport`: run local mode, and import, follow and export images against local mode or a deployed stack.

    diskport serve                                   local mode in the foreground (what `make run` runs)
    diskport import SOURCE --name N --min-disk GB    SOURCE is a local file (uploaded first) or bucket:key
    diskport job JOB_ID                              the job, with its progress
    diskport images [--id ID]                        the project's images
    diskport export IMAGE_ID FILE                    the image's snapshot, written out as a raw disk
    diskport image update|tags|delete IMAGE_ID       change, tag or delete an image (image_commands.py)
    diskport sam-env                                 env.json for `sam local` against local mode's emulator
    diskport smoke                                   import a generated disk, compare its snapshot, delete it all
    diskport access-key create|list|revoke           IMS access keys (AK/SK), see access_key_commands.py

Commands talk to local mode (http://127.0.0.1:3000, AWS emulator on :5000) unless `--endpoint` (or
DISKPORT_ENDPOINT) names a deployed stack; requests to a deployed stack are signed with SigV4 using the
usual AWS credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from diskport.errors import DiskportError

from diskport_local.access_key_commands import add_access_key_commands
from diskport_local.client import AkSkSigner, ApiClient, SigV4Signer, region_of_endpoint
from diskport_local.export import export_snapshot
from diskport_local.image_commands import add_image_commands
from diskport_local.progress import ProgressBar
from diskport_local.sam_env import DOCKER_HOST_AWS_ENDPOINT, env_json
from diskport_local.server import (
    DEFAULT_API_PORT,
    DEFAULT_AWS_PORT,
    LOCAL_CREDENTIALS,
    LOCAL_HOST,
    UPLOADS_BUCKET,
    LocalModeOptions,
    serve,
)
from diskport_local.smoke import add_smoke_command
from diskport_local.template import LOCAL_REGION, LocalStack

ENDED_STATUSES = ("SUCCESS", "FAIL")


class CommandError(DiskportError):
    """A command that cannot run as asked (a missing file, an image not ready to export...)."""

    code = "IMG.0001"
    http_status = 400


@dataclass
class Target:
    """Where commands go: the API, and the AWS endpoints for uploads and snapshot reads."""

    api: ApiClient
    session: boto3.session.Session
    aws_endpoint: str | None
    is_local: bool

    def aws_client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]


def target_of(arguments: argparse.Namespace) -> Target:
    endpoint = arguments.endpoint or os.environ.get("DISKPORT_ENDPOINT")
    access_key_signer = _access_key_signer()
    if endpoint:
        region = arguments.region or region_of_endpoint(endpoint) or boto3.session.Session().region_name
        if not region:
            raise CommandError("Name the stack's region with --region (or AWS_REGION).")
        session = boto3.session.Session(region_name=region)
        credentials = session.get_credentials()
        if credentials is None:
            raise CommandError("No AWS credentials found to sign requests to the deployed stack.")
        if access_key_signer is not None and not _is_operator_command(arguments):
            return Target(ApiClient(endpoint, access_key_signer), session, arguments.aws_endpoint, False)
        return Target(ApiClient(endpoint, SigV4Signer(credentials, region)), session, arguments.aws_endpoint, False)
    api_port = int(os.environ.get("LOCAL_API_PORT") or DEFAULT_API_PORT)
    aws_port = int(os.environ.get("LOCAL_AWS_PORT") or DEFAULT_AWS_PORT)
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_REGION,
    )
    aws_endpoint = arguments.aws_endpoint or f"http://{LOCAL_HOST}:{aws_port}"
    signer = None if _is_operator_command(arguments) else access_key_signer
    return Target(ApiClient(f"http://{LOCAL_HOST}:{api_port}", signer), session, aws_endpoint, True)


def _access_key_signer() -> AkSkSigner | None:
    """An IMS access key from DISKPORT_ACCESS_KEY, DISKPORT_SECRET_KEY and DISKPORT_PROJECT_ID, when all are set."""
    names = ("DISKPORT_ACCESS_KEY", "DISKPORT_SECRET_KEY", "DISKPORT_PROJECT_ID")
    values = [os.environ.get(name) for name in names]
    if not all(values):
        return None
    return AkSkSigner(*(str(value) for value in values))


def _is_operator_command(arguments: argparse.Namespace) -> bool:
    """access-key commands are the operator's: never signed with an access key."""
    return getattr(arguments, "command", None) == "access-key"


# ---------------------------------------------------------------------------------------------- commands
def run_serve(arguments: argparse.Namespace) -> int:
    defaults = LocalModeOptions.from_environment()
    return serve(
        LocalModeOptions(
            api_port=arguments.api_port if arguments.api_port is not None else defaults.api_port,
            aws_port=arguments.aws_port if arguments.aws_port is not None else defaults.aws_port,
            project_id=arguments.project_id or defaults.project_id,
            verbose=arguments.verbose,
            auth=arguments.auth or defaults.auth,
        )
    )


def run_import(arguments: argparse.Namespace) -> int:
    target = target_of(arguments)
    image_url = _image_url_of(arguments, target)
    request: dict[str, Any] = {"name": arguments.name, "image_url": image_url, "min_disk": arguments.min_disk}
    optional = {"os_type": arguments.os_type, "description": arguments.description, "cmk_id": arguments.cmk_id}
    request.update({field: value for field, value in optional.items() if value is not None})
    if arguments.tag:
        request["image_tags"] = [_tag_of(text) for text in arguments.tag]
    job_id = target.api.create_data_image(request)
    if not arguments.wait:
        _print_json({"job_id": job_id})
        return 0
    print(f"job {job_id}", file=sys.stderr)
    job = wait_for_job(target.api, job_id, poll_seconds=arguments.poll_seconds or (1 if target.is_local else 10))
    _print_json(job)
    if job["status"] != "SUCCESS":
        print(f"diskport: the import failed: {job.get('error_code')}: {job.get('fail_reason')}", file=sys.stderr)
        return 1
    return 0


def wait_for_job(api: ApiClient, job_id: str, *, poll_seconds: float, timeout_seconds: float = 6 * 3600) -> Any:
    """Poll the job until it ends, showing its progress; the ended job."""
    bar = ProgressBar()
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            job = api.job(job_id)
            entities = job.get("entities") or {}
            task = entities.get("current_task") or ""
            # IMS answers process_percent as a fraction of 1.
            bar.show(100 * float(entities.get("process_percent") or 0), f"{job['status']} {task}".strip())
            if job["status"] in ENDED_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise CommandError(f"Job {job_id} has not ended after {timeout_seconds:.0f} s; see `diskport job`.")
            time.sleep(poll_seconds)
    finally:
        bar.finish()


def run_job(arguments: argparse.Namespace) -> int:
    _print_json(target_of(arguments).api.job(arguments.job_id))
    return 0


def run_images(arguments: argparse.Namespace) -> int:
    _print_json(target_of(arguments).api.images(arguments.id))
    return 0


def run_export(arguments: argparse.Namespace) -> int:
    target = target_of(arguments)
    images = target.api.images(arguments.image_id)
    if not images:
        raise CommandError(f"The project has no image {arguments.image_id}.")
    image = images[0]
    snapshot_id, virtual_size = image.get("diskport_snapshot_id"), image.get("diskport_virtual_size_bytes")
    if image.get("status") != "active" or not snapshot_id or virtual_size is None:
        raise CommandError(f"Image {arguments.image_id} is {image.get('status')}; only active images can be exported.")
    bar = ProgressBar()
    try:
        result = export_snapshot(
            str(snapshot_id),
            int(virtual_size),
            Path(arguments.file),
            ebs=target.aws_client("ebs"),
            on_progress=lambda done, total: bar.show(100 * done / total if total else 100, "exporting"),
        )
    finally:
        bar.finish()
    print(
        f"wrote {arguments.file}: {result.file_size} bytes, {result.blocks_written} blocks of data from {snapshot_id}",
        file=sys.stderr,
    )
    return 0


def run_sam_env(arguments: argparse.Namespace) -> int:
    print(env_json(LocalStack(), arguments.aws_endpoint), end="")
    return 0


# ---------------------------------------------------------------------------------------------- helpers
def _image_url_of(arguments: argparse.Namespace, target: Target) -> str:
    """SOURCE as IMS's bucket:object, uploading it first when it is a local file."""
    source = str(arguments.source)
    path = Path(source)
    if path.is_file():
        return _upload(path, arguments.upload_bucket, target)
    if ":" in source and not path.exists():
        return source
    raise CommandError(f"{source} is neither a file nor bucket:key.")


def _upload(path: Path, bucket: str | None, target: Target) -> str:
    if bucket is None:
        if not target.is_local:
            raise CommandError(
                "Name a bucket the stack reads (one of its SourceBuckets) with --upload-bucket to upload a file."
            )
        bucket = UPLOADS_BUCKET
    s3 = target.aws_client("s3")
    if target.is_local:
        _ensure_local_bucket(s3, bucket)
    # IMS refuses spaces in object names (IMG.0175); a fresh folder keeps uploads of one file apart.
    key = f"uploads/{uuid.uuid4().hex[:12]}/{path.name.replace(' ', '-')}"
    total = path.stat().st_size
    bar = ProgressBar()
    sent = 0

    def sent_more(count: int) -> None:
        nonlocal sent
        sent += count
        bar.show(100 * sent / total if total else 100, f"uploading {path.name}", f"{sent} of {total} bytes")

    try:
        s3.upload_file(str(path), bucket, key, Callback=sent_more)
    finally:
        bar.finish()
    return f"{bucket}:{key}"


def _ensure_local_bucket(s3: Any, bucket: str) -> None:
    """Local mode reads any bucket in the emulator: make the one asked for if it is not there yet."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def _tag_of(text: str) -> dict[str, str]:
    key, _, value = text.partition("=")
    return {"key": key, "value": value}


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diskport", description="diskport: IMS-compatible data disk image import.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--endpoint",
        help="a deployed stack's API endpoint (its ApiEndpoint output); requests are signed with SigV4. "
        "Default: DISKPORT_ENDPOINT, else local mode",
    )
    remote.add_argument("--aws-endpoint", help="the AWS endpoint for uploads and snapshot reads (local mode's)")
    remote.add_argument("--region", help="the deployed stack's region (default: from the endpoint, else AWS_REGION)")

    serve_command = commands.add_parser("serve", help="run local mode in the foreground")
    serve_command.add_argument("--api-port", type=int, help=f"the API's port (LOCAL_API_PORT, {DEFAULT_API_PORT})")
    serve_command.add_argument("--aws-port", type=int, help=f"the emulator's port (LOCAL_AWS_PORT, {DEFAULT_AWS_PORT})")
    serve_command.add_argument("--project-id", help="the project every caller acts for (LOCAL_PROJECT_ID)")
    serve_command.add_argument("--verbose", action="store_true", help="also log every emulated AWS call")
    serve_command.add_argument(
        "--auth", choices=["open", "aksk"], help="aksk: require IMS AK/SK signatures, as deployed (LOCAL_AUTH, open)"
    )
    serve_command.set_defaults(run=run_serve)

    import_command = commands.add_parser("import", parents=[remote], help="import a virtual disk file as a data image")
    import_command.add_argument("source", metavar="SOURCE", help="a local file (uploaded first) or bucket:key")
    import_command.add_argument("--name", required=True, help="the image name (1-128 characters)")
    import_command.add_argument("--min-disk", type=int, required=True, help="the data disk size in GB (40-2048)")
    import_command.add_argument("--os-type", choices=["Linux", "Windows"])
    import_command.add_argument("--description")
    import_command.add_argument("--tag", action="append", metavar="KEY=VALUE", help="an image tag (repeatable)")
    import_command.add_argument("--cmk-id", help="the KMS key that encrypts the image")
    import_command.add_argument("--upload-bucket", help=f"where a local file goes (local mode: {UPLOADS_BUCKET})")
    import_command.add_argument("--wait", action="store_true", help="follow the job until it ends")
    import_command.add_argument("--poll-seconds", type=float, help="seconds between job polls (1 local, 10 deployed)")
    import_command.set_defaults(run=run_import)

    job_command = commands.add_parser("job", parents=[remote], help="show a job and its progress")
    job_command.add_argument("job_id", metavar="JOB_ID")
    job_command.set_defaults(run=run_job)

    images_command = commands.add_parser("images", parents=[remote], help="list the project's images")
    images_command.add_argument("--id", help="only the image with this id")
    images_command.set_defaults(run=run_images)

    export_command = commands.add_parser("export", parents=[remote], help="write an image out as a raw disk file")
    export_command.add_argument("image_id", metavar="IMAGE_ID")
    export_command.add_argument("file", metavar="FILE")
    export_command.set_defaults(run=run_export)

    add_image_commands(commands, remote)

    sam_env_command = commands.add_parser("sam-env", help="print env.json for sam local start-api / invoke")
    sam_env_command.add_argument(
        "--aws-endpoint", default=DOCKER_HOST_AWS_ENDPOINT, help="local mode's AWS emulator as containers reach it"
    )
    sam_env_command.set_defaults(run=run_sam_env)
    add_smoke_command(commands, remote)
    add_access_key_commands(commands, remote, target_of)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except DiskportError as error:
        print(f"diskport: {error.code}: {error.reason}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"diskport: AWS: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
