"""Hot loops compiled with numba, built on first use.

numba's import and the load of a compiled function from its on-disk cache (__pycache__, `cache=True`) take about a
second; CLI commands that never tag text should not pay it at import. `lazy_njit(fn, signature)` returns a getter
that compiles (or loads) `fn` for the explicit `signature` once per process; the taggers call their getters when they
are constructed, so no petition pays it either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def lazy_njit(fn: Callable[..., Any], signature: str) -> Callable[[], Callable[..., Any]]:
    @functools.cache
    def compiled() -> Callable[..., Any]:
        import numba

        return numba.njit(signature, cache=True, nogil=True)(fn)  # type: ignore[no-any-return]

    return compiled
