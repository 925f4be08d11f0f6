"""Fixtures for the shared library's tests."""

import pytest
from common.testing import free_port


@pytest.fixture
def unused_tcp_port() -> int:
    """A local port nothing listens on (a database server that is down)."""
    return free_port()
