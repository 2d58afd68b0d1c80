"""The app in this process, for `ptcli plugins check` and tests: an httpx client over ASGI, the
app's lifespan running, by default once its models have loaded (or failed to)."""

from __future__ import annotations

import asyncio
import contextlib


@contextlib.asynccontextmanager
async def in_process(app, *, wait_s: float = 30.0, base_url: str = "http://ptcli"):
    """A client of ``app``; it waits up to ``wait_s`` for the model to load (0: not at all)."""
    import httpx

    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
            state = app.state.ptcli
            for _ in range(int(wait_s * 100)):
                if state.servable is not None or state.load_error is not None:
                    break
                await asyncio.sleep(0.01)
            yield client
