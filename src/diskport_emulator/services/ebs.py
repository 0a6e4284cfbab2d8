"""The EBS direct APIs as AWS documents them, installed into moto in place of its lenient mock.

moto's own EBS reports a BlockSize of 512, keeps every block in memory, and accepts any checksum, length
and block count. `install()` swaps in `StrictEbsBackend`, which answers as EBS does:

- blocks are 524,288 bytes; PutSnapshotBlock refuses a DataLength other than that, a body of another
  length, or a base64 SHA-256 that does not match the data (ValidationException, Reason
  INVALID_PARAMETER_VALUE; an index beyond the volume is INVALID_BLOCK);
- CompleteSnapshot refuses a ChangedBlocksCount other than the number of blocks written and a LINEAR
  aggregate other than SHA-256 over the blocks' digests in index order; the snapshot then turns from
  `pending` to `completed` (in EC2's DescribeSnapshots too) after `completion_seconds`;
- StartSnapshot with a ClientToken it has seen answers the same snapshot for the same request and
  ConflictException for a different one; for `not_found_seconds` after it, the new snapshot answers
  ResourceNotFoundException (Reason SNAPSHOT_NOT_FOUND), as EBS may for a while;
- PutSnapshotBlock requests beyond the per-snapshot or per-account rate answer RequestThrottledException
  (Reason RESOURCE_LEVEL_THROTTLE or ACCOUNT_THROTTLED; HTTP 400, which the SDKs retry as throttling);
- an encrypted snapshot needs a KMS key that exists and is enabled (ValidationException, Reason
  INVALID_CUSTOMER_KEY, otherwise);
- every PutSnapshotBlock may be delayed by `put_latency_seconds`, as a remote service would be;
- blocks live in a sparse file per snapshot (`BlockFiles`), removed with the snapshot or by `reset()`.

In server mode, PutSnapshotBlock (thousands of requests an import) is answered by `answer_put_snapshot_block`
without moto's generic dispatch (routing, request parsing and response serialization from the service model,
which cost three times what the block's own work does): the caller is authorized as moto authorizes it, the
block goes through the same checks, and any refusal is handed to moto to answer as it answers every error here.

The knobs are read from the environment on every request (see `StrictEbsOptions`), so a test or
`diskport serve` sets them with a variable and no restart.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core.base_backend import BackendDict
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ebs import models as moto_ebs_models
from moto.ebs.models import EBSBackend
from moto.ebs.responses import EBSResponse

from diskport_emulator.services.block_files import BlockFiles

BLOCK_SIZE = 524_288
GIB = 1024**3
LARGEST_VOLUME_GIB = 65_536
LIST_PAGE_LARGEST = 10_000
LIST_PAGE_SMALLEST = 100
# How long a snapshot token stays valid for GetSnapshotBlock and friends, as ListSnapshotBlocks reports it.
EXPIRY = timedelta(days=7)

ENVIRONMENT_VARIABLES = {
    "puts_per_second_per_snapshot": "DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT",
    "puts_per_second_per_account": "DISKPORT_EBS_PUT_RATE_PER_ACCOUNT",
    "put_latency_seconds": "DISKPORT_EBS_PUT_LATENCY_MS",
    "not_found_seconds": "DISKPORT_EBS_NOT_FOUND_SECONDS",
    "completion_seconds": "DISKPORT_EBS_COMPLETION_SECONDS",
}


@dataclass(frozen=True)
class StrictEbsOptions:
    """The emulated EBS's quotas and delays. The defaults are AWS's documented quotas and no delay."""

    puts_per_second_per_snapshot: float = 1000.0
    puts_per_second_per_account: float = 1000.0
    put_latency_seconds: float = 0.0
    not_found_seconds: float = 0.0
    completion_seconds: float = 0.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> StrictEbsOptions:
        """DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT / _PER_ACCOUNT (requests/s), DISKPORT_EBS_PUT_LATENCY_MS,
        DISKPORT_EBS_NOT_FOUND_SECONDS and DISKPORT_EBS_COMPLETION_SECONDS, each optional."""
        defaults = cls()

        def number(attribute: str, scale: float = 1.0) -> float:
            text = environ.get(ENVIRONMENT_VARIABLES[attribute], "").strip()
            return float(text) * scale if text else float(getattr(defaults, attribute))

        return cls(
            puts_per_second_per_snapshot=number("puts_per_second_per_snapshot"),
            puts_per_second_per_account=number("puts_per_second_per_account"),
            put_latency_seconds=number("put_latency_seconds", 0.001),
            not_found_seconds=number("not_found_seconds"),
            completion_seconds=number("completion_seconds"),
        )


class EbsError(ServiceException):
    """An EBS direct API error, serialized from the service model (its HTTP status and the Reason member)."""

    def __init__(self, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(code, message)
        if reason is not None:
            self.Reason = reason  # the member name in the EBS service model


def validation_error(message: str, reason: str = "INVALID_PARAMETER_VALUE") -> EbsError:
    return EbsError("ValidationException", message, reason)


def snapshot_not_found(snapshot_id: str) -> EbsError:
    return EbsError("ResourceNotFoundException", f"The snapshot '{snapshot_id}' does not exist.", "SNAPSHOT_NOT_FOUND")


class RateQuota:
    """A token bucket: `per_second` requests a second, with one second's worth of burst."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: float | None = None
        self._updated = 0.0

    def take(self, per_second: float) -> bool:
        now = self._clock()
        capacity = max(1.0, per_second)
        if self._tokens is None:
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._updated) * per_second)
        self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass
