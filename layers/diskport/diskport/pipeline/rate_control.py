"""How fast a convert worker may send PutSnapshotBlock requests: its share of the quotas, among who actually runs.

EBS accepts 1,000 PutSnapshotBlock requests per second per snapshot and, by default, 1,000 per account. The
workers of one import share the first; every import running in the account shares the second. Workers announce
themselves with leases (see `write_leases`): a lease names its holder, how many writers it stands for (one for a
worker; its running workers for an import in the account's view) and the rate the holder claims until it renews.

The rule that keeps the sum of the claims inside a limit while the set of holders changes:

- a holder's fair share is `limit * weight / total weight` of the live leases, itself included;
- it uses at most its fair share and at most what the others leave free (`limit - their claims`);
- a lower rate is used at once; a higher one is claimed first (the renewal that publishes it returns the others'
  claims, in the order the store applied the writes) and used only as far as the others leave room for it.

So a worker joining a full import starts slowly, the others give up their surplus at their next renewal, and the
last workers of an import take over the whole quota as the others finish. Leases the store keeps longer than
their holder (a worker that died) expire after `lease_seconds` and stop counting.

Throttling answers (the quota was exceeded anyway: another writer in the account, clock skew, a burst) lower the
rate multiplicatively; it then recovers additively to the fair share. The import never fails for them.

Everything here is pure: time comes from the clock the caller passes, so the deployed worker and the bench's
discrete-event model of the pipeline run this same code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from diskport.stores.write_leases import Lease

# The share of an EBS quota the service plans to use: the margin absorbs requests EBS counts in one second and
# the workers in the next (a request's latency varies, so its arrival does). The rules below keep the workers'
# rates within the limit however they come and go; what arrivals add is measured in the projection: in its busiest
# one-second window, of any start, 974 requests at 97 % (954 at 95 %), with PutSnapshotBlock's latency drawn
# log-normally around 100 ms (bench/pipeline_model.py; docs/throughput.md). A throttling answer halves the
# worker's rate, so the margin is kept above what the arrivals need, not cut to it.
QUOTA_MARGIN = 0.97
# Leases store times to the millisecond.
_TIME_GRAIN = 0.001
# How far ahead a writer may reserve its next request's slot: a thread never sleeps longer on a rate it was given
# than this, so a rate that was tiny (a newcomer to a full import) and then grows is taken up within a second.
RESERVATION_SECONDS = 1.0
# A worker that starts up to this long after its import's plan was made is given, on top of its chunk's blocks, the
# blocks one worker sends in the time it started late: its share is that much larger, so workers the Map started
# together end together instead of a Lambda start apart, the quota half idle while the last ones finish.
LATE_START_CREDIT_SECONDS = 2.0


@dataclass(frozen=True)
class Share:
    """What one holder may use of a limit, given the live leases."""

    fair: float
    usable: float
    holders: int
    weight: int


def share_of(limit: float, holder: str, weight: int, leases: Mapping[str, Lease], now: float, since: float) -> Share:
    """The holder's fair share of `limit` and the part of it the other live leases leave free.

    Another holder uses at most its claim, and at most its fair share among the holders its own renewal answered
    (those that had announced themselves by then): a claim made while it saw fewer holders does not lock the
    newcomers out until it renews again.
    """
    others = {name: lease for name, lease in leases.items() if name != holder and lease.expires_at > now}
    total_weight = weight + sum(lease.weight for lease in others.values())
    fair = limit * weight / total_weight if total_weight > 0 else limit
    announced = [(since, weight), *((lease.since, lease.weight) for lease in others.values())]
    used_by_others = 0.0
    for lease in others.values():
        # Announced before its renewal by more than the leases' rounding (a millisecond): a tie counts as unseen.
        seen_weight = sum(
            held_weight for held_since, held_weight in announced if held_since + _TIME_GRAIN < lease.renewed_at
        )
        used_by_others += min(lease.rate, limit * lease.weight / max(lease.weight, seen_weight))
    free = max(0.0, limit - used_by_others)
    return Share(fair=fair, usable=min(fair, free), holders=len(others) + 1, weight=total_weight)


class Aimd:
    """A factor in (floor, 1] on the fair share: halved on a throttling answer, then grown back additively."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        decrease: float = 0.5,
        recovery_per_second: float = 0.1,
        floor: float = 0.05,
        hold_seconds: float = 1.0,
    ) -> None:
        self._clock = clock
        self._decrease = decrease
        self._recovery = recovery_per_second
        self._floor = floor
        self._hold = hold_seconds
        self._factor = 1.0
        self._since = clock()
        self._import_first = clock()
        self._import_lease_expires = clock()
        self._last_decrease = float("-inf")

    def factor(self) -> float:
        now = self._clock()
        self._factor = min(1.0, self._factor + self._recovery * max(0.0, now - self._since))
        self._since = now
        return self._factor

    def throttled(self) -> None:
        """One throttling answer. Answers to requests already in flight (within `hold_seconds`) count once."""
        current = self.factor()
        now = self._clock()
        if now - self._last_decrease >= self._hold:
            self._factor = max(self._floor, current * self._decrease)
            self._last_decrease = now


