"""A projection of the deployed import pipeline: a discrete-event model in virtual time, no sleeping.

The model runs the service's own chunk planner (`chunk_size_for`, `plan_chunks`) and its own rate control
(`WriteRate`, each worker's instance driven by the model's clock) against a model of what AWS does around them:

- Step Functions: Fetch, and beside it `WorkersBesideFetch` convert workers whose Lambda starts run while Fetch
  works; each takes one of the plan's first chunks at its first look after Fetch publishes it (they look every
  `FIRST_CHUNKS_POLL_SECONDS`). The plan's other chunks run in the Convert map after those, up to
  `ConvertConcurrency` chunks at once. A plan of up to
  `INLINE_MAP_MAX_CHUNKS` chunks runs in the Inline Map, whose iterations are states of the execution itself (a
  state transition, which the model counts as no time, like every other); a larger plan runs in the Distributed
  Map, each of whose chunks starts as a child execution (`--child-start` seconds). The worker of the last chunk
  finishes the import (`register.finish_import`); the Register state after the Map only removes work files, after
  the job's SUCCESS, so it is not in the time-to-image;
- the steps' own calls, as the code makes them, one after another or side by side (`fetch_seconds`,
  `worker_start_seconds`, `finish_seconds`): each DynamoDB call takes `--dynamodb-latency`, each S3 request of a
  small object or range `--s3-latency` (the S3 performance guide: small requests' median latency is "in the tens of
  milliseconds"), each EBS or EC2 control call (StartSnapshot, CompleteSnapshot, DescribeSnapshots)
  `--control-latency`, AWS documenting none of these three. A dense qcow2's inspection reads its header and L1
  table in one GET, then its L2 tables `PREFETCH_AT_ONCE` at a time;
- Lambda: each invocation starts after `--lambda-start` seconds (drawn around it); one function's network
  carries `--bandwidth-mib` MiB/s, shared by its requests in flight;
- EBS: PutSnapshotBlock answers after a latency drawn around `--put-latency` (AWS's performance example assumes
  100 ms); more than the per-snapshot or per-account quota in any one-second window is answered with a throttling
  error (after `--throttle-latency`), which the worker's rate control takes as EBS's real answer would be;
- DynamoDB: a lease renewal is applied and answered after `--dynamodb-latency`, in the order it arrives, like the
  job item's and the account item's updates.

What the model leaves out: the engine's decoding (it measures 95 MB/s and more per core in
`bench/engine_bench.py`, above one function's network), the source's data reads once under way (they stream ahead
of the writes; 5,500 GETs/s per prefix), and EBS's own time between CompleteSnapshot and `completed` (not in the
design's hands, and not documented: the first DescribeSnapshots is taken to find the snapshot completed).

It prints, for dense disks of 1 to 2,048 GiB of data, the projected time from the execution's start to the job's
SUCCESS, its ratio to data / 500 MiB/s (the EBS limit: 1,000 PutSnapshotBlock/s of 512 KiB), the requests/s used
and the most sent to the snapshot in any one second; and for 10 imports of 16 GiB started together in one account,
the time until the last ends against the per-account limit.

    python bench/pipeline_model.py [--seed 1] [--seeds 10] [--sizes 1,4,16,64,256,2048] [--min-chunk-sweep]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from diskport.engine import BLOCK_SIZE
from diskport.pipeline.chunk_plan import INLINE_MAP_MAX_CHUNKS, chunk_size_for, plan_chunks
from diskport.pipeline.convert import FIRST_CHUNKS_POLL_SECONDS
from diskport.pipeline.rate_control import QUOTA_MARGIN, Limits, WriteRate
from diskport.pipeline.register import CHECKSUM_READS_AT_ONCE
from diskport.settings import Settings, get_settings
from diskport.stores.source_objects import PREFETCH_AT_ONCE
from diskport.stores.work_files import Chunk
from diskport.stores.write_leases import Lease

MIB = 1024 * 1024
GIB = 1024 * MIB
EBS_SNAPSHOT_QUOTA = 1000.0
EBS_LIMIT_BYTES_PER_SECOND = EBS_SNAPSHOT_QUOTA * BLOCK_SIZE
# A qcow2 of qemu-img's default 64 KiB clusters: an L2 table of 8,192 entries maps 512 MiB.
QCOW2_BYTES_PER_L2_TABLE = 512 * MIB


@dataclass(frozen=True)
class Environment:
    """What AWS does around the pipeline, in seconds, requests/s and MiB/s."""

    put_latency: float = 0.100
    throttle_latency: float = 0.030
    lambda_start: float = 0.25
    child_start: float = 0.20
    bandwidth_mib: float = 75.0
    dynamodb_latency: float = 0.010
    s3_latency: float = 0.030
    control_latency: float = 0.100
    snapshot_quota: float = EBS_SNAPSHOT_QUOTA
    account_quota: float = 1000.0
    # PutSnapshotBlock requests/s other software in the account sends meanwhile, unseen by the leases: only
    # throttling answers tell the workers about them.
    foreign_load: float = 0.0


class Simulation:
    """Virtual time and its events: callbacks run in time order (ties in the order they were scheduled)."""

    def __init__(self, seed: int) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def at(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (self.now + max(0.0, delay), next(self._order), action))

    def run(self) -> None:
        while self._events:
            self.now, _, action = heapq.heappop(self._events)
            action()

    def around(self, mean: float, spread: float = 0.25) -> float:
        """A positive duration drawn log-normally around `mean`."""
        if mean <= 0:
            return 0.0
        return mean * math.exp(self.random.gauss(-spread * spread / 2, spread))


class QuotaWindow:
    """EBS's view of one quota: requests in the last second, the ones it accepted and all that arrived."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._accepted: deque[float] = deque()
        self._arrived: deque[float] = deque()
        self.most_arrived = 0

    def arrive(self, now: float) -> None:
        self._arrived.append(now)
        while self._arrived and self._arrived[0] <= now - 1.0:
            self._arrived.popleft()
        self.most_arrived = max(self.most_arrived, len(self._arrived))

    def admits(self, now: float) -> bool:
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        return len(self._accepted) < self.limit

    def accept(self, now: float) -> None:
        self._accepted.append(now)