class StoredBlock:
    checksum: str
    token: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class StrictSnapshot:
    """What EBS knows of one snapshot; the block data itself is in the snapshot's block file."""

    snapshot_id: str
    account_id: str
    volume_size: int
    description: str
    tags: list[dict[str, str]]
    start_time: datetime
    visible_at: float
    encrypted: bool = False
    kms_key_arn: str | None = None
    status: str = "pending"
    blocks: dict[int, StoredBlock] = field(default_factory=dict)
    put_quota: RateQuota = field(default_factory=RateQuota)
    block_size: int = BLOCK_SIZE

    @property
    def block_count(self) -> int:
        return self.volume_size * GIB // BLOCK_SIZE


class StrictEbsBackend(EBSBackend):
    """moto's EBS backend with EBS's documented checks, quotas and delays, and blocks on disk."""

    block_files = BlockFiles(BLOCK_SIZE)

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.strict_snapshots: dict[str, StrictSnapshot] = {}
        self.client_tokens: dict[str, tuple[str, str]] = {}  # token -> (request fingerprint, snapshot id)
        self.account_put_quota = RateQuota()
        self.throttled_requests = 0  # PutSnapshotBlock requests answered RequestThrottledException, for tests
        self.lock = threading.RLock()

    def reset(self) -> None:
        for snapshot_id in list(getattr(self, "strict_snapshots", {})):
            self.block_files.remove(snapshot_id)
        super().reset()

    @staticmethod
    def options() -> StrictEbsOptions:
        return StrictEbsOptions.from_environment()

    def strict_start_snapshot(
        self,
        *,
        volume_size: int,
        tags: list[dict[str, str]] | None,
        description: str | None,
        client_token: str | None,
        encrypted: bool,
        kms_key_arn: str | None,
    ) -> StrictSnapshot:
        if not 1 <= volume_size <= LARGEST_VOLUME_GIB:
            raise validation_error(f"VolumeSize must be 1 to {LARGEST_VOLUME_GIB} GiB.", "INVALID_VOLUME_SIZE")
        if kms_key_arn is not None and not encrypted:
            raise validation_error("KmsKeyArn is given but Encrypted is not true.")
        fingerprint = json.dumps([volume_size, tags, description, encrypted, kms_key_arn], sort_keys=True)
        with self.lock:
            seen = self.client_tokens.get(client_token) if client_token is not None else None
            if seen is not None and seen[1] in self.strict_snapshots:
                seen_fingerprint, snapshot_id = seen
                if seen_fingerprint != fingerprint:
                    raise EbsError(
                        "ConflictException",
                        "The request uses the same client token as a previous, but non-identical request.",
                    )
                return self.strict_snapshots[snapshot_id]
            if encrypted and kms_key_arn is not None:
                self._check_key_usable(kms_key_arn)
            moto_snapshot = super().start_snapshot(volume_size=volume_size, tags=tags, description=description or "")
            ec2_snapshot = self.ec2_backend.snapshots[moto_snapshot.snapshot_id]
            ec2_snapshot.status = "pending"
            ec2_snapshot.encrypted = encrypted
            if kms_key_arn is not None:
                ec2_snapshot.kms_key_id = kms_key_arn
            del self.snapshots[moto_snapshot.snapshot_id]  # moto's copy would hold blocks in memory
            snapshot = StrictSnapshot(
                snapshot_id=moto_snapshot.snapshot_id,
                account_id=self.account_id,
                volume_size=volume_size,
                description=description or "",
                tags=list(tags or []),
                start_time=utcnow(),
                visible_at=time.monotonic() + self.options().not_found_seconds,
                encrypted=encrypted,
                kms_key_arn=kms_key_arn,
            )
            self.strict_snapshots[snapshot.snapshot_id] = snapshot
            if client_token is not None:
                self.client_tokens[client_token] = (fingerprint, snapshot.snapshot_id)
            return snapshot

    def _check_key_usable(self, kms_key_arn: str) -> None:
        from moto.kms.models import kms_backends

        region = kms_key_arn.split(":")[3] if kms_key_arn.startswith("arn:") else self.region_name
        kms = kms_backends[self.account_id][region]
        try:
            key = kms.describe_key(kms_key_arn)
        except KeyError:
            key = None
        if key is None or key.key_state != "Enabled":
            raise validation_error(
                f"The KMS key {kms_key_arn} does not exist or is not enabled.", "INVALID_CUSTOMER_KEY"
            )

    def visible_snapshot(self, snapshot_id: str) -> StrictSnapshot:
        snapshot = self.strict_snapshots.get(snapshot_id)
        if snapshot is None or time.monotonic() < snapshot.visible_at:
            raise snapshot_not_found(snapshot_id)
        return snapshot

    def strict_put_snapshot_block(
        self,
        *,
        snapshot_id: str,
        block_index: int,
        block_data: bytes,
        checksum: str | None,
        checksum_algorithm: str | None,
        data_length: int | None,
    ) -> StoredBlock:
        options = self.options()
        if options.put_latency_seconds > 0:
            time.sleep(options.put_latency_seconds)
        with self.lock:
            snapshot = self.visible_snapshot(snapshot_id)
            if not snapshot.put_quota.take(options.puts_per_second_per_snapshot):
                self.throttled_requests += 1
                raise EbsError(
                    "RequestThrottledException",
                    f"PutSnapshotBlock requests for {snapshot_id} exceed its rate limit.",
                    "RESOURCE_LEVEL_THROTTLE",
                )
            if not self.account_put_quota.take(options.puts_per_second_per_account):
                self.throttled_requests += 1
                raise EbsError(
                    "RequestThrottledException",
                    "PutSnapshotBlock requests of this account exceed its rate limit.",
                    "ACCOUNT_THROTTLED",
                )
            if snapshot.status != "pending":
                raise validation_error(f"The snapshot '{snapshot_id}' is {snapshot.status}, not pending.")
            if not 0 <= block_index < snapshot.block_count:
                raise validation_error(
                    f"Block index {block_index} is outside the volume of {snapshot.volume_size} GiB.", "INVALID_BLOCK"
                )
        if data_length != BLOCK_SIZE:
            raise validation_error(f"DataLength must be {BLOCK_SIZE}, not {data_length}.")
        if len(block_data) != data_length:
            raise validation_error(f"The block holds {len(block_data)} bytes, but DataLength says {data_length}.")
        if checksum_algorithm != "SHA256":
            raise validation_error("ChecksumAlgorithm must be SHA256.")
        if checksum != base64.b64encode(hashlib.sha256(block_data).digest()).decode("ascii"):
            raise validation_error("The checksum does not match the block's data.")
        self.block_files.write(snapshot_id, block_index, block_data)
        stored = StoredBlock(checksum)
        with self.lock:
            snapshot.blocks[block_index] = stored
        return stored

    def strict_complete_snapshot(
        self,
        *,
        snapshot_id: str,
        changed_blocks_count: int | None,
        checksum: str | None,
        checksum_algorithm: str | None,
        aggregation_method: str | None,
    ) -> str:
        with self.lock:
            snapshot = self.visible_snapshot(snapshot_id)
            if snapshot.status != "pending":
                return snapshot.status
            if changed_blocks_count != len(snapshot.blocks):
                raise validation_error(
                    f"ChangedBlocksCount is {changed_blocks_count}, but {len(snapshot.blocks)} blocks were written."
                )
            if checksum is not None:
                if checksum_algorithm != "SHA256" or aggregation_method != "LINEAR":
                    raise validation_error("An aggregate checksum must be SHA256 with the LINEAR aggregation method.")
                if checksum != linear_aggregate(snapshot):
                    raise validation_error("The aggregate checksum does not match the blocks written.")
            snapshot.status = "completing"
        delay = self.options().completion_seconds
        if delay > 0:
            timer = threading.Timer(delay, self._mark_completed, args=(snapshot,))
            timer.daemon = True
            timer.start()
        else:
            self._mark_completed(snapshot)
        return "pending"

    def _mark_completed(self, snapshot: StrictSnapshot) -> None:
        with self.lock:
            snapshot.status = "completed"
            ec2_snapshot = self.ec2_backend.snapshots.get(snapshot.snapshot_id)
            if ec2_snapshot is not None:
                ec2_snapshot.status = "completed"

    def strict_get_snapshot_block(
        self, *, snapshot_id: str, block_index: int, block_token: str | None
    ) -> tuple[bytes, str]:
        with self.lock:
            snapshot = self.visible_snapshot(snapshot_id)
            stored = snapshot.blocks.get(block_index)
        if stored is None or stored.token != block_token:
            raise validation_error(f"No block {block_index} with that token in {snapshot_id}.", "INVALID_BLOCK_TOKEN")
        return self.block_files.read(snapshot_id, block_index), stored.checksum

    def strict_list_snapshot_blocks(
        self, *, snapshot_id: str, max_results: int | None, next_token: str | None, starting_block_index: int | None
    ) -> tuple[StrictSnapshot, list[tuple[int, StoredBlock]], str | None]:
        page_size = max(LIST_PAGE_SMALLEST, min(LIST_PAGE_LARGEST, max_results or LIST_PAGE_LARGEST))
        first = int(next_token) if next_token else (starting_block_index or 0)
        with self.lock:
            snapshot = self.visible_snapshot(snapshot_id)
            indices = sorted(index for index in snapshot.blocks if index >= first)
            page = [(index, snapshot.blocks[index]) for index in indices[:page_size]]
        following = str(indices[page_size]) if len(indices) > page_size else None
        return snapshot, page, following

    def forget(self, snapshot_id: str) -> None:
        """The snapshot was deleted (through EC2): drop what EBS held of it, its block file too."""
        with self.lock:
            self.strict_snapshots.pop(snapshot_id, None)
        self.block_files.remove(snapshot_id)


