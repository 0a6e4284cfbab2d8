"""`diskport`: run local mode, and import, follow and export images against local mode or a deployed stack.

    diskport serve                                   local mode in the foreground (what `make run` runs)
    diskport import SOURCE --name N --min-disk GB    SOURCE is a local file (uploaded first) or bucket:key
    diskport job JOB_ID [--wait]                     the job, with its progress (--wait: follow it to its end)
    diskport jobs                                    the project's jobs, newest first
    diskport images [--id ID]                        the project's images
    diskport export IMAGE_ID FILE [--force]          the image's snapshot, written out as a raw disk
    diskport image update|tags|delete IMAGE_ID       change, tag or delete an image (image_commands.py)
    diskport sam-env                                 env.json for `sam local` against local mode's emulator
    diskport smoke                                   import a generated disk, compare its snapshot, delete it all
    diskport access-key create|list|revoke           IMS access keys (AK/SK), see access_key_commands.py

On a terminal commands print tables; with --json, or when their output is piped, JSON.
Commands talk to local mode (http://127.0.0.1:3000, AWS emulator on :5000) unless `--endpoint` (or
DISKPORT_ENDPOINT) names a deployed stack; requests to a deployed stack are signed with SigV4 using the
usual AWS credentials.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from diskport.errors import DiskportError

from diskport_emulator import LOCAL_REGION, LocalStack
from diskport_local import output, preflight
from diskport_local.access_key_commands import add_access_key_commands
from diskport_local.client import AkSkSigner, ApiClient, SigV4Signer, region_of_endpoint
from diskport_local.command_errors import EXIT_INTERRUPTED, CommandError, CommandInterruptedError
from diskport_local.command_help import add_command
from diskport_local.export import export_snapshot
from diskport_local.follow import ENDED_STATUSES, jobs_limit, list_jobs, wait_for_job
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

__all__ = ["ENDED_STATUSES", "CommandError", "build_parser", "main", "wait_for_job"]


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
        aws_endpoint = getattr(arguments, "aws_endpoint", None)
        if access_key_signer is not None and not _is_operator_command(arguments):
            return Target(ApiClient(endpoint, access_key_signer), session, aws_endpoint, False)
        return Target(ApiClient(endpoint, SigV4Signer(credentials, region)), session, aws_endpoint, False)
    api_port = int(os.environ.get("LOCAL_API_PORT") or DEFAULT_API_PORT)
    aws_port = int(os.environ.get("LOCAL_AWS_PORT") or DEFAULT_AWS_PORT)
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_REGION,
    )
    aws_endpoint = getattr(arguments, "aws_endpoint", None) or f"http://{LOCAL_HOST}:{aws_port}"
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
    """Run local mode in the foreground.

    Example: diskport serve
    """
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
    """Import a virtual disk file as a data image.

    Example: diskport import disk.qcow2 --name data-1 --min-disk 40 --tag team=storage --wait
    """
    target = target_of(arguments)
    source = str(arguments.source)
    preflight.refuse_s3_url(source)
    path = Path(source)
    upload_bucket: str | None = None
    if path.is_file():
        upload_bucket = _upload_bucket_of(arguments, target)
        image_url = f"{upload_bucket}:{preflight.upload_key(path)}"
    elif ":" in source and not path.exists():
        image_url = source
    else:
        raise CommandError(f"{source} is neither a file nor bucket:key.")
    fields: dict[str, Any] = {"name": arguments.name, "image_url": image_url, "min_disk": arguments.min_disk}
    optional = {
        "os_type": arguments.os_type,
        "description": arguments.description,
        "cmk_id": arguments.cmk_id,
        "ova_disk": arguments.ova_disk,
    }
    fields.update({field: value for field, value in optional.items() if value is not None})
    if arguments.tag:
        fields["image_tags"] = [_tag_of(text) for text in arguments.tag]
    # Everything the API and the import would refuse, and that can be known here, is refused before the upload.
    request = preflight.checked_request(fields)
    if upload_bucket is not None:
        preflight.check_local_file(path, request)
        s3 = target.aws_client("s3")
        if target.is_local:
            _ensure_local_bucket(s3, upload_bucket)
        preflight.upload(s3, path, upload_bucket, request.object_key)
    job_id = target.api.create_data_image(fields)
    as_json = output.wants_json(arguments.json)
    if not arguments.wait:
        if as_json:
            output.print_json({"job_id": job_id})
        else:
            print(f"job {job_id} started; follow it with: diskport job {job_id} --wait")
        return 0
    print(f"job {job_id}", file=sys.stderr)
    return _show_ended_job(wait_for_job(target.api, job_id, poll_seconds=_poll_seconds(arguments, target)), as_json)


def _show_ended_job(job: Any, as_json: bool) -> int:
    output.show(job, as_json=as_json, render=lambda value: output.fields(value, output.JOB_FIELDS))
    if job["status"] != "SUCCESS":
        print(f"diskport: the import failed: {job.get('error_code')}: {job.get('fail_reason')}", file=sys.stderr)
        return 1
    return 0


def _poll_seconds(arguments: argparse.Namespace, target: Target) -> float:
    return float(arguments.poll_seconds or (1 if target.is_local else 10))


def run_job(arguments: argparse.Namespace) -> int:
    """Show a job and its progress.

    Example: diskport job 4010a32b5f909853015f90aaa24b0015 --wait
    """
    target = target_of(arguments)
    as_json = output.wants_json(arguments.json)
    if arguments.wait:
        job = wait_for_job(target.api, arguments.job_id, poll_seconds=_poll_seconds(arguments, target))
        return _show_ended_job(job, as_json)
    job = target.api.job(arguments.job_id)
    output.show(job, as_json=as_json, render=lambda value: output.fields(value, output.JOB_FIELDS))
    return 0


def run_jobs(arguments: argparse.Namespace) -> int:
    """List the project's jobs, newest first.

    Example: diskport jobs
    """
    jobs = list_jobs(target_of(arguments).api, limit=arguments.limit)
    output.show(
        jobs, as_json=output.wants_json(arguments.json), render=lambda value: output.table(value, output.JOB_COLUMNS)
    )
    return 0


def run_images(arguments: argparse.Namespace) -> int:
    """List the project's images.

    Example: diskport images
    """
    images = target_of(arguments).api.images(arguments.id)
    output.show(
        images,
        as_json=output.wants_json(arguments.json),
        render=lambda value: output.table(value, output.IMAGE_COLUMNS),
    )
    return 0


def run_export(arguments: argparse.Namespace) -> int:
    """Write an image out as a raw disk file.

    Example: diskport export 5c3b4a1e-0d1f-4e5a-9b7c-2f6e8d9a0b1c data-1.raw
    """
    destination = Path(arguments.file)
    # Checked before anything is asked of the service, so a mistake costs nothing and leaves nothing.
    if destination.is_dir():
        raise CommandError(f"{destination} is a directory: name the file to write, e.g. {destination / 'disk.raw'}.")
    if not destination.parent.is_dir():
        raise CommandError(f"The directory {destination.parent} does not exist: create it first, or name another.")
    if destination.exists() and not arguments.force:
        raise CommandError(f"{destination} exists: name another file, or add --force to overwrite it.")
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
            destination,
            ebs=target.aws_client("ebs"),
            on_progress=lambda done, total: bar.show(
                100 * done / total if total else 100, "exporting", done_bytes=done
            ),
            overwrite=arguments.force,
        )
    except KeyboardInterrupt:
        bar.finish()
        raise CommandInterruptedError(f"Export interrupted; {destination} was not written.") from None
    except OSError as error:
        raise CommandError(f"Writing {destination} failed: {error.strerror or error}.") from None
    finally:
        bar.finish()
    print(
        f"wrote {arguments.file}: {result.file_size} bytes, {result.blocks_written} blocks of data from {snapshot_id}",
        file=sys.stderr,
    )
    return 0


def run_sam_env(arguments: argparse.Namespace) -> int:
    """Print env.json for sam local start-api / invoke.

    Example: diskport sam-env > env.json
    """
    print(env_json(LocalStack(), arguments.aws_endpoint), end="")
    return 0


# ---------------------------------------------------------------------------------------------- helpers
def _upload_bucket_of(arguments: argparse.Namespace, target: Target) -> str:
    if arguments.upload_bucket is not None:
        return str(arguments.upload_bucket)
    if not target.is_local:
        raise CommandError(
            "Name a bucket the stack reads (one of its SourceBuckets) with --upload-bucket to upload a file."
        )
    return UPLOADS_BUCKET


def _ensure_local_bucket(s3: Any, bucket: str) -> None:
    """Local mode reads any bucket in the emulator: make the one asked for if it is not there yet."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def _tag_of(text: str) -> dict[str, str]:
    key, _, value = text.partition("=")
    return {"key": key, "value": value}


