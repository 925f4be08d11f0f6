"""Settings every service reads the same way."""

from pathlib import Path

import pytest
from common.settings import ServiceSettings


def test_the_internal_token_comes_from_the_variable_or_the_file_it_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "internal-token"
    secret.write_text("from-the-file\n")  # as `kubectl create secret --from-file` keeps it
    monkeypatch.setenv("DENTIAPRO_INTERNAL_TOKEN_FILE", str(secret))

    from_file = ServiceSettings()
    monkeypatch.setenv("DENTIAPRO_INTERNAL_TOKEN", "from-the-variable")
    from_variable = ServiceSettings()

    assert from_file.internal_headers == {"X-Internal-Token": "from-the-file"}
    assert from_variable.internal_headers == {"X-Internal-Token": "from-the-variable"}
    assert "from-the" not in repr(from_file) + repr(from_variable)


def test_without_an_internal_token_no_header_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DENTIAPRO_INTERNAL_TOKEN", raising=False)
    monkeypatch.delenv("DENTIAPRO_INTERNAL_TOKEN_FILE", raising=False)

    assert ServiceSettings().internal_headers == {}