def linear_aggregate(snapshot: StrictSnapshot) -> str:
    aggregate = hashlib.sha256()
    for index in sorted(snapshot.blocks):
        aggregate.update(base64.b64decode(snapshot.blocks[index].checksum))
    return base64.b64encode(aggregate.digest()).decode("ascii")


strict_ebs_backends: BackendDict[StrictEbsBackend] = BackendDict(StrictEbsBackend, "ebs")


def _backend(response: EBSResponse) -> StrictEbsBackend:
    return strict_ebs_backends[response.current_account][response.region]


def _start_snapshot(self: EBSResponse) -> ActionResult:
    snapshot = _backend(self).strict_start_snapshot(
        volume_size=int(self._get_param("VolumeSize")),
        tags=self._get_param("Tags"),
        description=self._get_param("Description"),
        client_token=self._get_param("ClientToken"),
        encrypted=bool(self._get_param("Encrypted", False)),
        kms_key_arn=self._get_param("KmsKeyArn"),
    )
    result: dict[str, Any] = {
        "SnapshotId": snapshot.snapshot_id,
        "OwnerId": snapshot.account_id,
        "Status": snapshot.status,
        "StartTime": snapshot.start_time,
        "VolumeSize": snapshot.volume_size,
        "BlockSize": snapshot.block_size,
        "Tags": snapshot.tags,
        "Description": snapshot.description,
        "SseType": "sse-kms" if snapshot.encrypted else "none",
    }
    if snapshot.kms_key_arn is not None:
        result["KmsKeyArn"] = snapshot.kms_key_arn
    return ActionResult(result)