# ---------------------------------------------------------------------------------------------- parser
def _version() -> str:
    try:
        return version("diskport")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diskport",
        description="diskport: IMS-compatible data disk image import.",
        epilog="example:\n  diskport import disk.qcow2 --name data-1 --min-disk 40 --wait\n\n"
        "exit status: 0 done, 1 refused or failed, 2 wrong usage, 130 interrupted (Ctrl-C)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"diskport {_version()}", help="print the version")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--endpoint",
        help="a deployed stack's API endpoint (its ApiEndpoint output); requests are signed with SigV4. "
        "Default: DISKPORT_ENDPOINT, else local mode",
    )
    remote.add_argument("--region", help="the deployed stack's region (default: from the endpoint, else AWS_REGION)")
    # Only the commands that reach AWS themselves (uploads, snapshot reads) take --aws-endpoint.
    reaches_aws = argparse.ArgumentParser(add_help=False)
    reaches_aws.add_argument(
        "--aws-endpoint",
        help="the AWS endpoint for uploads and snapshot reads (default: local mode's emulator, or AWS)",
    )
    printed = argparse.ArgumentParser(add_help=False)
    printed.add_argument(
        "--json", action="store_true", help="print JSON (the default when the output is not a terminal)"
    )
    following = argparse.ArgumentParser(add_help=False)
    following.add_argument(
        "--poll-seconds", type=float, help="seconds between job polls (default: 1 in local mode, 10 deployed)"
    )

    serve_command = add_command(commands, "serve", run_serve)
    serve_command.add_argument("--api-port", type=int, help=f"the API's port (LOCAL_API_PORT, {DEFAULT_API_PORT})")
    serve_command.add_argument("--aws-port", type=int, help=f"the emulator's port (LOCAL_AWS_PORT, {DEFAULT_AWS_PORT})")
    serve_command.add_argument("--project-id", help="the project every caller acts for (LOCAL_PROJECT_ID)")
    serve_command.add_argument("--verbose", action="store_true", help="also log every emulated AWS call")
    serve_command.add_argument(
        "--auth", choices=["open", "aksk"], help="aksk: require IMS AK/SK signatures, as deployed (LOCAL_AUTH, open)"
    )

    import_command = add_command(commands, "import", run_import, parents=[remote, reaches_aws, printed, following])
    import_command.add_argument(
        "source", metavar="SOURCE", help="a local file (checked, then uploaded) or bucket:key of an object"
    )
    import_command.add_argument("--name", required=True, help="the image name (1-128 letters, digits, -_. and spaces)")
    import_command.add_argument("--min-disk", type=int, required=True, help="the data disk size in GB (40-2048)")
    import_command.add_argument("--os-type", choices=["Linux", "Windows"], help="the image's OS type (default Linux)")
    import_command.add_argument("--description", help="a description (at most 1024 characters, one line)")
    import_command.add_argument("--tag", action="append", metavar="KEY=VALUE", help="an image tag (repeatable)")
    import_command.add_argument("--cmk-id", help="the KMS key (id, ARN or alias) that encrypts the image")
    import_command.add_argument(
        "--ova-disk", metavar="DISK", help="for an OVA of several disks: the one to import (OVF disk id or file name)"
    )
    import_command.add_argument("--upload-bucket", help=f"where a local file goes (local mode: {UPLOADS_BUCKET})")
    import_command.add_argument("--wait", action="store_true", help="follow the job until it ends")

    job_command = add_command(commands, "job", run_job, parents=[remote, printed, following])
    job_command.add_argument("job_id", metavar="JOB_ID", help="the job id `import` printed (see `diskport jobs`)")
    job_command.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")

    jobs_command = add_command(commands, "jobs", run_jobs, parents=[remote, printed])
    jobs_command.add_argument("--limit", type=jobs_limit, default=20, help="how many jobs to list (1-200, default 20)")

    images_command = add_command(commands, "images", run_images, parents=[remote, printed])
    images_command.add_argument("--id", metavar="IMAGE_ID", help="only the image with this id")

    export_command = add_command(commands, "export", run_export, parents=[remote, reaches_aws])
    export_command.add_argument(
        "image_id", metavar="IMAGE_ID", help="the id of an active image (see `diskport images`)"
    )
    export_command.add_argument("file", metavar="FILE", help="the raw disk file to write (its directory must exist)")
    export_command.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    add_image_commands(commands, remote, printed)

    sam_env_command = add_command(commands, "sam-env", run_sam_env)
    sam_env_command.add_argument(
        "--aws-endpoint", default=DOCKER_HOST_AWS_ENDPOINT, help="local mode's AWS emulator as containers reach it"
    )
    add_smoke_command(commands, remote, reaches_aws)
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
    except CommandInterruptedError as interrupted:
        print(f"\ndiskport: {interrupted.message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\ndiskport: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
