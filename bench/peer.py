"""The Django REST Framework peer (``../shared/peers/drf/``): set up, started, seeded, stopped.

Issue 13's targets are ratios to this peer measured in the same run, on the same PostgreSQL,
with the same wrk harness. Everything goes through the peer's own documented entry points:
``setup.sh`` (venv, role, database, migrations, tenants; idempotent) and ``run.sh PORT``
(gunicorn in the foreground: a master and 5 sync workers), configured by their environment
variables only, so the peer's folder is never written to:

- ``PEER_VENV``: the venv in the user's cache (setup.sh's own fallback for a read-only folder;
  as root every folder looks writable to ``[ -w ]``, so it is passed explicitly);
- ``PYTHONPYCACHEPREFIX``: bytecode beside that venv, not in ``__pycache__`` folders of the peer;
- ``PEER_DB_NAME``: a fresh database per bench (``bench_peer_<suffix>``), dropped at the end
  like DentiaPro's, so each run starts from the same empty state and runs never collide;
- ``PEER_CONN_MAX_AGE=3600``: the peer's persistent connections (60 s by default) are not
  replaced during the runs: a backend that closes takes its CPU out of sight of the
  per-backend measurement. Reconnecting once a minute cost the peer next to nothing; keeping
  the connections only makes it cheaper, never dearer.

The peer's tenancy is by Host: ``127.0.0.1`` (any port) is its default clinic tenant, so wrk
against ``http://127.0.0.1:PORT`` exercises its per-request tenant resolution.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import measure
import seed

DB_USER = "dentia_peer"  # setup.sh's default role (PEER_DB_USER)
CONN_MAX_AGE_SECONDS = 3600
STOP_GRACE = 10.0
# gunicorn: 5 sync workers by default (PEER_WORKERS); what the JSON records of the peer.
WORKERS = 5

_LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


class PeerError(RuntimeError):
    """The peer could not be set up or started (the message carries the tail of its log)."""


def missing(directory: Path) -> str | None:
    """Why ``directory`` is not the DRF peer, or None when it is."""
    needed = [name for name in ("setup.sh", "run.sh") if not (directory / name).is_file()]
    if not needed:
        return None
    return (
        f"the DRF peer is not at {directory} (no {', '.join(needed)}): pass --peer-dir DIR "
        "(BENCH_PEER_DIR), or --no-peer to measure DentiaPro alone (issue 13's ratio targets "
        "are then not evaluated)"
    )


def cache_dir() -> Path:
    """Where the peer's venv and bytecode live: setup.sh's fallback for a read-only folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dentiapro-drf-peer"


def _die_with_parent() -> None:
    # Between fork and exec: the master is SIGKILLed should the bench die without cleaning up
    # (its workers exit by themselves when their master is gone).
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Peer:
    """One set-up peer on its own database; ``running()`` starts and stops its gunicorn."""

    def __init__(
        self, *, directory: Path, database: str, host: str, port: int, log_dir: Path
    ) -> None:
        self.directory = directory
        self.database = database
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        cache = cache_dir()
        environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        self.env = {
            **environment,
            "PEER_VENV": os.environ.get("PEER_VENV", str(cache / ".venv")),
            "PYTHONPYCACHEPREFIX": str(cache / "pycache"),
            "PEER_DB_NAME": database,
            "PEER_DB_HOST": host,
            "PEER_DB_PORT": str(port),
            "PEER_CONN_MAX_AGE": str(CONN_MAX_AGE_SECONDS),
        }

    def settings(self) -> dict[str, Any]:
        """What the results record of the peer."""
        return {
            "directory": str(self.directory),
            "database": self.database,
            "venv": self.env["PEER_VENV"],
            "workers": int(self.env.get("PEER_WORKERS", WORKERS)),
            "conn_max_age_s": CONN_MAX_AGE_SECONDS,
        }

    def _log(self, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / name

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / name
        if not path.exists():
            return f"[no {name}]"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def setup(self, timeout: float = 900.0) -> None:
        """Run setup.sh (installs the venv from PyPI the first time; then seconds)."""
        log = self._log("setup.log")
        with log.open("ab") as output:
            completed = subprocess.run(
                [str(self.directory / "setup.sh")],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if completed.returncode != 0:
            raise PeerError(
                f"the peer's setup.sh exited {completed.returncode}\n{self.log_tail('setup.log')}"
            )

    @contextmanager
    def running(self, port: int, timeout: float = 60.0) -> Iterator["Peer"]:
        """gunicorn on ``port`` until the block ends; then no process of it is left."""
        log = self._log("gunicorn.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [str(self.directory / "run.sh"), str(port)],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the master and workers stop together
                preexec_fn=_die_with_parent if _LIBC is not None else None,
            )
            self.url = f"http://127.0.0.1:{port}"
            self._wait_until_healthy(timeout)
            yield self
        finally:
            self.stop()
            log.close()

    def _wait_until_healthy(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerError(
                    f"the peer's run.sh exited {self.process.returncode}\n"
                    + self.log_tail("gunicorn.log")
                )
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise PeerError(f"the peer not healthy after {timeout:g}s\n{self.log_tail('gunicorn.log')}")

    def stop(self) -> None:
        """SIGTERM the peer's process group, SIGKILL it if it is still there after a grace."""
        process, self.process = self.process, None
        if process is None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE)
        # The workers may outlive a master that was killed: the whole group goes, always.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise PeerError("the peer is not running")
        return self.process.pid

    def cpu(self) -> dict[str, float]:
        """CPU seconds of gunicorn: the master and every worker, exited ones included."""
        return {"gunicorn": measure.tree_cpu(self.pid)}

    def rss(self) -> dict[str, float]:
        """Resident MiB of the master and its workers together."""
        return {"gunicorn": measure.tree_rss_mb(self.pid)}

    async def token(self, client: httpx.AsyncClient, username: str, password: str) -> str:
        """A fresh access token (the peer's last 30 minutes; one login before each mix)."""
        return await seed.login(client, self.url, username, password)

    async def register(self, client: httpx.AsyncClient, username: str, password: str) -> None:
        """The peer's one user (the peer has no invitations: it registers)."""
        response = await client.post(
            f"{self.url}/api/auth/register/",
            json={"username": username, "password": password, "email": f"{username}@example.com"},
        )
        if response.status_code != 201:
            raise seed.SeedFailed(
                f"the peer's POST /api/auth/register/ answered {response.status_code}: "
                f"{response.text[:300]}"
            )
