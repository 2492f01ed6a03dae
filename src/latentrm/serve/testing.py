"""Run the reward server in a background thread on 127.0.0.1 (for tests and notebooks).

    with ServerThread(create_app(config, scorer=rm)) as server:
        httpx.post(server.url + "/score", json=...)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from latentrm.errors import LatentrmError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A real uvicorn server on 127.0.0.1:<free port>; `stop()` shuts it down gracefully (drains)."""

    def __init__(self, app: Any, *, port: int | None = None, graceful_timeout: int = 10,
                 ready_timeout: float = 60.0, wait_ready: bool = True) -> None:
        import uvicorn

        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.url = f"http://{self.host}:{self.port}"
        self.ready_timeout, self.wait_ready = ready_timeout, wait_ready
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=graceful_timeout)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self) -> ServerThread:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + self.ready_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LatentrmError(f"the test server on port {self.port} did not start")
            time.sleep(0.02)
        while self.wait_ready:
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LatentrmError(f"the test server on port {self.port} never became ready")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
