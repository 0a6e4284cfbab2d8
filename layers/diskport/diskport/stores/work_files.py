"""What the steps of one import hand each other, kept in the work bucket under `imports/<job_id>/`.

- `manifest.json`: the facts Fetch established (source version, format, sizes, image and snapshot ids).
- `plan.json`: the chunks, the Convert map's ItemReader.
- `checksums/<chunk>.json`: each chunk's block checksums, which Register folds into the aggregate checksum.
- `failure.json`: the reason a chunk gave up, since a failed Distributed Map reports only that it failed.

The bucket's lifecycle rule expires forgotten files; the steps delete them when the import ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from diskport.errors import ImportFailedError, StepFailure
from diskport.settings import get_settings
from diskport.stores import aws, aws_errors
from diskport.stores.source_objects import SourceObject


class Chunk(BaseModel):
    """One item of the Convert map: [start, end) of the virtual disk, block-aligned (end may be the disk's end)."""

    index: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    allocated_bytes: int = Field(ge=0, description="Bytes of [start, end) the image's tables mark allocated.")

    @property
    def chunk_id(self) -> str:
        return chunk_id_of(self.index)


def chunk_id_of(index: int) -> str:
    """A chunk's name in work files and progress records: its index, zero-padded so names sort in disk order."""
    return f"{index:06d}"


class ImportManifest(BaseModel):
    job_id: str
    project_id: str
    image_id: str
    image_name: str
    source: SourceObject
    source_format: str
    virtual_size: int
    min_disk: int
    snapshot_id: str
    chunk_count: int
    allocated_bytes: int
    # The disk of an OVA the request named (`CreateDataImageRequest.ova_disk`); every step opens that one.
    ova_disk: str | None = None
    # When Fetch made the plan (epoch seconds): convert workers that start later get a larger share (rate_control).
    planned_at: float | None = None


class BlockChecksum(BaseModel):
    index: int
    checksum: str


class WorkFiles:
    """One import's files in the work bucket."""

    def __init__(self, job_id: str, s3_client: Any | None = None, bucket: str | None = None) -> None:
        self.job_id = job_id
        self.bucket = bucket or get_settings().work_bucket
        self._s3 = s3_client or aws.client("s3")
        self.prefix = f"imports/{job_id}/"

    @property
    def plan_key(self) -> str:
        return self.prefix + "plan.json"

    def save_manifest(self, manifest: ImportManifest) -> None:
        self._put("manifest.json", manifest.model_dump_json())

    def manifest(self) -> ImportManifest:
        body = self._get("manifest.json")
        if body is None:
            raise ImportFailedError(f"The import's manifest is missing from the work bucket (job {self.job_id}).")
        return ImportManifest.model_validate_json(body)

    def save_plan(self, chunks: list[Chunk]) -> None:
        self._put("plan.json", json.dumps([chunk.model_dump() for chunk in chunks]))

    def save_chunk_checksums(self, chunk: Chunk, checksums: list[BlockChecksum]) -> None:
        self._put(
            f"checksums/{chunk.chunk_id}.json", json.dumps([[block.index, block.checksum] for block in checksums])
        )

    def chunk_checksums(self, chunk_index: int) -> list[BlockChecksum]:
        chunk_id = chunk_id_of(chunk_index)
        body = self._get(f"checksums/{chunk_id}.json")
        if body is None:
            raise ImportFailedError(f"Chunk {chunk_id} of job {self.job_id} left no block checksums.")
        return [BlockChecksum(index=index, checksum=checksum) for index, checksum in json.loads(body)]

    def record_failure(self, failure: StepFailure) -> None:
        self._put("failure.json", json.dumps(failure.to_dict()))

    def recorded_failure(self) -> StepFailure | None:
        body = self._get("failure.json")
        if body is None:
            return None
        recorded = json.loads(body)
        return StepFailure(str(recorded["code"]), str(recorded["reason"]))

    def delete_all(self) -> None:
        for keys in self._key_pages():
            if keys:
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys]})

    def _key_pages(self) -> Iterator[list[str]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": 1000}):
            yield [str(entry["Key"]) for entry in page.get("Contents", [])]

    def _put(self, name: str, body: str) -> None:
        self._s3.put_object(
            Bucket=self.bucket, Key=self.prefix + name, Body=body.encode("utf-8"), ContentType="application/json"
        )

    def _get(self, name: str) -> str | None:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + name)
        except ClientError as error:
            if aws_errors.is_gone(error):
                return None
            raise
        return str(response["Body"].read().decode("utf-8"))