def _put_snapshot_block(self: EBSResponse) -> ActionResult:
    refused, _PENDING.refusal = _PENDING.refusal, None
    if refused is not None:  # the fast path's checks refused the block: answer it as every refusal is answered
        raise refused
    data_length = self._get_param("DataLength")
    stored = _backend(self).strict_put_snapshot_block(
        snapshot_id=self._get_param("SnapshotId"),
        block_index=int(self._get_param("BlockIndex")),
        block_data=self._get_param("BlockData") or b"",
        checksum=self._get_param("Checksum"),
        checksum_algorithm=self._get_param("ChecksumAlgorithm"),
        data_length=int(data_length) if data_length is not None else None,
    )
    return ActionResult({"Checksum": stored.checksum, "ChecksumAlgorithm": "SHA256"})


def _complete_snapshot(self: EBSResponse) -> ActionResult:
    count = self._get_param("ChangedBlocksCount")
    status = _backend(self).strict_complete_snapshot(
        snapshot_id=self._get_param("SnapshotId"),
        changed_blocks_count=int(count) if count is not None else None,
        checksum=self._get_param("Checksum"),
        checksum_algorithm=self._get_param("ChecksumAlgorithm"),
        aggregation_method=self._get_param("ChecksumAggregationMethod"),
    )
    return ActionResult({"Status": status})