@dataclass
class Account:
    """The account's quota window and its item of import leases."""

    window: QuotaWindow
    leases: dict[str, dict[str, float | int]] = field(default_factory=dict)


@dataclass
class ImportRun:
    name: str
    chunks: list[Chunk]
    data_bytes: int
    started: float
    window: QuotaWindow
    leases: dict[str, dict[str, float | int]] = field(default_factory=dict)
    pending: deque[Chunk] = field(default_factory=deque)
    running: int = 0
    done_chunks: int = 0
    requests: int = 0
    throttles: int = 0
    convert_started: float = 0.0
    map_started: bool = False
    writes_ended: float = 0.0
    ended: float = 0.0


class Worker:
    """One convert invocation: its rate control, writer threads, network link and lease renewals."""

    def __init__(self, model: PipelineModel, run: ImportRun, chunk: Chunk) -> None:
        self.model, self.run, self.chunk = model, run, chunk
        sim, settings = model.sim, model.settings
        self.rate = WriteRate(
            lambda: sim.now,
            holder=chunk.chunk_id,
            import_id=run.name,
            limits=Limits(
                snapshot=settings.snapshot_puts_per_second, account=model.environment.account_quota * model.margin
            ),
            planned_workers=min(settings.convert_concurrency, len(run.chunks)),
            lease_seconds=3 * settings.renew_seconds,
            blocks=-(-chunk.allocated_bytes // BLOCK_SIZE),
            planned_at=run.convert_started,
        )
        self.to_send = -(-chunk.allocated_bytes // BLOCK_SIZE)
        self.unanswered = self.to_send
        self.link_free_at = 0.0
        self.finished = False
        self.transfer_seconds = BLOCK_SIZE / (model.environment.bandwidth_mib * MIB)

    def start(self) -> None:
        # The first requests wait for the first renewal's answer, as in convert.py.
        self.model.sim.at(self.model.worker_start_seconds(), self._first_renewal)

    def _first_renewal(self) -> None:
        self._renew()
        for _ in range(self.model.settings.writers_per_chunk):
            self._writer_ready()
        self._schedule_renewal()

    def _schedule_renewal(self) -> None:
        every = self.rate.seconds_to_next_renewal(self.model.settings.renew_seconds)
        self.model.sim.at(every + self.model.environment.dynamodb_latency, self._periodic_renewal)

    def _periodic_renewal(self) -> None:
        if self.finished:
            return
        self._renew()
        self._schedule_renewal()

    def _renew(self) -> None:
        self.run.leases[self.chunk.chunk_id] = self.rate.worker_lease(self.rate.claim()).to_item()
        account = self.model.account.leases
        account[self.run.name] = self.rate.import_lease().to_item()
        self.rate.renewed(_leases(self.run.leases), _leases(account))

    def _writer_ready(self) -> None:
        if self.to_send == 0:
            return
        wait = self.rate.wait_seconds()
        if wait is None:
            self.model.sim.at(0.05, self._writer_ready)
            return
        self.to_send -= 1
        self.model.sim.at(wait, self._send)

    def _send(self) -> None:
        sim = self.model.sim
        sent = max(sim.now, self.link_free_at) + self.transfer_seconds
        self.link_free_at = sent
        sim.at(sent - sim.now, self._arrive)

    def _arrive(self) -> None:
        sim, environment = self.model.sim, self.model.environment
        now = sim.now
        self.run.requests += 1
        self.run.window.arrive(now)
        self.model.account.window.arrive(now)
        if self.run.window.admits(now) and self.model.account.window.admits(now):
            self.run.window.accept(now)
            self.model.account.window.accept(now)
            sim.at(sim.around(environment.put_latency), self._answered)
        else:
            self.run.throttles += 1
            sim.at(sim.around(environment.throttle_latency), self._throttled)

    def _answered(self) -> None:
        self.unanswered -= 1
        if self.unanswered == 0:
            self._finish()
        else:
            self._writer_ready()

    def _throttled(self) -> None:
        self.rate.throttled()
        self.to_send += 1
        self._writer_ready()

    def _finish(self) -> None:
        self.finished = True
        now = self.model.sim.now
        del self.run.leases[self.chunk.chunk_id]
        live = [lease for lease in _leases(self.run.leases).values() if lease.expires_at > now]
        if not live:
            self.model.account.leases.pop(self.run.name, None)
        # The chunk's checksums saved to S3, then the final renewal that counts the chunk finished.
        self.model.sim.at(self.model.call("s3") + self.model.call("dynamodb"), lambda: self.model.chunk_done(self.run))


def _leases(items: dict[str, dict[str, float | int]]) -> dict[str, Lease]:
    return {name: Lease.from_item(item) for name, item in items.items()}


class PipelineModel:
    """Imports through Fetch and the Convert map, whose last worker finishes each, in one account."""

    def __init__(self, environment: Environment, settings: Settings, seed: int, margin: float = QUOTA_MARGIN) -> None:
        self.environment = environment
        self.settings = settings
        # The share of the account's quota the workers plan to use (convert.py: QUOTA_MARGIN)
        self.margin = margin
        self.sim = Simulation(seed)
        self.account = Account(QuotaWindow(environment.account_quota))
        self.runs: list[ImportRun] = []
        self.foreign_throttled = 0
        if environment.foreign_load > 0:
            self.sim.at(0.0, self._foreign_request)

    def _foreign_request(self) -> None:
        window = self.account.window
        window.arrive(self.sim.now)
        if window.admits(self.sim.now):
            window.accept(self.sim.now)
        else:
            self.foreign_throttled += 1
        if any(run.ended == 0.0 for run in self.runs):
            self.sim.at(1.0 / self.environment.foreign_load, self._foreign_request)

    def start_import(self, name: str, data_bytes: int) -> ImportRun:
        size = chunk_size_for(
            data_bytes,
            workers=self.settings.convert_concurrency,
            min_chunk_bytes=self.settings.min_chunk_bytes,
            max_chunk_bytes=self.settings.chunk_bytes,
        )
        chunks = plan_chunks([(0, data_bytes)], data_bytes, size)
        run = ImportRun(name, chunks, data_bytes, self.sim.now, QuotaWindow(self.environment.snapshot_quota))
        self.runs.append(run)
        fetch = self.sim.around(self.environment.lambda_start) + self.fetch_seconds(data_bytes)
        self.sim.at(fetch, lambda: self._start_map(run))
        return run

    def call(self, service: str) -> float:
        """One round trip to `service`: "dynamodb", "s3" or "control" (EBS's and EC2's snapshot calls)."""
        latency = {
            "dynamodb": self.environment.dynamodb_latency,
            "s3": self.environment.s3_latency,
            "control": self.environment.control_latency,
        }[service]
        return self.sim.around(latency)

    def calls(self, service: str, count: int) -> float:
        return sum(self.call(service) for _ in range(count))

    def fetch_seconds(self, data_bytes: int) -> float:
        """Fetch's calls (`fetch.fetch_source`) for a dense qcow2 of `data_bytes`, after its Lambda start."""
        l2_tables = -(-data_bytes // QCOW2_BYTES_PER_L2_TABLE)
        inspection = 1 + -(-l2_tables // PREFETCH_AT_ONCE)  # header and L1 in one GET, then the L2 tables
        seconds = self.call("dynamodb")  # the job
        seconds += self.call("dynamodb")  # the image record, with its place in the quota
        seconds += self.call("s3")  # HeadObject
        seconds += self.calls("s3", inspection)
        # StartSnapshot beside the image update and the plan's two updates of the job item
        seconds += max(self.call("control"), self.calls("dynamodb", 3))
        # the manifest beside the image's snapshot id
        return seconds + max(self.call("s3"), self.call("dynamodb"))

    def worker_start_seconds(self) -> float:
        """A convert worker's calls before its first request (`convert.convert_chunk`), after its Lambda start:
        the manifest beside the job item's task and the chunk's record, the first renewal, the disk's header and
        L1 table, the chunk's first L2 tables and its first data."""
        seconds = max(self.call("s3"), self.calls("dynamodb", 2)) + self.call("dynamodb")
        return seconds + self.calls("s3", 3)

    def finish_seconds(self, chunks: int) -> float:
        """What the last chunk's worker does after its final renewal (`register.finish_import`)."""
        seconds = self.call("dynamodb")  # the job's task: register
        reads = self.call("dynamodb") + self.calls("s3", -(-chunks // CHECKSUM_READS_AT_ONCE))
        # the job item and the checksum files, beside the failure record and the snapshot's state
        seconds += max(reads, self.call("s3"), self.call("control"))
        seconds += self.call("control")  # CompleteSnapshot
        seconds += self.call("dynamodb")  # the job records the seal
        seconds += self.call("control")  # DescribeSnapshots: completed
        return seconds + self.calls("dynamodb", 2)  # the job read, then SUCCESS with the image active

    def _start_map(self, run: ImportRun) -> None:
        """Fetch has published the plan: the workers started beside it take its first chunks, the Convert map the
        others once they have all finished (the Map follows the Parallel state)."""
        run.convert_started = now = self.sim.now
        beside = min(self.settings.workers_beside_fetch, self.settings.convert_concurrency, len(run.chunks))
        for chunk in run.chunks[:beside]:
            # Each was started with Fetch and has looked for the plan every FIRST_CHUNKS_POLL_SECONDS since its
            # Lambda start: it begins at the first look after the plan, or at its start if that came later.
            started = run.started + self.sim.around(self.environment.lambda_start)
            looks = self.sim.random.uniform(0.0, FIRST_CHUNKS_POLL_SECONDS) + self.call("dynamodb")
            run.running += 1
            self.sim.at(max(started - now, looks), lambda chunk=chunk: Worker(self, run, chunk).start())
        run.pending.extend(run.chunks[beside:])

    def _start_map_of_the_rest(self, run: ImportRun) -> None:
        for _ in range(min(self.settings.convert_concurrency, len(run.pending))):
            self._start_child(run)

    def _start_child(self, run: ImportRun) -> None:
        chunk = run.pending.popleft()
        run.running += 1
        delay = self.sim.around(self.environment.lambda_start)
        if len(run.chunks) > INLINE_MAP_MAX_CHUNKS:
            delay += self.sim.around(self.environment.child_start)
        self.sim.at(delay, lambda: Worker(self, run, chunk).start())

    def chunk_done(self, run: ImportRun) -> None:
        run.running -= 1
        run.done_chunks += 1
        if run.pending and run.map_started:
            self._start_child(run)
        elif run.pending and run.running == 0:
            run.map_started = True
            self._start_map_of_the_rest(run)
        elif run.running == 0:
            run.writes_ended = self.sim.now
            self.sim.at(self.finish_seconds(len(run.chunks)), lambda: setattr(run, "ended", self.sim.now))

    def run(self) -> None:
        self.sim.run()


@dataclass(frozen=True)
class Projection:
    data_gib: float
    chunks: int
    seconds: float
    fetch_seconds: float
    write_seconds: float
    register_seconds: float
    ratio: float
    requests_per_second: float
    most_per_second: int
    throttles: int


def project_one(
    data_gib: float, environment: Environment, settings: Settings, seed: int, margin: float = QUOTA_MARGIN
) -> Projection:
    model = PipelineModel(environment, settings, seed, margin)
    data_bytes = int(data_gib * GIB)
    run = model.start_import("import-0", data_bytes)
    model.run()
    seconds = run.ended - run.started
    writes = run.writes_ended - run.convert_started
    return Projection(
        data_gib=data_gib,
        chunks=len(run.chunks),
        seconds=seconds,
        fetch_seconds=run.convert_started - run.started,
        write_seconds=writes,
        register_seconds=run.ended - run.writes_ended,
        ratio=seconds / (data_bytes / EBS_LIMIT_BYTES_PER_SECOND),
        requests_per_second=run.requests / writes,
        most_per_second=run.window.most_arrived,
        throttles=run.throttles,
    )


def project_concurrent(
    count: int, data_gib: float, environment: Environment, settings: Settings, seed: int, margin: float = QUOTA_MARGIN
) -> str:
    model = PipelineModel(environment, settings, seed, margin)
    runs = [model.start_import(f"import-{index}", int(data_gib * GIB)) for index in range(count)]
    model.run()
    total = max(run.ended for run in runs)
    limit = count * data_gib * GIB / (environment.account_quota * BLOCK_SIZE)
    throttles = sum(run.throttles for run in runs)
    most = model.account.window.most_arrived
    slowest, fastest = max(run.ended for run in runs), min(run.ended for run in runs)
    return (
        f"{count} concurrent {data_gib:g} GiB imports, one account: all done in {total:.1f} s, per-account limit "
        f"{limit:.1f} s, ratio {total / limit:.2f}; first done at {fastest:.1f} s, last at {slowest:.1f} s; "
        f"most requests/s to the account {most} (quota {environment.account_quota:.0f}), throttled {throttles}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Environment()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=0, help="also the ratios' mean and worst over this many seeds")
    parser.add_argument("--sizes", default="1,4,16,64,256,2048", help="GiB of data of each projected disk")
    parser.add_argument("--put-latency", type=float, default=defaults.put_latency)
    parser.add_argument("--throttle-latency", type=float, default=defaults.throttle_latency)
    parser.add_argument("--lambda-start", type=float, default=defaults.lambda_start)
    parser.add_argument("--child-start", type=float, default=defaults.child_start)
    parser.add_argument("--bandwidth-mib", type=float, default=defaults.bandwidth_mib)
    parser.add_argument("--account-quota", type=float, default=defaults.account_quota)
    parser.add_argument("--foreign-load", type=float, default=0.0, help="requests/s of other writers in the account")
    parser.add_argument("--dynamodb-latency", type=float, default=defaults.dynamodb_latency)
    parser.add_argument("--s3-latency", type=float, default=defaults.s3_latency, help="a small S3 request's")
    parser.add_argument("--control-latency", type=float, default=defaults.control_latency, help="EBS's, EC2's")
    parser.add_argument("--quota-margin", type=float, help="share of the quotas planned for (default: the service's)")
    parser.add_argument("--min-chunk-mib", type=int, help="MIN_CHUNK_BYTES in MiB (default: the service's)")
    parser.add_argument("--min-chunk-sweep", action="store_true", help="compare minimum chunk sizes")
    parser.add_argument("--concurrent", type=int, default=10, help="imports of 16 GiB started together")
    options = parser.parse_args()
    environment = Environment(
        put_latency=options.put_latency,
        throttle_latency=options.throttle_latency,
        lambda_start=options.lambda_start,
        child_start=options.child_start,
        bandwidth_mib=options.bandwidth_mib,
        account_quota=options.account_quota,
        foreign_load=options.foreign_load,
        dynamodb_latency=options.dynamodb_latency,
        s3_latency=options.s3_latency,
        control_latency=options.control_latency,
    )
    settings = get_settings()
    margin = options.quota_margin or QUOTA_MARGIN
    if options.quota_margin:
        puts = EBS_SNAPSHOT_QUOTA * options.quota_margin
        settings = settings.model_copy(update={"snapshot_puts_per_second": puts})
    if options.min_chunk_mib:
        settings = settings.model_copy(update={"min_chunk_bytes": options.min_chunk_mib * MIB})
    sizes = [float(size) for size in options.sizes.split(",")]

    print(
        f"pipeline model: PutSnapshotBlock ~{environment.put_latency * 1000:.0f} ms, Lambda start "
        f"~{environment.lambda_start:.2f} s, Distributed Map child start ~{environment.child_start:.2f} s, "
        f"{environment.bandwidth_mib:g} MiB/s per function, {settings.convert_concurrency} workers at most, "
        f"min chunk {settings.min_chunk_bytes / MIB:.0f} MiB, max chunk {settings.chunk_bytes / GIB:g} GiB"
    )
    if options.min_chunk_sweep:
        for min_chunk_mib in (32, 64, 128, 256, 512, 1024):
            swept = settings.model_copy(update={"min_chunk_bytes": min_chunk_mib * MIB})
            ratios = [project_one(size, environment, swept, options.seed, margin).ratio for size in sizes]
            print(f"  min chunk {min_chunk_mib:5d} MiB: " + ", ".join(f"{r:.2f}" for r in ratios))
    projections = [project_one(size, environment, settings, options.seed, margin) for size in sizes]
    for projection in projections:
        limit = projection.data_gib * GIB / EBS_LIMIT_BYTES_PER_SECOND
        print(
            f"  {projection.data_gib:6g} GiB dense: {projection.chunks:4d} chunks, time-to-image "
            f"{projection.seconds:8.1f} s (Fetch {projection.fetch_seconds:.1f} s, Convert "
            f"{projection.write_seconds:.1f} s, finishing {projection.register_seconds:.1f} s), "
            f"EBS limit {limit:7.1f} s, "
            f"ratio {projection.ratio:.2f}, {projection.requests_per_second:4.0f} requests/s, most in one second "
            f"{projection.most_per_second} (quota {environment.snapshot_quota:.0f}), throttled {projection.throttles}"
        )
    if options.seeds:
        for size in sizes:
            ratios = [
                project_one(size, environment, settings, seed, margin).ratio for seed in range(1, options.seeds + 1)
            ]
            print(
                f"  {size:6g} GiB dense over seeds 1 to {options.seeds}: ratio mean {sum(ratios) / len(ratios):.2f}, "
                f"best {min(ratios):.2f}, worst {max(ratios):.2f}"
            )
    print(project_concurrent(options.concurrent, 16, environment, settings, options.seed, margin))
    exceeded = [p for p in projections if p.most_per_second > environment.snapshot_quota]
    print(f"one-import quota exceeded in the model: {'yes' if exceeded else 'no'}")
    sixteen = [p for p in projections if p.data_gib == 16]
    if sixteen:
        print(f"projected time-to-image / EBS limit, 16 GiB dense: {sixteen[0].ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
