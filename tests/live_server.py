"""A real uvicorn server on a free localhost port in a background thread, for tests that need real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store.sql import Store


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(app: Any, port: int) -> Iterator[None]:
    """Serve an ASGI app on 127.0.0.1:port until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def smart_server(store: Store, data_dir: Path) -> Iterator[str]:
    """The FHIR server requiring SMART tokens, served on a free port; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(Settings(base_url=base, data_dir=data_dir, allow_anonymous=False), store=store)
    with serving(app, port):
        yield base