def _get_snapshot_block(self: EBSResponse) -> ActionResult:
    data, checksum = _backend(self).strict_get_snapshot_block(
        snapshot_id=self._get_param("SnapshotId"),
        block_index=int(self._get_param("BlockIndex")),
        block_token=self._get_param("BlockToken"),
    )
    return ActionResult(
        {"DataLength": len(data), "BlockData": data, "Checksum": checksum, "ChecksumAlgorithm": "SHA256"}
    )


def _list_snapshot_blocks(self: EBSResponse) -> ActionResult:
    max_results, starting = self._get_param("MaxResults"), self._get_param("StartingBlockIndex")
    snapshot, page, following = _backend(self).strict_list_snapshot_blocks(
        snapshot_id=self._get_param("SnapshotId"),
        max_results=int(max_results) if max_results is not None else None,
        next_token=self._get_param("NextToken"),
        starting_block_index=int(starting) if starting is not None else None,
    )
    result: dict[str, Any] = {
        "Blocks": [{"BlockIndex": index, "BlockToken": block.token} for index, block in page],
        "VolumeSize": snapshot.volume_size,
        "BlockSize": snapshot.block_size,
        "ExpiryTime": snapshot.start_time + EXPIRY,
    }
    if following is not None:
        result["NextToken"] = following
    return ActionResult(result)


