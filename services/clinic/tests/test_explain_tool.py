"""tools/explain.py keeps working as the code changes: on a small seed, it explains every case
from the statements the service really sends (docs/clinic.md's plans come from it)."""

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).parents[1] / "tools" / "explain.py"
CASES = 24


def test_explain_tool_explains_every_case(postgres_url: str) -> None:
    arguments = [postgres_url, "--patients", "300", "--events", "3000", "--runs", "6"]
    done = subprocess.run(
        [sys.executable, str(TOOL), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert report.count("\n#### ") == CASES
    # Every case ran its statements and explained them with their values.
    assert report.count("Execution Time:") >= CASES
    assert "Parameters: $1 = 'patient'" in report  # the trail's filters, bound as the API binds
    # The audited writes are one statement with their event (a data-modifying CTE) ...
    assert report.count("INSERT INTO bench.audit_event") >= 3
    # ... and the refused delete is shown with the foreign key that refuses it (a 409).
    assert 'violates foreign key constraint "consultation_patient_id_fkey"' in report
    # Seeded as asked: the data section reports the audit trail and its indexes.
    assert "| audit_event | 3,000 |" in report
    assert "`ix_audit_event_resource_ids`" in report
