"""The data-access layer: the only code that calls AWS.

Each store owns one thing the service keeps or reads (jobs, images, the Projects table's counters, work files,
snapshots, the source object, executions, encryption keys, uploads, access keys, writer leases) and turns what
AWS answers into the project's records and errors (`aws_errors` is the one reader of botocore's error codes).
A handler builds one `Stores` per invocation and hands it to the domain or pipeline function it calls; each
store is made the first time it is used, over the process's cached clients (`aws`), so a function pays only
for the clients it needs. Tests hand in their own stores: `Stores(snapshots=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from diskport.settings import Settings, get_settings
from diskport.stores.access_keys import AccessKeyStore
from diskport.stores.encryption_keys import EncryptionKeys
from diskport.stores.executions import Executions
from diskport.stores.images import ImageStore
from diskport.stores.jobs import JobStore
from diskport.stores.snapshots import SnapshotStore
from diskport.stores.source_objects import SourceObjects
from diskport.stores.uploaded_objects import UploadedObjects
from diskport.stores.work_files import WorkFiles
from diskport.stores.write_leases import AccountLeases, AccountLeaseTable

_T = TypeVar("_T")

STORE_NAMES = frozenset(
    {
        "jobs",
        "images",
        "snapshots",
        "sources",
        "encryption_keys",
        "executions",
        "uploads",
        "access_keys",
        "account_leases",
        "work_bucket_client",
    }
)


class Stores:
    """The stores one invocation uses, each made on first use unless handed in."""

    def __init__(self, settings: Settings | None = None, **given: Any) -> None:
        unknown = set(given) - STORE_NAMES
        if unknown:
            raise TypeError(f"Stores has no store named {sorted(unknown)}")
        self.settings = settings if settings is not None else get_settings()
        self._stores: dict[str, Any] = dict(given)

    def _store(self, name: str, make: Callable[[], _T]) -> _T:
        if name not in self._stores:
            self._stores[name] = make()
        store: _T = self._stores[name]
        return store

    @property
    def jobs(self) -> JobStore:
        return self._store("jobs", JobStore)

    @property
    def images(self) -> ImageStore:
        return self._store("images", ImageStore)

    @property
    def snapshots(self) -> SnapshotStore:
        return self._store("snapshots", SnapshotStore)

    @property
    def sources(self) -> SourceObjects:
        return self._store("sources", SourceObjects)

    @property
    def encryption_keys(self) -> EncryptionKeys:
        return self._store("encryption_keys", EncryptionKeys)

    @property
    def executions(self) -> Executions:
        return self._store("executions", lambda: Executions(self.settings.state_machine_arn))

    @property
    def uploads(self) -> UploadedObjects:
        return self._store("uploads", UploadedObjects)

    @property
    def access_keys(self) -> AccessKeyStore:
        return self._store("access_keys", lambda: AccessKeyStore(self.settings))

    @property
    def account_leases(self) -> AccountLeases | None:
        """The account's writer leases; None where the stack has no WriterLeases table (each import on its own)."""
        table = self.settings.writer_leases_table
        return self._store("account_leases", lambda: AccountLeaseTable(table_name=table) if table else None)

    def work_files(self, job_id: str) -> WorkFiles:
        """One import's work files in the work bucket."""
        return WorkFiles(job_id, bucket=self.settings.work_bucket, s3_client=self._stores.get("work_bucket_client"))
