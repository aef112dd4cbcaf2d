"""Exception groups from trio nurseries, handed back as the one error they carry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@contextlib.contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a group holding exactly one exception as that exception.

    A nursery wraps even a lone error in a group; a context manager that owns a nursery
    (ActorSystem, SimNetwork) should hand back the body's own exception, or the one
    failure of its tasks, as it was raised. Groups of several stay groups.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) != 1:
            raise
        leaf = leaves[0]
        # Raising it here would chain it to the group; keep the chain it had.
        cause, context, suppress = leaf.__cause__, leaf.__context__, leaf.__suppress_context__
        try:
            raise leaf
        finally:
            leaf.__cause__, leaf.__context__ = cause, context
            leaf.__suppress_context__ = suppress