def _list_changed_blocks(self: EBSResponse) -> ActionResult:
    backend = _backend(self)
    second = backend.visible_snapshot(self._get_param("SecondSnapshotId"))
    first_id = self._get_param("FirstSnapshotId")
    first = backend.visible_snapshot(first_id) if first_id else None
    changed = []
    for index in sorted(set(second.blocks) | set(first.blocks if first else {})):
        before = first.blocks.get(index) if first else None
        after = second.blocks.get(index)
        if before is None or after is None or before.checksum != after.checksum:
            entry: dict[str, Any] = {"BlockIndex": index}
            if before is not None:
                entry["FirstBlockToken"] = before.token
            if after is not None:
                entry["SecondBlockToken"] = after.token
            changed.append(entry)
    return ActionResult({"ChangedBlocks": changed, "VolumeSize": second.volume_size, "BlockSize": second.block_size})


BLOCK_PATH = re.compile(r"/snapshots/(?P<snapshot_id>[^/]+)/blocks/(?P<block_index>[0-9]+)")
_ACCESS_KEY = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/ebs/aws4_request")


class _Pending(threading.local):
    """A refusal the fast path found, for moto to answer on the same thread."""

    refusal: EbsError | None = None


_PENDING = _Pending()


@dataclass(frozen=True)
class _BlockRequest:
    """What `_authorize` reads of a request (moto's response object, for this one operation)."""

    environ: Mapping[str, Any]
    raw_body: bytes
    current_account: str
    region: str
    method: str = "PUT"
    data: Mapping[str, Any] = field(default_factory=dict)
    service_name: str = "ebs"

    @functools.cached_property
    def headers(self) -> Any:
        from werkzeug.datastructures import EnvironHeaders

        return EnvironHeaders(dict(self.environ))

    @property
    def raw_path(self) -> str:
        return str(self.environ.get("PATH_INFO", ""))

    @property
    def uri(self) -> str:
        query = self.environ.get("QUERY_STRING")
        return f"{self.raw_path}?{query}" if query else self.raw_path


