"""Tests of shmq/ipc/wakeup.py: post once per park, drain, re-check, adaptive spin."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import posix_ipc
import pytest

from shmq.errors import ConfigError
from shmq.ipc import remove_stale
from shmq.ipc.layout import STATE_RUNNING
from shmq.ipc.wakeup import (
    DEFAULT_POLICY,
    LOW_LATENCY_POLICY,
    Sleeper,
    WaitPolicy,
    Waker,
    answer_policy,
    create_semaphore,
    full_fence,
    is_process_alive,
    open_semaphore,
    wait_policy,
)
from tests.ipc._util import CTX

pytestmark = pytest.mark.timeout(60)

_NO_SPIN = WaitPolicy(spin_us=0, min_spin_us=0, max_spin_us=0, recheck_us=2e6, park_slice_s=5)


@pytest.fixture
def sem(instance: str) -> Iterator[posix_ipc.Semaphore]:
    semaphore = create_semaphore(instance, "s")
    yield semaphore
    semaphore.close()
    remove_stale(instance)


@pytest.fixture
def states() -> memoryview:
    return memoryview(bytearray(64)).cast("q")


def test_policies_validate() -> None:
    assert DEFAULT_POLICY.spin_us < LOW_LATENCY_POLICY.spin_us
    with pytest.raises(ConfigError, match="min <= spin <= max"):
        WaitPolicy(spin_us=10, min_spin_us=20)
    with pytest.raises(ConfigError, match="> 0"):
        WaitPolicy(park_slice_s=0)


def test_wait_policy_of_the_ring_settings() -> None:
    assert wait_policy(DEFAULT_POLICY.max_spin_us, False) is DEFAULT_POLICY
    assert wait_policy(0, True) is wait_policy(10_000, True) is LOW_LATENCY_POLICY
    ceiling = wait_policy(50, False)
    assert (ceiling.spin_us, ceiling.min_spin_us, ceiling.max_spin_us) == (
        DEFAULT_POLICY.spin_us, DEFAULT_POLICY.min_spin_us, 50)
    low = wait_policy(3, False)
    assert (low.spin_us, low.min_spin_us, low.max_spin_us) == (3, 3, 3)
    high = wait_policy(5000, False)
    assert (high.spin_us, high.max_spin_us, high.yield_while_spinning) == (
        DEFAULT_POLICY.spin_us, 5000, True)


def test_answer_policy_of_the_ring_settings() -> None:
    assert answer_policy(0, True) is LOW_LATENCY_POLICY
    for ceiling, spin in ((0, 0), (50, 50), (DEFAULT_POLICY.max_spin_us, 200), (1e6, 300)):
        policy = answer_policy(ceiling, False)
        assert (policy.spin_us, policy.min_spin_us, policy.max_spin_us, policy.adaptive) == (
            spin, spin, spin, False)


def test_a_zero_spin_policy_parks_at_once(sem: posix_ipc.Semaphore, states: memoryview) -> None:
    sleeper = Sleeper(sem, states, 0, wait_policy(0, False))
    for _ in range(3):
        assert not sleeper.wait(lambda: False, 0.002)
    sem.release()
    assert sleeper.wait(lambda: sem.value == 0, 1)  # woken by the post, never spun
    stats = sleeper.statistics()
    assert (stats.spins, stats.parks, stats.timeouts, stats.spin_us) == (0, 4, 3, 0)


def test_waker_posts_once_per_park_number(sem: posix_ipc.Semaphore) -> None:
    waker = Waker(sem)
    for state in (5, 5, 5, 6, 6, 5):
        waker.wake(state)
    assert sem.value == 3
    assert waker.posts == 3


def test_open_semaphore_by_name(instance: str, sem: posix_ipc.Semaphore) -> None:
    other = open_semaphore(instance, "s")
    other.release()
    assert sem.value == 1
    other.close()


def test_timeout_leaves_running_state_and_drained_semaphore(
    sem: posix_ipc.Semaphore, states: memoryview
) -> None:
    sleeper = Sleeper(sem, states, 3, WaitPolicy(recheck_us=1000, park_slice_s=0.01))
    for _ in range(3):
        sem.release()  # stale posts, as left by a waker that raced a wake-up
    calls = []
    start = time.monotonic()
    assert not sleeper.wait(lambda: False, 0.1, on_idle=lambda: calls.append(1))
    assert 0.1 <= time.monotonic() - start < 1.0
    assert states[3] == STATE_RUNNING
    assert sem.value == 0
    assert calls  # the idle hook ran after slices that ended without a post
    stats = sleeper.statistics()
    assert (stats.spins, stats.parks, stats.timeouts) == (0, 1, 1)


def test_semaphore_is_drained_when_the_wait_ends_ready(
    sem: posix_ipc.Semaphore, states: memoryview
) -> None:
    sleeper = Sleeper(sem, states, 0, _NO_SPIN)
    for _ in range(3):
        sem.release()  # stale posts: the first one ends the park at once
    calls = 0

    def ready_after_first_sleep() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3  # the spin check, the re-check, then ready after waking

    assert sleeper.wait(ready_after_first_sleep, 5)
    assert sem.value == 0  # left there, the posts would end later parks for nothing


def test_parked_sleeper_announces_a_new_park_number_each_time(
    sem: posix_ipc.Semaphore, states: memoryview
) -> None:
    sleeper = Sleeper(sem, states, 0, WaitPolicy(spin_us=0, min_spin_us=0, recheck_us=100))
    seen: list[int] = []

    def record() -> bool:
        seen.append(int(states[0]))
        return False

    sleeper.wait(record, 0.01)
    sleeper.wait(record, 0.01)
    parked = sorted({s for s in seen if s != STATE_RUNNING})
    assert len(parked) == 2 and parked[1] == parked[0] + 1 and parked[0] > 0


def test_post_wakes_a_parked_sleeper(sem: posix_ipc.Semaphore, states: memoryview) -> None:
    sleeper = Sleeper(sem, states, 0, _NO_SPIN)
    ready = threading.Event()

    def waker_thread() -> None:
        while states[0] <= 0:  # wait until the sleeper has announced its park
            time.sleep(0.001)
        ready.set()
        Waker(sem).wake(int(states[0]))

    thread = threading.Thread(target=waker_thread)
    thread.start()
    start = time.monotonic()
    assert sleeper.wait(ready.is_set, 10)
    elapsed = time.monotonic() - start
    thread.join()
    assert elapsed < 1.0  # without the post: the 2 s re-check
    assert states[0] == STATE_RUNNING


def test_unposted_publication_is_seen_after_the_recheck_slice(
    sem: posix_ipc.Semaphore, states: memoryview
) -> None:
    """The lost wake-up guard: a publication the waker made without posting (it read the
    state word before the announcement was visible) is found by the first re-check."""
    sleeper = Sleeper(
        sem,
        states,
        0,
        WaitPolicy(spin_us=0, min_spin_us=0, max_spin_us=0, recheck_us=20_000, park_slice_s=30),
    )
    calls = 0

    def published_meanwhile() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3  # false for the spin and the re-check after the announcement

    start = time.monotonic()
    assert sleeper.wait(published_meanwhile, 60)
    assert 0.015 <= time.monotonic() - start < 2.0


def test_on_idle_can_end_the_wait(sem: posix_ipc.Semaphore, states: memoryview) -> None:
    sleeper = Sleeper(sem, states, 0, WaitPolicy(recheck_us=100, park_slice_s=0.01))

    def peer_died() -> None:
        raise LookupError("peer gone")

    with pytest.raises(LookupError):
        sleeper.wait(lambda: False, 5, on_idle=peer_died)
    assert states[0] == STATE_RUNNING


def test_spin_budget_adapts(sem: posix_ipc.Semaphore, states: memoryview) -> None:
    # Short park slices stand in for the posts of a real waker (this test never posts).
    policy = WaitPolicy(
        spin_us=10, min_spin_us=5, max_spin_us=100_000, recheck_us=200, park_slice_s=0.0002
    )
    sleeper = Sleeper(sem, states, 0, policy)
    for _ in range(5):
        sleeper.wait(lambda: False, 0.002)
    assert sleeper.statistics().spin_us == pytest.approx(5)
    deadline = 0.0

    def soon() -> bool:
        return time.perf_counter() >= deadline

    for _ in range(6):  # answers arrive after ~1 ms: parking is a loss, spinning wins
        deadline = time.perf_counter() + 0.001
        assert sleeper.wait(soon, 1)
    assert sleeper.statistics().spin_us > 1000
    assert sleeper.statistics().spins >= 1


def test_full_fence_is_callable_from_threads() -> None:
    def fences() -> None:
        for _ in range(1000):
            full_fence()

    threads = [threading.Thread(target=fences) for _ in range(2)]
    for thread in threads:
        thread.start()
    fences()
    for thread in threads:
        thread.join()


def test_is_process_alive() -> None:
    assert is_process_alive(os.getpid())
    assert not is_process_alive(0)
    assert not is_process_alive(-1)
    child = CTX.Process(target=os._exit, args=(0,))
    child.start()
    assert child.pid is not None
    deadline = time.monotonic() + 10
    while is_process_alive(child.pid):  # a zombie (exited, not reaped) counts as dead
        assert time.monotonic() < deadline
        time.sleep(0.005)
    child.join(10)
    assert not is_process_alive(child.pid)
