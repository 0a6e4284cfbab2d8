"""How convert workers share the PutSnapshotBlock quotas among who actually runs (virtual time, no sleeping)."""

from __future__ import annotations

import itertools
import random

from diskport.pipeline.rate_control import (
    LATE_START_CREDIT_SECONDS,
    RESERVATION_SECONDS,
    Limits,
    WriteRate,
    share_of,
)
from diskport.stores.write_leases import Lease
from hypothesis import given, settings
from hypothesis import strategies as st

SNAPSHOT_LIMIT = 950.0
LIMITS = Limits(snapshot=SNAPSHOT_LIMIT, account=10_000.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Import:
    """The job item's leases of one import and its workers, renewing the way convert.py does (one write each)."""

    def __init__(self, clock: Clock, name: str = "job", limits: Limits = LIMITS, planned: int = 16) -> None:
        self.clock, self.name, self.limits, self.planned = clock, name, limits, planned
        self.leases: dict[str, dict[str, float | int]] = {}
        self.workers: dict[str, WriteRate] = {}

    def join(
        self,
        holder: str,
        account: dict[str, dict[str, float | int]] | None = None,
        *,
        blocks: int | None = None,
        planned_at: float | None = None,
    ) -> WriteRate:
        worker = WriteRate(
            self.clock,
            holder=holder,
            import_id=self.name,
            limits=self.limits,
            planned_workers=self.planned,
            blocks=blocks,
            planned_at=planned_at,
        )
        self.workers[holder] = worker
        self.renew(holder, account)
        return worker

    def renew(self, holder: str, account: dict[str, dict[str, float | int]] | None = None) -> None:
        worker = self.workers[holder]
        # A worker sends as fast as its rate allows between renewals.
        worker._sent = int(worker.rate * (self.clock.now - worker._claimed_at))
        self.leases[holder] = worker.worker_lease(worker.claim()).to_item()
        account_view = None
        if account is not None:
            account[self.name] = worker.import_lease().to_item()
            account_view = {name: Lease.from_item(item) for name, item in account.items()}
        worker.renewed({name: Lease.from_item(item) for name, item in self.leases.items()}, account_view)

    def leave(self, holder: str) -> None:
        del self.leases[holder]
        del self.workers[holder]

    def total_rate(self) -> float:
        return sum(worker.rate for worker in self.workers.values())


def test_workers_that_start_together_share_the_snapshot_quota_equally() -> None:
    # Given 16 workers of one import announcing themselves within a second
    clock = Clock()
    run = Import(clock)
    for index in range(16):
        run.join(f"{index:06d}")
        clock.now += 0.05
    # When each has renewed its lease twice
    for _ in range(2):
        clock.now += 2
        for holder in run.workers:
            run.renew(holder)
    # Then each uses 1/16 of the snapshot's limit, and together they use all of it
    assert all(abs(worker.rate - SNAPSHOT_LIMIT / 16) < 0.01 for worker in run.workers.values())
    assert abs(run.total_rate() - SNAPSHOT_LIMIT) < 0.1


def test_the_last_workers_take_over_the_quota_the_others_leave() -> None:
    # Given 16 workers at their equal share
    clock = Clock()
    run = Import(clock)
    for index in range(16):
        run.join(f"{index:06d}")
    for _ in range(2):
        clock.now += 2
        for holder in run.workers:
            run.renew(holder)
    # When 12 finish and the 4 left keep renewing
    for index in range(12):
        run.leave(f"{index:06d}")
    for _ in range(4):
        clock.now += 2
        for holder in run.workers:
            run.renew(holder)
    # Then the 4 share the whole quota
    assert abs(run.total_rate() - SNAPSHOT_LIMIT) < 0.1
    assert all(abs(worker.rate - SNAPSHOT_LIMIT / 4) < 0.01 for worker in run.workers.values())


def test_a_worker_that_joins_a_full_import_gets_its_share_without_the_import_exceeding_the_quota() -> None:
    # Given 15 workers using the whole quota
    clock = Clock()
    run = Import(clock)
    for index in range(15):
        run.join(f"{index:06d}")
    for _ in range(4):
        clock.now += 2
        for holder in run.workers:
            run.renew(holder)
    assert abs(run.total_rate() - SNAPSHOT_LIMIT) < 0.1
    # When a 16th joins, and everyone renews in turn
    newcomer = run.join("000099")
    totals = [run.total_rate()]
    for _ in range(3):
        clock.now += 2
        for holder in run.workers:
            run.renew(holder)
            totals.append(run.total_rate())
    # Then the import never went over the quota, and the newcomer got its equal share
    assert max(totals) <= SNAPSHOT_LIMIT + 0.1
    assert abs(newcomer.rate - SNAPSHOT_LIMIT / 16) < 0.01


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000), weighted=st.booleans())
def test_however_workers_come_and_go_one_import_stays_inside_the_snapshot_quota(seed: int, weighted: bool) -> None:
    # Given workers joining, renewing and leaving in a random order, as the Map and Lambda decide (weighted: each
    # with a chunk of its own size and its credit for starting late)
    generator = random.Random(seed)
    clock = Clock()
    run = Import(clock)
    planned_at = clock.now
    names = (f"{index:06d}" for index in range(10_000))
    for _ in range(300):
        clock.now += generator.uniform(0, 0.3)
        action = generator.random()
        if action < 0.15 and len(run.workers) < 16:
            if weighted:
                run.join(next(names), blocks=generator.randint(1, 20_000), planned_at=planned_at)
            else:
                run.join(next(names))
        elif action < 0.25 and run.workers:
            run.leave(generator.choice(sorted(run.workers)))
        elif run.workers:
            run.renew(generator.choice(sorted(run.workers)))
        # Then at no moment do the workers' rates add up to more than the snapshot's limit (leases store rates to
        # a thousandth of a request/s)
        assert run.total_rate() <= SNAPSHOT_LIMIT + 0.02


