"""Fixtures of the ipc tests and the session-end check that no shared memory is left."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shmq.ipc import remove_stale
from shmq.ipc.segment import SHM_DIR
from tests.ipc._util import SESSION_TAG, leftovers, unique_instance


@pytest.fixture
def instance() -> Iterator[str]:
    """A unique instance name; the test must remove every object it creates under it."""
    name = unique_instance()
    yield name
    left = leftovers(f"{name}.")
    remove_stale(name)  # so that one failure does not cascade into the session check
    assert not left, f"test left shared-memory objects behind: {left}"


@pytest.fixture(scope="session", autouse=True)
def _no_shared_memory_left() -> Iterator[None]:
    """At the end of the session, no /dev/shm/shmq.<test instance>.* may remain."""
    yield
    left = leftovers(SESSION_TAG)
    for entry in left:
        os.unlink(os.path.join(SHM_DIR, entry))
    assert not left, f"the ipc tests left shared-memory objects behind: {left}"
