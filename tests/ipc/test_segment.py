"""Tests of shmq/ipc/segment.py: naming, modes, create/attach/unlink, stale cleanup."""

from __future__ import annotations

import os
import stat

import pytest

from shmq.ipc import (
    InvalidName,
    Ring,
    Segment,
    SegmentExists,
    SegmentMissing,
    SharedTable,
    list_segments,
    list_semaphores,
    posix_name,
    remove_stale,
    unlink_segment,
)
from shmq.ipc.errors import InvalidLayout
from shmq.ipc.segment import SHM_DIR
from tests.ipc import _children
from tests.ipc._util import CTX

pytestmark = pytest.mark.timeout(60)


def test_posix_name_scheme() -> None:
    assert posix_name("prod-1", "ring.p0.w1") == "/shmq.prod-1.ring.p0.w1"


@pytest.mark.parametrize(
    ("instance", "name"),
    [
        ("", "x"),
        ("a.b", "x"),
        ("a/b", "x"),
        ("x" * 65, "x"),
        ("a", ""),
        ("a", ".x"),
        ("a", "x/y"),
        ("a", "x y"),
        ("a", "x" * 129),
    ],
)
def test_bad_names_are_refused(instance: str, name: str) -> None:
    with pytest.raises(InvalidName):
        posix_name(instance, name)


def test_create_attach_share_bytes(instance: str) -> None:
    with Segment.create(instance, "seg", 4096) as created, Segment.attach(instance, "seg") as other:
        assert created.size_bytes == other.size_bytes == 4096
        created.buf[100:105] = b"hello"
        assert other.buf[100:105] == b"hello"
        assert list_segments(instance) == ["seg"]
        created.unlink()
    assert list_segments(instance) == []


def test_segment_mode_is_exact_despite_umask(instance: str) -> None:
    old = os.umask(0o077)
    try:
        with (
            Segment.create(instance, "default", 64) as default,
            Segment.create(instance, "group", 64, mode=0o640) as group,
        ):
            default_mode = stat.S_IMODE(os.stat(f"{SHM_DIR}/shmq.{instance}.default").st_mode)
            group_mode = stat.S_IMODE(os.stat(f"{SHM_DIR}/shmq.{instance}.group").st_mode)
            default.unlink()
            group.unlink()
    finally:
        os.umask(old)
    assert default_mode == 0o600
    assert group_mode == 0o640


def test_ring_semaphores_are_private(instance: str) -> None:
    with Ring.create(instance, "r", 4096) as ring:
        modes = {
            name: stat.S_IMODE(os.stat(f"{SHM_DIR}/sem.shmq.{instance}.{name}").st_mode)
            for name in list_semaphores(instance)
        }
        ring.unlink()
    assert modes == {"r.cwake": 0o600, "r.pwake": 0o600}


def test_create_existing_raises_and_leaves_it_alone(instance: str) -> None:
    with Segment.create(instance, "seg", 64) as first:
        first.buf[0] = 7
        with pytest.raises(SegmentExists) as info:
            Segment.create(instance, "seg", 128)
        assert info.value.posix_name == f"/shmq.{instance}.seg"
        assert "remove_stale" in str(info.value)
        with Segment.attach(instance, "seg") as again:
            assert again.size_bytes == 64 and again.buf[0] == 7
        first.unlink()


def test_attach_or_unlink_missing_raises(instance: str) -> None:
    with pytest.raises(SegmentMissing):
        Segment.attach(instance, "nothing")
    with pytest.raises(SegmentMissing):
        unlink_segment(instance, "nothing")
    assert unlink_segment(instance, "nothing", missing_ok=True) is False


def test_empty_segment_is_refused(instance: str) -> None:
    with pytest.raises(InvalidLayout):
        Segment.create(instance, "seg", 0)
    assert list_segments(instance) == []


def test_close_with_live_view_defers_unmapping(instance: str) -> None:
    segment = Segment.create(instance, "seg", 64)
    view = memoryview(segment.buf)
    segment.close()  # must not raise: the mapping goes when the view goes
    view[0] = 1
    view.release()
    segment.close()
    assert segment.is_closed
    segment.unlink()


def test_list_and_remove_stale_only_touch_the_instance(instance: str) -> None:
    other = f"{instance}x"
    with Segment.create(other, "keep", 64) as keep:
        with Ring.create(instance, "r1", 4096), SharedTable.create(instance, "t", 4):
            pass  # closed without unlinking, as after a crash
        assert list_segments(instance) == ["r1", "t"]
        assert list_semaphores(instance) == ["r1.cwake", "r1.pwake"]
        removed = remove_stale(instance)
        assert sorted(removed) == sorted(
            [
                f"shmq.{instance}.r1",
                f"shmq.{instance}.t",
                f"sem.shmq.{instance}.r1.cwake",
                f"sem.shmq.{instance}.r1.pwake",
            ]
        )
        assert list_segments(instance) == list_semaphores(instance) == []
        assert list_segments(other) == ["keep"]
        keep.unlink()


@pytest.mark.integration
def test_remove_stale_after_kill_9(instance: str) -> None:
    child = CTX.Process(target=_children.create_objects_then_kill_9, args=(instance,))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    assert list_segments(instance) == ["ring", "table"]
    assert list_semaphores(instance) == ["ring.cwake", "ring.pwake"]
    assert len(remove_stale(instance)) == 4
    assert remove_stale(instance) == []
    # The names are free again: a restarted supervisor can create its objects.
    with Ring.create(instance, "ring", 4096) as ring:
        ring.unlink()
