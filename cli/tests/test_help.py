"""``--help`` on every command and group shows the help and does nothing else."""

import subprocess
import sys
from pathlib import Path

import pytest

DENTIAPRO = Path(sys.executable).parent / "dentiapro"
COMMANDS = [
    [],
    ["migrate"],
    ["tenants"],
    ["tenants", "list"],
    ["tenants", "create"],
    ["invite"],
    ["keys"],
    ["keys", "rotate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "dentiapro")
def test_help_runs_nothing(command: list[str], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [str(DENTIAPRO), *command, "--help"],
        # Databases no command could open, were it to try: only the help may come out.
        env={"DENTIAPRO_DATA_DIR": str(data_dir), "JWT_PRIVATE_KEY_FILE": str(tmp_path / "k")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Usage: {' '.join(['dentiapro', *command])} [OPTIONS]" in done.stdout
    assert not data_dir.exists()
    assert not (tmp_path / "k").exists()


def test_each_group_without_a_command_shows_its_commands() -> None:
    done = subprocess.run(
        [str(DENTIAPRO), "tenants"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2  # a usage error, as Click has it
    assert "list" in done.stdout + done.stderr
    assert "create" in done.stdout + done.stderr
