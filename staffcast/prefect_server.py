"""The local Prefect API a run records its state in, when no Prefect server is configured.

Prefect starts a temporary server by itself when ``PREFECT_API_URL`` is unset, but it waits
at most 20 s for it (a fresh Prefect home on a busy 2-core machine takes about 12 s), and a
run killed by a signal leaves that server running with no parent. staffcast starts the same
server itself instead: it waits as long as ``STAFFCAST_PREFECT_SERVER_STARTUP_SECONDS``, picks
another port when one is taken, tells the kernel to stop the server when staffcast dies (even
by SIGKILL: ``PR_SET_PDEATHSIG`` on Linux), stops it on every exit path, and says in one
paragraph what to do when it cannot start. Its log is ``prefect-server.log`` in the Prefect
home.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from staffcast.die_with_parent import die_with_parent
from staffcast.errors import StaffcastError

__all__ = ["OrchestrationUnavailable", "LocalPrefectServer", "local_prefect_api"]

_PORT_IN_USE = 3  # uvicorn's exit status when the port is taken


class OrchestrationUnavailable(StaffcastError):
    """The Prefect API the run records its state in cannot be started or reached."""


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPrefectServer:
    """A Prefect API server in a child process of this one, on 127.0.0.1."""

    def __init__(self, home: Path, startup_seconds: float) -> None:
        self.home = home
        self.startup_seconds = startup_seconds
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "prefect-server.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen[bytes]:
        import prefect
        from prefect.settings import get_current_settings

        self.port = _free_port()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        env.pop("PREFECT_API_URL", None)
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(Path(prefect.__file__).parent.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                # Its own session: a signal to staffcast's process group (Ctrl-C, a scheduler
                # stopping the group) does not stop it under the run, which still records
                # its state there; staffcast stops it last, and the kernel if staffcast dies.
                start_new_session=True,
            )

    def start(self) -> None:
        """Start the server and wait (up to ``startup_seconds``) until it answers."""
        import httpx

        deadline = time.monotonic() + self.startup_seconds
        self.process = self._spawn()
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                status = self.process.poll()
                if status == _PORT_IN_USE:
                    self.process = self._spawn()
                    continue
                if status is not None:
                    break
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise OrchestrationUnavailable(self._why())

    def _why(self) -> str:
        try:
            lines = [
                line for line in self.log_path.read_text(errors="replace").splitlines() if line
            ]
        except OSError:
            lines = []
        said = f" Its log ends: {lines[-1][:300]!r}." if lines else ""
        return (
            f"The local Prefect server, which records the run's state and logs, did not start "
            f"within {self.startup_seconds:g} s (log: {self.log_path}).{said} Nothing was run. "
            "Run again (the first start in a new Prefect home migrates its database and is the "
            "slowest), raise STAFFCAST_PREFECT_SERVER_STARTUP_SECONDS, or point PREFECT_API_URL "
            "at a running Prefect server (`prefect server start`)."
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _process_settings(**values: str) -> Iterator[None]:
    """Prefect settings for the whole process, every thread included (Prefect's background
    workers and staffcast's heartbeat run outside the context that ``temporary_settings``
    sets, and would start a temporary server of their own), and for its child processes."""
    from prefect.context import refresh_global_settings_context

    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    refresh_global_settings_context()
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refresh_global_settings_context()


@contextlib.contextmanager
def local_prefect_api(home: Path, startup_seconds: float) -> Iterator[str]:
    """The Prefect API URL to use: the configured one, or a local server's for the block's
    duration (stopped on every exit path, signals included)."""
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        yield configured
        return
    server = LocalPrefectServer(home, startup_seconds)
    try:
        server.start()
        with _process_settings(PREFECT_API_URL=server.api_url):
            try:
                yield server.api_url
            finally:
                _drain_to_api()
    finally:
        server.stop()


def _drain_to_api(timeout: float = 5.0) -> None:
    """Send the logs and events still queued to the server before it stops (else Prefect
    complains at exit, after staffcast's last line, that it could not reach it)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)