def test_a_throttling_answer_slows_the_worker_down_and_it_recovers_to_its_share() -> None:
    # Given a worker alone at the whole quota
    clock = Clock()
    run = Import(clock, planned=1)
    worker = run.join("000000")
    for _ in range(3):
        clock.now += 2
        run.renew("000000")
    full = worker.rate
    # When EBS throttles it, several answers of requests in flight at once
    for _ in range(5):
        worker.throttled()
    # Then it halves its rate once, not five times
    assert abs(worker.rate - full / 2) < 0.01
    # And once the throttling stops it grows back to its share within about ten seconds
    for _ in range(6):
        clock.now += 2
        run.renew("000000")
    assert abs(worker.rate - full) < 0.01
    assert worker.throttles == 5


def test_imports_in_one_account_share_its_quota_by_their_running_workers() -> None:
    # Given an account quota of 950/s and two imports: one with 3 workers, one with 1
    clock = Clock()
    limits = Limits(snapshot=SNAPSHOT_LIMIT, account=950.0)
    account: dict[str, dict[str, float | int]] = {}
    first, second = Import(clock, "first", limits, planned=3), Import(clock, "second", limits, planned=1)
    for index in range(3):
        first.join(f"{index:06d}", account)
    second.join("000000", account)
    # When every worker renews a few times
    for _ in range(5):
        clock.now += 2
        for run in (first, second):
            for holder in run.workers:
                run.renew(holder, account)
    # Then the account's quota is shared by the four workers equally, and used in full
    rates = [worker.rate for run in (first, second) for worker in run.workers.values()]
    assert all(abs(rate - 950.0 / 4) < 0.5 for rate in rates)
    assert sum(rates) <= 950.0 + 0.1


def test_leases_that_expired_stop_counting() -> None:
    # Given a lease its holder stopped renewing long ago, and a live one
    leases = {"dead": Lease(rate=500, expires_at=10, since=0, renewed_at=4), "live": Lease(100, 100, 1, 0, 50)}
    # Then a third holder shares with the live one only
    share = share_of(900, "me", 1, leases, now=60, since=55)
    assert share.holders == 2
    assert share.fair == 450
    assert share.usable == 450


def test_requests_are_spaced_at_the_rate_and_wait_while_it_is_zero() -> None:
    # Given a worker that has not yet heard from its first renewal
    clock = Clock()
    worker = WriteRate(clock, holder="a", import_id="job", limits=LIMITS, planned_workers=1)
    assert worker.wait_seconds() is None
    # When its renewal answers that it is alone
    worker.worker_lease(worker.claim())
    worker.renewed({"a": Lease(950, clock.now + 6, 1, clock.now, clock.now)}, None)
    # Then ten requests asked at once are spaced 1/950 s apart
    waits = [worker.wait_seconds() or 0.0 for _ in range(10)]
    assert waits[0] == 0
    assert all(abs(later - earlier - 1 / 950) < 1e-9 for earlier, later in itertools.pairwise(waits))


