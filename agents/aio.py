"""Small asyncio helpers shared by the processes' event loops."""

from __future__ import annotations

import asyncio
from typing import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Future | None]) -> None:
    """Cancel every task, then wait for each to finish (whatever it raised on the way out)."""
    tasks = [t for t in tasks if t is not None]
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):
            pass
