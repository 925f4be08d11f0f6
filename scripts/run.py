"""``make run``: the whole system on this machine, on SQLite under ./var, until Ctrl-C.

Ports, data directory and database URLs come from the environment (DESIGN.md section 8).
The processes' logs go to this console, each line prefixed with the process name.
The platform superuser is DENTIAPRO_ADMIN_USERNAME / DENTIAPRO_ADMIN_PASSWORD when set;
otherwise ``admin`` with a password generated on the first run and kept, readable by you only,
in ``<data dir>/admin-password`` (a second run reuses it, and the data).
"""

import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from system import Ports, StartupError, System

DEFAULT_ADMIN = "admin"


def admin_credentials(data_dir: Path) -> tuple[str, str, Path | None]:
    """Username, password, and the file the password was kept in (None if from the env)."""
    username = os.environ.get("DENTIAPRO_ADMIN_USERNAME") or DEFAULT_ADMIN
    password = os.environ.get("DENTIAPRO_ADMIN_PASSWORD")
    if password:
        return username, password, None
    path = data_dir / "admin-password"
    if path.exists():
        return username, path.read_text().strip(), path
    password = secrets.token_urlsafe(18)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Created with mode 0600 from the start: the password is never world-readable.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    return username, password, path


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    data_dir = Path(os.environ.get("DENTIAPRO_DATA_DIR", "./var")).resolve()
    username, password, password_file = admin_credentials(data_dir)
    system = System(
        ports=Ports.from_env(),
        data_dir=data_dir,
        env={"DENTIAPRO_ADMIN_USERNAME": username, "DENTIAPRO_ADMIN_PASSWORD": password},
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C stops everything, even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"Starting DentiaPro (data in {data_dir}) ...", flush=True)
    try:
        system.start(timeout=90)
        kept = f"  (kept in {password_file})" if password_file else ""
        print(
            "\n"
            f"DentiaPro is up: {system.gateway_url}/  (health: {system.gateway_url}/health/)\n"
            f"Superuser: {username} / {password}{kept}\n"
            f"  curl -s -X POST {system.gateway_url}/api/auth/login/ "
            "-H 'Content-Type: application/json' "
            f"""-d '{{"username": "{username}", "password": "<password>"}}'\n"""
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for name, process in system:
                if process.poll() is not None:
                    print(f"{name} exited with status {process.returncode}; stopping.")
                    return 1
            time.sleep(1.0)
    except StartupError as exc:
        print(f"DentiaPro did not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C (or uv forwarding the terminal's SIGINT) must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        system.stop()


if __name__ == "__main__":
    sys.exit(main())
