"""Tests of shmq/ipc/table.py: numpy arrays in shared memory, attached by name."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from shmq.ipc import InvalidLayout, Ring, SegmentCorrupt, SegmentMissing, SharedTable
from shmq.ipc.segment import SHM_DIR
from tests.ipc import _children
from tests.ipc._util import CTX

pytestmark = pytest.mark.timeout(60)


def test_create_and_attach_share_an_int64_table(instance: str) -> None:
    with SharedTable.create(instance, "maxoff", 1024) as created:
        assert created.array.dtype == np.int64 and created.array.shape == (1024,)
        assert not created.array.any()
        assert created.array.ctypes.data % 64 == 0
        with SharedTable.attach(instance, "maxoff") as attached:
            created.array[7] = 123_456_789_012
            assert attached.array[7] == 123_456_789_012
            attached.array[1000:] = -1
            assert (created.array[1000:] == -1).all()
            assert (attached.shape, attached.dtype) == ((1024,), np.dtype(np.int64))
        created.unlink()


def test_structured_and_multidimensional_tables(instance: str) -> None:
    counters = np.dtype([("records", "<i8"), ("bytes", "<i8"), ("state", "u1")])
    with SharedTable.create(instance, "writers", (4, 3), counters) as created:
        created.array["records"][2, 1] = 5
        with SharedTable.attach(instance, "writers") as attached:
            assert attached.array.dtype == counters
            assert attached.array.shape == (4, 3)
            assert attached.array["records"][2, 1] == 5
        created.unlink()
    with SharedTable.create(instance, "empty", 0, np.float64) as empty:
        with SharedTable.attach(instance, "empty") as again:
            assert again.array.shape == (0,)
        empty.unlink()


def test_table_mode_is_private(instance: str) -> None:
    with SharedTable.create(instance, "t", 8) as table:
        mode = stat.S_IMODE(os.stat(f"{SHM_DIR}/shmq.{instance}.t").st_mode)
        table.unlink()
    assert mode == 0o600


def test_bad_tables_are_refused(instance: str) -> None:
    with pytest.raises(InvalidLayout, match="object"):
        SharedTable.create(instance, "t", 4, object)
    with pytest.raises(InvalidLayout, match="shape"):
        SharedTable.create(instance, "t", (2, -1))
    with pytest.raises(SegmentMissing):
        SharedTable.attach(instance, "t")
    with Ring.create(instance, "r", 256) as ring:
        with pytest.raises(SegmentCorrupt) as info:
            SharedTable.attach(instance, "r")
        assert info.value.field == "magic"
        ring.unlink()


def test_detach_with_live_derived_arrays(instance: str) -> None:
    table = SharedTable.create(instance, "t", 8)
    derived = table.array[2:4]
    table.detach()
    derived[0] = 9  # still mapped until the derived array goes
    del derived
    with pytest.raises(ValueError, match="detached"):
        _ = table.array
    table.unlink()


@pytest.mark.integration
def test_writes_of_another_process_are_visible(instance: str) -> None:
    with SharedTable.create(instance, "counters", 4) as table:
        child = CTX.Process(target=_children.bump_table, args=(instance, "counters", 2, 1000))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert table.array.tolist() == [0, 0, 1000, 0]
        table.unlink()
