"""The account's item of import leases, in the WriterLeases table the template declares."""

from __future__ import annotations

from typing import Any

from diskport.stores.write_leases import AccountLeaseTable, Lease


def test_imports_see_each_others_leases_and_expired_ones_are_cleared(stack: Any) -> None:
    # Given the account's leases table, empty
    leases = AccountLeaseTable(table=stack.table("WriterLeasesTable"))
    # When two imports announce themselves
    first = leases.renew("job-1", Lease(rate=400, expires_at=100, weight=3, since=90, renewed_at=94), now=94)
    both = leases.renew("job-2", Lease(rate=200, expires_at=106, weight=1, since=100, renewed_at=100), now=100)
    # Then the first saw itself alone, and the second sees both, with their workers and claims
    assert set(first) == {"job-1"}
    assert both["job-1"] == Lease(rate=400, expires_at=100, weight=3, since=90, renewed_at=94)
    assert both["job-2"].weight == 1
    # And the next renewal drops the lease that had expired by the time the last answer came
    later = leases.renew("job-2", Lease(rate=200, expires_at=112, weight=1, since=100, renewed_at=106), now=106)
    assert set(later) == {"job-2"}
    # And an import's last worker takes its lease away
    assert leases.renew("job-2", None, now=107) == {}
