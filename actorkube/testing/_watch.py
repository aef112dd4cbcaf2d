"""Validators for etcd's watch guarantees, one per guarantee, over what one watcher
received (a list of ``WatchResponse``) and, where needed, the true history of events.

Each returns a list of violations (empty: the guarantee held), worded for a test report.
The guarantees are etcd's (api_guarantees): ordered, unique, atomic, reliable,
resumable, bookmarkable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _events(responses: Sequence[Any]) -> list[tuple[int, Any]]:
    """(response number, event) for every event, in the order received."""
    return [(n, e) for n, r in enumerate(responses) for e in r.events]


def _id(event: Any) -> tuple[int, bytes, int]:
    return (event.kv.mod_revision, event.kv.key, int(event.type))


def check_ordered(responses: Sequence[Any]) -> list[str]:
    """Events arrive in revision order, within a response and across responses."""
    problems = []
    last = 0
    for n, event in _events(responses):
        rev = event.kv.mod_revision
        if rev < last:
            problems.append(f"response {n}: revision {rev} after revision {last}")
        last = max(last, rev)
    return problems


def check_unique(responses: Sequence[Any]) -> list[str]:
    """No event arrives twice."""
    seen: set[tuple[int, bytes, int]] = set()
    problems = []
    for n, event in _events(responses):
        key = _id(event)
        if key in seen:
            problems.append(f"response {n}: {key} delivered again")
        seen.add(key)
    return problems


def check_atomic(responses: Sequence[Any]) -> list[str]:
    """All the events of one revision arrive in one response."""
    home: dict[int, int] = {}
    problems = []
    for n, event in _events(responses):
        rev = event.kv.mod_revision
        if home.setdefault(rev, n) != n:
            problems.append(f"revision {rev} split over responses {home[rev]} and {n}")
    return problems


def check_bookmarkable(responses: Sequence[Any]) -> list[str]:
    """A progress notification (a response without events) at revision R promises that
    every event up to R was delivered before it: none at or below R may follow."""
    problems = []
    bookmark = 0
    for n, r in enumerate(responses):
        if r.canceled or getattr(r, "created", False):
            continue
        if not r.events:
            bookmark = max(bookmark, r.header.revision)
            continue
        for event in r.events:
            if event.kv.mod_revision <= bookmark:
                problems.append(
                    f"response {n}: revision {event.kv.mod_revision} after a progress "
                    f"notification at {bookmark}"
                )
    return problems


def check_reliable(
    responses: Sequence[Any], truth: Sequence[Any], start_revision: int
) -> list[str]:
    """No event is missing: from ``start_revision`` up to the last revision the watcher
    heard of (through an event or a progress notification), it received exactly the
    events of ``truth`` (the true history of the watched keys, in order)."""
    heard = 0
    for r in responses:
        if r.events:
            heard = max(heard, max(e.kv.mod_revision for e in r.events))
        elif not r.canceled and not getattr(r, "created", False):
            heard = max(heard, r.header.revision)
    expected = [_id(e) for e in truth if start_revision <= e.kv.mod_revision <= heard]
    got = [_id(e) for _, e in _events(responses) if e.kv.mod_revision >= start_revision]
    if got == expected:
        return []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    return [f"up to revision {heard}: missing {missing[:5]}, unexpected {extra[:5]}"]


def check_resumed(first: Sequence[Any], resumed: Sequence[Any], resume_revision: int) -> list[str]:
    """A watch resumed from ``resume_revision`` (the revision after the last event the
    first one delivered) neither repeats nor skips: together they deliver each event
    once (check the union with ``check_reliable``)."""
    before = {_id(e) for _, e in _events(first)}
    again = [_id(e) for _, e in _events(resumed) if _id(e) in before]
    early = [e.kv.mod_revision for _, e in _events(resumed) if e.kv.mod_revision < resume_revision]
    problems = []
    if again:
        problems.append(f"resumed watch repeated {again[:5]}")
    if early:
        problems.append(f"resumed watch delivered revisions before {resume_revision}: {early[:5]}")
    return problems


def check_watch(responses: Sequence[Any], truth: Sequence[Any], start_revision: int) -> list[str]:
    """Every guarantee that one stream of responses can show."""
    return (
        check_ordered(responses)
        + check_unique(responses)
        + check_atomic(responses)
        + check_bookmarkable(responses)
        + check_reliable(responses, truth, start_revision)
    )