@dataclass(frozen=True)
class Limits:
    """Requests/s the service may send, after its margin: to one snapshot, and from the whole account."""

    snapshot: float
    account: float


class WriteRate:
    """One convert worker's PutSnapshotBlock rate, and the pacing of its writer threads to it.

    `renewed` takes the leases the store answered to this worker's renewal (its import's workers, and the imports
    of the account); `claim` is the rate to publish at the next renewal; `wait_seconds` reserves the next request.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        holder: str,
        import_id: str,
        limits: Limits,
        planned_workers: int,
        lease_seconds: float = 6.0,
        blocks: int | None = None,
        planned_at: float | None = None,
    ) -> None:
        self._clock = clock
        self.holder = holder
        self.import_id = import_id
        self.limits = limits
        self.lease_seconds = lease_seconds
        self.aimd = Aimd(clock)
        self._lock = threading.Lock()
        # Until the first renewal answers, assume the plan's workers all run: a safe, slow start.
        self._fair = min(limits.snapshot, limits.account) / max(1, planned_workers)
        self._starting_rate = self._fair
        self._sent = 0
        self._claimed_at = clock()
        self._since = clock()
        self._import_first = clock()
        self._import_lease_expires = clock()
        self._rate = 0.0
        self._claimed = 0.0
        # The worker's weight among its import's workers, the same in every lease it publishes (`share_of` counts
        # on a holder's weight never growing): 1, or with `blocks` (its chunk's) those blocks and the late-start
        # credit for the time since `planned_at`, when Fetch made the plan.
        late = 0.0 if planned_at is None else min(LATE_START_CREDIT_SECONDS, max(0.0, clock() - planned_at))
        self._weight = 1 if blocks is None else max(1, blocks + round(self._starting_rate * late))
        self._room = 0.0
        self._import_workers = max(1, planned_workers)
        self._import_claim = limits.snapshot
        self._import_published = limits.snapshot
        self._last_slot = float("-inf")
        self._lease_expires = clock()
        self.throttles = 0

    @property
    def rate(self) -> float:
        """Requests/s this worker may send now: none once its lease has expired unrenewed, since the others no
        longer count it."""
        return self._rate if self._clock() < self._lease_expires else 0.0

    @property
    def import_workers(self) -> int:
        return self._import_workers

    def claim(self) -> float:
        """The rate this worker asks for at its next renewal: its fair share, less what throttling took, and no
        more than twice what it sent since the last claim (at least its starting share), so that a worker that
        cannot use its share (one function's network carries ~150 requests/s) leaves the rest to the others."""
        now = self._clock()
        with self._lock:
            elapsed = now - self._claimed_at
            used = self._sent / elapsed if elapsed > 0 else 0.0
            self._sent, self._claimed_at = 0, now
            ceiling = max(self._starting_rate, 2 * used)
        return min(self._fair, ceiling) * self.aimd.factor()

    def worker_lease(self, claim: float) -> Lease:
        """This worker's lease in its import, published with `claim`."""
        self._claimed = claim
        now = self._clock()
        if now >= self._lease_expires:
            # First announced, or again after the lease lapsed: the others count it as a newcomer.
            self._since = now
        self._lease_expires = now + self.lease_seconds
        return Lease(rate=claim, expires_at=self._lease_expires, weight=self._weight, since=self._since, renewed_at=now)

    def import_lease(self) -> Lease:
        """Its import's lease in the account: the import's running workers and the rate they claim together."""
        self._import_published = self._import_claim
        now = self._clock()
        if now >= self._import_lease_expires:
            self._import_first = now
        self._import_lease_expires = now + self.lease_seconds
        return Lease(
            rate=self._import_claim,
            expires_at=self._import_lease_expires,
            weight=self._import_workers,
            since=self._import_since(),
            renewed_at=now,
        )

    def _import_since(self, account_leases: Mapping[str, Lease] | None = None) -> float:
        """When this worker's import first announced itself in the account (as far as this worker knows)."""
        held = account_leases.get(self.import_id) if account_leases is not None else None
        if held is not None and held.expires_at > self._clock():
            # Another worker of the import may have announced it earlier.
            self._import_first = min(self._import_first, held.since)
        return self._import_first

    def renewed(self, import_leases: Mapping[str, Lease], account_leases: Mapping[str, Lease] | None) -> None:
        """Take the views the renewal answered: the rate to use now and the fair share to claim next time."""
        now = self._clock()
        live_workers = {name: lease for name, lease in import_leases.items() if lease.expires_at > now}
        workers = max(1, len(live_workers | {self.holder: Lease(0.0, now + 1)}))
        budget = self.limits.snapshot
        import_claim = self.limits.snapshot
        if account_leases is not None:
            # The import's part of the account's limit: by its workers' weight among all imports' workers, and no
            # more than the other imports' claims leave free nor than the import claimed.
            account = share_of(
                self.limits.account, self.import_id, workers, account_leases, now, self._import_since(account_leases)
            )
            import_claim = min(import_claim, account.fair)
            budget = min(budget, account.usable, self._import_published)
        within_import = share_of(budget, self.holder, self._weight, live_workers, now, self._since)
        with self._lock:
            self._import_workers = workers
            self._import_claim = import_claim
            self._fair = within_import.fair
            self._room = within_import.usable
            self._rate = min(within_import.usable, self._claimed)

    def seconds_to_next_renewal(self, every_seconds: float) -> float:
        """When to renew next: sooner while the last answer left room above this worker's claim, so that a
        worker starting alone (or left alone) doubles its rate every quarter interval rather than every interval."""
        with self._lock:
            ramping = self._claimed < 0.99 * self._fair and self._room > self._claimed
        return every_seconds / 4 if ramping else every_seconds

    def throttled(self) -> None:
        """EBS answered a throttling error: slow down now, recover later."""
        with self._lock:
            self.throttles += 1
        before = self.aimd.factor()
        self.aimd.throttled()
        with self._lock:
            if before > 0:
                self._rate *= self.aimd.factor() / before

    def wait_seconds(self) -> float | None:
        """Seconds until this worker's next request may go: one interval of its current rate after the last one
        reserved. None while its rate is zero, its lease has expired, or the slot lies more than
        `RESERVATION_SECONDS` ahead (the caller asks again a moment later, by when the rate may have grown)."""
        with self._lock:
            now = self._clock()
            if self._rate <= 0 or now >= self._lease_expires:
                return None
            slot = max(now, self._last_slot + 1.0 / self._rate)
            if slot - now > RESERVATION_SECONDS:
                return None
            self._last_slot = slot
            self._sent += 1
            return slot - now