def test_a_worker_given_a_tiny_rate_does_not_keep_its_writers_asleep_once_the_rate_grows() -> None:
    # Given a newcomer to an import whose other worker claims all but half a request/s of the quota
    clock = Clock()
    worker = WriteRate(clock, holder="a", import_id="job", limits=LIMITS, planned_workers=1)
    other = Lease(rate=SNAPSHOT_LIMIT - 0.5, expires_at=clock.now + 6, since=clock.now - 10, renewed_at=clock.now - 1)
    worker.renewed({"a": worker.worker_lease(worker.claim()), "b": other}, None)
    assert abs(worker.rate - 0.5) < 1e-9
    # When its 32 writer threads ask for a slot at that rate
    waits = [worker.wait_seconds() for _ in range(32)]
    # Then one may go now and the others are told to ask again, rather than booked minutes ahead
    assert waits[0] == 0
    assert all(wait is None for wait in waits[1:])
    # And once the other worker has finished and the rate has grown, the next request goes at once
    clock.now += 0.5
    worker.renewed({"a": worker.worker_lease(worker.claim())}, None)
    assert worker.rate > 100
    wait = worker.wait_seconds()
    assert wait is not None and wait <= 1 / worker.rate


@settings(max_examples=100, deadline=None)
@given(rates=st.lists(st.floats(0.01, 2000), min_size=1, max_size=8), asks=st.integers(1, 64))
def test_no_writer_is_ever_booked_more_than_a_second_ahead(rates: list[float], asks: int) -> None:
    # Given a worker whose rate changes from renewal to renewal, as the others come and go
    clock = Clock()
    worker = WriteRate(clock, holder="a", import_id="job", limits=Limits(2000, 10_000), planned_workers=1)
    for rate in rates:
        others = Lease(rate=2000 - rate, expires_at=clock.now + 6, since=clock.now - 10, renewed_at=clock.now - 1)
        worker.renewed({"a": worker.worker_lease(worker.claim()), "b": others}, None)
        # When its writers ask for slots
        waits = [worker.wait_seconds() for _ in range(asks)]
        # Then none waits longer than RESERVATION_SECONDS, and the booked ones are spaced at the rate
        booked = [wait for wait in waits if wait is not None]
        assert all(wait <= RESERVATION_SECONDS for wait in booked)
        assert all(later - earlier >= 1 / worker.rate - 1e-9 for earlier, later in itertools.pairwise(booked))
        clock.now += 0.3


def end_times(*, late_start_credit: bool) -> list[float]:
    """When each of 16 workers of 512 blocks ends, started by the Map 20 ms apart and each sending at its rate,
    renewing every 2 s (0.5 s while ramping) as convert.py does."""
    clock = Clock()
    run = Import(clock)
    planned_at = clock.now
    left: dict[str, float] = {}
    next_renewal: dict[str, float] = {}
    ended: list[float] = []
    step = 0.005
    starts = [planned_at + 0.25 + 0.02 * index for index in range(16)]
    while len(ended) < 16:
        clock.now += step
        for index, start in enumerate(starts):
            holder = f"{index:06d}"
            if start <= clock.now and holder not in next_renewal:
                run.join(holder, blocks=512 if late_start_credit else None, planned_at=planned_at)
                left[holder] = 512
                next_renewal[holder] = clock.now + run.workers[holder].seconds_to_next_renewal(2.0)
        for holder in list(left):
            left[holder] -= run.workers[holder].rate * step
            if left[holder] <= 0:
                del left[holder]
                run.leave(holder)
                ended.append(clock.now)
            elif clock.now >= next_renewal[holder]:
                run.renew(holder)
                next_renewal[holder] = clock.now + run.workers[holder].seconds_to_next_renewal(2.0)
    return ended


def test_workers_the_map_started_a_little_apart_end_together_with_their_late_start_credit() -> None:
    # Given 16 equal chunks whose workers start 20 ms apart (300 ms from the first to the last)
    # When each worker's weight is its chunk's blocks and its credit for starting late
    credited = end_times(late_start_credit=True)
    # Then they end within 100 ms of one another, where equal shares end them as far apart as they started
    equal = end_times(late_start_credit=False)
    assert max(equal) - min(equal) > 0.25
    assert max(credited) - min(credited) < 0.1
    # and the last ends sooner
    assert max(credited) < max(equal)


def test_a_late_start_credit_is_the_blocks_one_worker_sends_meanwhile_up_to_two_seconds() -> None:
    clock = Clock()
    planned_at = clock.now
    clock.now += 0.5
    late = WriteRate(
        clock, holder="a", import_id="job", limits=LIMITS, planned_workers=16, blocks=1000, planned_at=planned_at
    )
    assert late.worker_lease(late.claim()).weight == 1000 + round(SNAPSHOT_LIMIT / 16 * 0.5)
    clock.now += 60
    later = WriteRate(
        clock, holder="b", import_id="job", limits=LIMITS, planned_workers=16, blocks=1000, planned_at=planned_at
    )
    assert later.worker_lease(later.claim()).weight == 1000 + round(SNAPSHOT_LIMIT / 16 * LATE_START_CREDIT_SECONDS)