def answer_put_snapshot_block(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """A PutSnapshotBlock request answered here, or None for moto to answer (another request, a caller moto would
    refuse, a refused block); the request's body stays readable for moto."""
    match = BLOCK_PATH.fullmatch(str(environ.get("PATH_INFO", "")))
    signed = _ACCESS_KEY.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    length = str(environ.get("CONTENT_LENGTH") or "")
    if environ.get("REQUEST_METHOD") != "PUT" or match is None or signed is None or not length.isdigit():
        return None
    if environ.get("HTTP_TRANSFER_ENCODING") or not str(environ.get("HTTP_X_AMZ_DATA_LENGTH", "")).isdigit():
        return None
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    request = _BlockRequest(environ, body, _account_of(environ, signed.group(1)), signed.group(2))
    if not _authorized(request, match.group("snapshot_id")):
        return None
    try:
        stored = strict_ebs_backends[request.current_account][request.region].strict_put_snapshot_block(
            snapshot_id=match.group("snapshot_id"),
            block_index=int(match.group("block_index")),
            block_data=body,
            checksum=environ.get("HTTP_X_AMZ_CHECKSUM"),
            checksum_algorithm=environ.get("HTTP_X_AMZ_CHECKSUM_ALGORITHM"),
            data_length=int(environ["HTTP_X_AMZ_DATA_LENGTH"]),
        )
    except EbsError as refusal:
        _PENDING.refusal = refusal
        return None
    start_response("201 Created", _answer_headers(stored))
    return [b"{}"]


def forget_pending_refusal() -> None:
    """Drop a refusal moto did not answer (a request that failed before reaching the EBS)."""
    _PENDING.refusal = None


def _account_of(environ: Mapping[str, Any], access_key: str) -> str:
    """The caller's account, as moto's `BaseResponse.get_current_account` finds it."""
    from moto.iam.models import get_account_id_from

    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    return str(environ.get("HTTP_X_MOTO_ACCOUNT_ID") or get_account_id_from(access_key))


def _authorized(request: _BlockRequest, snapshot_id: str) -> bool:
    """Whether moto would let the caller write to the snapshot (IAM enforced or not); moto answers a refusal."""
    from diskport_emulator.iam import _authorize

    try:
        _authorize(request, "PutSnapshotBlock", f"arn:aws:ec2:{request.region}::snapshot/{snapshot_id}")
    except Exception:  # access denied, an unknown key: moto's own check answers it
        return False
    return True


def _answer_headers(stored: StoredBlock) -> list[tuple[str, str]]:
    """The headers moto's serializer gives PutSnapshotBlock's answer (its output members are headers)."""
    from moto import settings
    from moto.utilities.aws_headers import gen_amzn_requestid_long

    headers = [
        ("x-amz-Checksum", stored.checksum),
        ("x-amz-Checksum-Algorithm", "SHA256"),
        ("Content-Type", "application/json"),
        ("x-amzn-requestid", gen_amzn_requestid_long()),
        ("Content-Length", "2"),
    ]
    if not settings.DISABLE_GLOBAL_CORS:
        headers.append(("Access-Control-Allow-Origin", "*"))
    return headers


_RESPONSES: dict[str, Callable[[EBSResponse], ActionResult]] = {
    "start_snapshot": _start_snapshot,
    "put_snapshot_block": _put_snapshot_block,
    "complete_snapshot": _complete_snapshot,
    "get_snapshot_block": _get_snapshot_block,
    "list_snapshot_blocks": _list_snapshot_blocks,
    "list_changed_blocks": _list_changed_blocks,
}


def install() -> None:
    """Make moto's EBS (decorator and server mode alike) the strict one, in this process (idempotent)."""
    from moto.ec2.models.elastic_block_store import EBSBackend as Ec2BlockStoreBackend

    moto_ebs_models.ebs_backends = strict_ebs_backends  # type: ignore[assignment]  # what moto's reset finds
    for name, method in _RESPONSES.items():
        setattr(EBSResponse, name, method)
    original_delete = Ec2BlockStoreBackend.delete_snapshot
    if getattr(original_delete, "forgets_strict_blocks", False):
        return

    def delete_snapshot(ec2: Any, snapshot_id: str) -> Any:
        deleted = original_delete(ec2, snapshot_id)
        strict_ebs_backends[ec2.account_id][ec2.region_name].forget(snapshot_id)
        return deleted

    delete_snapshot.forgets_strict_blocks = True  # type: ignore[attr-defined]
    Ec2BlockStoreBackend.delete_snapshot = delete_snapshot  # type: ignore[method-assign,assignment]
    _answer_blocks_first()


def _answer_blocks_first() -> None:
    """Make moto's server hand PutSnapshotBlock requests to `answer_put_snapshot_block` first (idempotent)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    dispatch = DomainDispatcherApplication.__call__
    if getattr(dispatch, "answers_blocks_first", False):
        return

    def dispatch_blocks_first(dispatcher: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answered = answer_put_snapshot_block(environ, start_response)
        if answered is not None:
            return answered
        try:
            return dispatch(dispatcher, environ, start_response)
        finally:
            forget_pending_refusal()

    dispatch_blocks_first.answers_blocks_first = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = dispatch_blocks_first  # type: ignore[method-assign,assignment]


def remove_block_files() -> None:
    """Remove every snapshot's block file, as local mode does when it stops."""
    StrictEbsBackend.block_files.remove_all()
