"""Shared pytest setup: integration tests need root and the system tools; unit tests nothing."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow_ok = os.environ.get("IGNITE_SLOW_TESTS") == "1"
    for item in items:
        if "slow" in item.keywords and not slow_ok:
            item.add_marker(pytest.mark.skip(reason="slow test: set IGNITE_SLOW_TESTS=1"))
