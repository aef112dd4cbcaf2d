"""Errors out of ``trio.run``: trio's nurseries wrap what their tasks raise in exception
groups, and a command wants the one error that says what went wrong."""

from __future__ import annotations

from collections.abc import Callable


def first_error(kinds: type[BaseException] | tuple[type[BaseException], ...],
                run: Callable[[], object]) -> BaseException | None:  # fmt: skip
    """Run ``run``; the first error of ``kinds`` it raised (perhaps inside exception
    groups), None if it raised none; any other error propagates."""
    found: list[BaseException] = []
    try:
        run()
    except* kinds as group:
        found.extend(_leaves(group))
    return found[0] if found else None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]
