"""What `diskport import` checks before it uploads anything, and the upload itself, undone when interrupted.

The request is validated by the API's own model (`CreateDataImageRequest`), so a bad name, tag, key or min_disk
is refused in a second instead of after the upload. A local file is opened by the service's own engine, which
refuses what the import would refuse (archives, broken headers, a disk larger than min_disk) from its metadata.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from boto3.s3.transfer import ProgressCallbackInvoker, TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from diskport.domain.requests import CreateDataImageRequest, ims_code_of
from diskport.engine import LocalFileSource, open_disk
from diskport.errors import engine_errors_as_ims
from diskport.pipeline.fetch import check_disk_size
from pydantic import ValidationError

from diskport_local.command_errors import CommandError, CommandInterruptedError
from diskport_local.progress import ProgressBar


def refuse_s3_url(source: str) -> None:
    """IMS names objects `bucket:key`; an s3:// URL would read as a bucket called 's3'."""
    if source.startswith(("s3://", "S3://")):
        bucket, _, key = source[5:].partition("/")
        raise CommandError(f"Name the object as bucket:key, not as an s3:// URL: {bucket}:{key}")


def checked_request(fields: dict[str, Any]) -> CreateDataImageRequest:
    """The request as the API will take it, or the IMS error the API would answer."""
    try:
        return CreateDataImageRequest.model_validate(fields)
    except ValidationError as error:
        raise ims_code_of(error) from None


def upload_key(path: Path) -> str:
    # IMS refuses spaces in object names (IMG.0175); a fresh folder keeps uploads of one file apart.
    return f"uploads/{uuid.uuid4().hex[:12]}/{path.name.replace(' ', '-')}"


def check_local_file(path: Path, request: CreateDataImageRequest) -> None:
    """Open the file with the engine: what the import would refuse for its content is refused now."""
    with engine_errors_as_ims(), LocalFileSource(path) as source, open_disk(source, ova_disk=request.ova_disk) as disk:
        check_disk_size(request.min_disk, disk.virtual_size)


# The classic transfer manager: on Ctrl-C it cancels its parts and aborts the multipart upload.
TRANSFER = TransferConfig(preferred_transfer_client="classic")


def upload(s3: Any, path: Path, bucket: str, key: str) -> None:
    """Upload with a progress bar; on Ctrl-C, stop, remove what was uploaded, and say so."""
    total = path.stat().st_size
    bar = ProgressBar()
    sent = 0

    def sent_more(count: int) -> None:
        nonlocal sent
        sent += count
        bar.show(100 * sent / total if total else 100, f"uploading {path.name}", done_bytes=sent)

    manager = create_transfer_manager(s3, TRANSFER)
    uploading = None
    try:
        uploading = manager.upload(str(path), bucket, key, subscribers=[ProgressCallbackInvoker(sent_more)])
        # Waited for here, not in result(): on Ctrl-C, result() starts cancelling the parts itself, and the worker
        # threads report their cancelled parts before the cleanup below could silence them.
        while not uploading.done():
            time.sleep(0.05)
        uploading.result()
    except KeyboardInterrupt:
        bar.finish()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave half a cleanup
        try:
            with _silenced_stderr():
                # (shutdown(cancel=True, cancel_msg=...) passes its message where s3transfer wants an exception type)
                if uploading is not None:
                    uploading.cancel()
                manager.shutdown()
            remove_partial_upload(s3, bucket, key)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise CommandInterruptedError(f"Upload of {path} interrupted; nothing was left in {bucket}.") from None
    finally:
        manager.shutdown()
        bar.finish()


@contextlib.contextmanager
def _silenced_stderr() -> Iterator[None]:
    """Each worker thread reports the part it was sending as cancelled, with a traceback (some from native code,
    straight to file descriptor 2): not for people, who asked for the cancel."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink, contextlib.redirect_stderr(io.StringIO()):
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def remove_partial_upload(s3: Any, bucket: str, key: str) -> None:
    """Abort the key's unfinished multipart uploads and delete the object if it got written."""
    try:
        listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
        for unfinished in listing.get("Uploads", []):
            if unfinished["Key"] == key:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=unfinished["UploadId"])
        s3.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as error:
        raise CommandError(f"Upload interrupted, and removing {bucket}:{key} failed ({error}): delete it.") from None
