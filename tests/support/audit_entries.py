"""Random audit trails for the audit index's contract and the search-equality test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from domain.audit import GENESIS, AuditEntry, ChainedEntry, chain

T0 = datetime(2025, 1, 30, tzinfo=UTC)  # trails straddle January and February: two partitions
ACTORS = ["admin", "system", "user:alice", "user:o'brien", "key:mlk-ab12…", "anonymous", "user:=1+2"]
ACTIONS = ["KeyIssued", "KeyRevoked", "AdminActionPerformed", "AuthFailed", "BudgetSet"]
TARGETS = ["", "key:1", "key:2", "user:alice", "user:new\nline", "team:red", "model:m'a"]
TEXTS = st.text(st.characters(codec="utf-8", exclude_characters="\ud800"), max_size=12)


def random_entries(max_size: int = 40) -> st.SearchStrategy[list[AuditEntry]]:
    """Entries over a week around a month's end, with awkward actors, targets and details;
    times are not in seq order (access events arrive late), as in a real trail."""
    entry = st.builds(
        AuditEntry,
        time=st.integers(0, 7 * 86_400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us)),
        actor=st.sampled_from(ACTORS), action=st.sampled_from(ACTIONS), target=st.sampled_from(TARGETS),
        details=st.dictionaries(st.sampled_from(["reason", "count", "ok", "n.x", "none"]),
                                TEXTS | st.integers(-(2**53 - 1), 2**53 - 1) | st.booleans() | st.none(),
                                max_size=3),
        source_ip=st.none() | st.sampled_from(["10.0.0.1", "2001:db8::1"]),
        request_id=st.none() | st.sampled_from(["req-1", "r'2"]))
    return st.lists(entry, max_size=max_size)


def chained(entries: list[AuditEntry]) -> list[ChainedEntry]:
    return chain(GENESIS, entries)
