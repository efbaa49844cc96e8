"""Wake-ups between processes: spin, then park on a POSIX semaphore; post only to a sleeper.

Theory of operation
-------------------
One wake-up channel links a *sleeper* (the side that waits: a consumer for records, a producer
for space) to a *waker* (the other side). It consists of a named POSIX semaphore and an int64
*state word* in shared memory that only the sleeper writes: RUNNING (0), CLOSED (-1), or a
*park number* (> 0) while the sleeper is parked.

Sleeper, in `Sleeper.wait(is_ready, timeout_s)`:

1. Spin: call `is_ready()` in a loop for the current spin budget. A busy-polling reader sees a
   record in ~0.3 us, a semaphore wake-up costs ~26 us across cores (architecture.md §8), so a
   short spin pays whenever the answer comes soon.
2. Announce: store a fresh park number in the state word, then a full fence.
3. Re-check `is_ready()`. A waker that published before reading our announcement is caught
   here, so it need not post.
4. Park: `sem_timedwait` on the semaphore. The first slice is short (`recheck_us`), later ones
   `park_slice_s`; after each slice that ends without a post, `is_ready()` is checked again and
   the caller's `on_idle()` runs (it raises `PeerGone` when the other process died).
5. On the way out: state word back to RUNNING, then drain the semaphore (a post can arrive
   after we woke for another reason; left there it would only cause one spurious wake-up).

Waker, after every publication: load the sleeper's state word; if it holds a park number it has
not posted for yet, post once. So the fast path is one shared load and a compare, no syscall,
and a parked sleeper gets one post however many records follow.

Lost wake-ups. The race is the classic store->load one: the waker stores `head` and then loads
the state word; the sleeper stores the state word and then loads `head`. x86-64 (TSO) may delay
each store in its core's store buffer past the following load, so both could read the old value:
the sleeper parks, the waker does not post. The sleeper's side is closed with a full fence
(`full_fence()`, a locked instruction). The waker's side has no fence, because it would cost
every publication ~90 ns; instead the sleeper's first park slice is short (`recheck_us`, default
0.5 ms): a store leaves the store buffer within nanoseconds, so the re-check after that slice
sees any `head` published before the waker read the state word. A lost wake-up therefore costs
at most `recheck_us`, and in practice never happens (the window is a few nanoseconds wide).

Adaptive spinning: after a wait that ended in a park and was satisfied within `max_spin_us`,
the budget doubles towards that wait's length (spinning a bit longer would have saved a park);
after a wait that parked longer, or timed out, it halves towards `min_spin_us`. An idle process
thus parks almost at once, while a busy exchange keeps its answers in the spin window. The
low-latency policy spins for milliseconds; the default policy parks after tens of
microseconds, so an idle process uses ~no CPU.

Event-loop sleepers. An asyncio process cannot park a thread on a semaphore without a second
thread, whose wake-up then has to hand over to the loop (a second wake-up, and a wait for the
GIL while the loop is busy). For such a sleeper the channel's bell is a `FifoBell` instead: a
named FIFO in /dev/shm with the semaphore's interface (`release`, `acquire`, `value`). The
sleeper watches its file descriptor with the loop (`fileno()`), and announces itself with
`Sleeper.announce()` whenever it goes back to the loop with nothing to do; the waker's protocol
is unchanged (one post per park number, so at most one byte per announcement).

This module knows nothing of rings: `ring.py` gives it the bells, the state word and the
`is_ready` predicates. It never logs (it runs on the hot path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import math
import os
import select
import stat
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Final, TypeAlias

import posix_ipc

from shmq.errors import ConfigError, IpcError
from shmq.ipc.errors import SegmentExists, SegmentMissing
from shmq.ipc.layout import STATE_RUNNING
from shmq.ipc.segment import DEFAULT_MODE, SEGMENT_PREFIX, SHM_DIR, posix_name

__all__ = [
    "DEFAULT_POLICY",
    "LOW_LATENCY_POLICY",
    "Bell",
    "FifoBell",
    "Sleeper",
    "WaitPolicy",
    "WaitStatistics",
    "Waker",
    "answer_policy",
    "create_semaphore",
    "full_fence",
    "is_process_alive",
    "open_semaphore",
    "wait_policy",
]


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How a sleeper trades CPU for latency.

    Attributes:
        spin_us: initial spin budget before parking.
        min_spin_us: adaptive floor (also the budget after long idle periods).
        max_spin_us: adaptive ceiling: waits longer than this park.
        adaptive: adjust the budget from the outcome of each wait; if false, always `spin_us`.
        recheck_us: first park slice; bounds the delay of a lost wake-up (module docstring).
        park_slice_s: later park slices; how often a parked side checks that its peer lives.
        yield_while_spinning: give the core away (`sched_yield`) on every spin iteration, so
            that on a machine with more spinners than cores the process with work to do gets
            to run instead of waiting for a spinner's time slice to end.
    """

    spin_us: float = 20.0
    min_spin_us: float = 5.0
    max_spin_us: float = 200.0
    adaptive: bool = True
    recheck_us: float = 500.0
    park_slice_s: float = 0.1
    yield_while_spinning: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_spin_us <= self.spin_us <= self.max_spin_us:
            raise ConfigError(
                f"wait policy spin_us={self.spin_us}, min_spin_us={self.min_spin_us}, "
                f"max_spin_us={self.max_spin_us}: need 0 <= min <= spin <= max"
            )
        if self.recheck_us <= 0 or self.park_slice_s <= 0:
            raise ConfigError(
                f"wait policy recheck_us={self.recheck_us}, park_slice_s={self.park_slice_s}: "
                f"both must be > 0"
            )


#: Parks after ~20 us (5-200 us adaptive): an idle process uses ~no CPU.
DEFAULT_POLICY: Final = WaitPolicy()
#: Spins for milliseconds before parking: round trips stay in the microseconds while traffic
#: flows, at the price of a busy core during that time.
#: No sched_yield while spinning: with a core kept for each spinner (what this mode is for), a
#: yield only adds a system call to each turn (measured: p50 102-120 us without, 173-200 with).
LOW_LATENCY_POLICY: Final = WaitPolicy(spin_us=2000.0, min_spin_us=1000.0, max_spin_us=20000.0,
                                       yield_while_spinning=False)


def wait_policy(max_spin_us: float, low_latency: bool) -> WaitPolicy:
    """The policy of the settings `ring.spin_us` and `ring.low_latency`.

    Low latency: LOW_LATENCY_POLICY (`max_spin_us` does not apply). Otherwise DEFAULT_POLICY
    with `max_spin_us` as the ceiling of its adaptive spin (its start and floor lowered to it
    when above); 0 parks at once.
    """
    if low_latency:
        return LOW_LATENCY_POLICY
    if max_spin_us == DEFAULT_POLICY.max_spin_us:
        return DEFAULT_POLICY
    return dataclasses.replace(
        DEFAULT_POLICY, spin_us=min(DEFAULT_POLICY.spin_us, max_spin_us),
        min_spin_us=min(DEFAULT_POLICY.min_spin_us, max_spin_us), max_spin_us=max_spin_us)


#: How long a producer spins for the answer to a request it has just made: it comes within
#: ~100 us unless the writer is parked (a wake-up costs ~50-100 us here).
ANSWER_SPIN_US: Final = 300.0


def answer_policy(max_spin_us: float, low_latency: bool) -> WaitPolicy:
    """How a producer waits for the answer to its request under the same settings: a fixed
    spin of `ANSWER_SPIN_US` capped by `max_spin_us` (0 parks at once); low latency:
    LOW_LATENCY_POLICY."""
    if low_latency:
        return LOW_LATENCY_POLICY
    spin = min(ANSWER_SPIN_US, max_spin_us)
    return WaitPolicy(spin_us=spin, min_spin_us=spin, max_spin_us=spin, adaptive=False)


@dataclass(frozen=True, slots=True)
class WaitStatistics:
    """Counters of one sleeper since it was made."""

    spins: int  #: waits satisfied while spinning
    parks: int  #: waits that parked on the semaphore
    timeouts: int  #: waits that ended at their deadline, not ready
    spin_us: float  #: current spin budget


_FENCE_LOCK: Final = threading.Lock()


def full_fence() -> None:
    """A full memory barrier: earlier stores are visible before later loads execute.

    Taking and releasing a lock executes locked instructions (`lock cmpxchg` / `lock xadd` in
    glibc's semaphore behind `threading.Lock`), which x86-64 orders against every load and
    store. ~90 ns; used only on the way into a park, never per record.
    """
    _FENCE_LOCK.acquire()
    _FENCE_LOCK.release()


def is_process_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (dead but not yet reaped).

    Pids are reused, so a long-dead peer can look alive again; callers use this only as
    evidence that a peer is gone, never as proof that it lives.
    """
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except FileNotFoundError:
        return False
    except OSError:
        return _kill_zero(pid)
    # "pid (comm) S ...": comm may contain spaces and parentheses; the state follows the last ')'.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def _kill_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def create_semaphore(instance: str, name: str, *, mode: int = DEFAULT_MODE) -> posix_ipc.Semaphore:
    """Create named semaphore `/shmq.<instance>.<name>` with count 0 and permission `mode`.

    Raises:
        InvalidName: bad `instance` or `name`; nothing was created.
        SegmentExists: the name is taken; nothing was changed.
        IpcError: the system refused; nothing was created.
    """
    pname = posix_name(instance, name)
    try:
        sem = posix_ipc.Semaphore(pname, posix_ipc.O_CREX, mode=mode, initial_value=0)
    except posix_ipc.ExistentialError as err:
        raise SegmentExists(pname) from err
    except (posix_ipc.Error, OSError, ValueError) as err:
        raise IpcError(f"cannot create semaphore {pname}: {err}") from err
    try:
        # sem_open applies the umask; set the mode exactly, as for segments.
        os.chmod(f"{SHM_DIR}/sem.{SEGMENT_PREFIX}.{instance}.{name}", mode)
    except FileNotFoundError:
        pass  # not Linux's /dev/shm layout: the umask-narrowed mode stands
    return sem


def open_semaphore(instance: str, name: str) -> posix_ipc.Semaphore:
    """Open the existing named semaphore `/shmq.<instance>.<name>`.

    Raises:
        InvalidName: bad `instance` or `name`.
        SegmentMissing: no such semaphore.
        IpcError: the system refused (permissions).
    """
    pname = posix_name(instance, name)
    try:
        return posix_ipc.Semaphore(pname)
    except posix_ipc.ExistentialError as err:
        raise SegmentMissing(pname) from err
    except (posix_ipc.Error, OSError) as err:
        raise IpcError(f"cannot open semaphore {pname}: {err}") from err


class FifoBell:
    """A named FIFO used like a semaphore by one sleeper (reader) and one waker (writer).

    `release()` writes one byte (never blocks: a full FIFO is already a pending wake-up; no
    reader means nobody to wake). `acquire(timeout)` waits until a byte is there and takes
    everything (posts coalesce, as they would on the semaphore after `Sleeper._drain`), raising
    `posix_ipc.BusyError` on timeout like a semaphore. `fileno()` is the read end, for event
    loops. The read end is opened O_RDWR so that it never sees end-of-file and the write end
    can always be opened while it is held. Each end is opened on first use.
    """

    def __init__(self, path: str) -> None:
        self.path: Final = path
        self._rfd = -1
        self._wfd = -1

    @classmethod
    def create(cls, path: str, *, mode: int = DEFAULT_MODE) -> FifoBell:
        """Make the FIFO at `path` (exact `mode`).

        Raises:
            SegmentExists: `path` exists; nothing was changed.
            IpcError: the system refused; nothing was created.
        """
        try:
            os.mkfifo(path, mode)
            os.chmod(path, mode)  # mkfifo applies the umask
        except FileExistsError as err:
            raise SegmentExists(path) from err
        except OSError as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise IpcError(f"cannot create FIFO {path}: {err}") from err
        return cls(path)

    @staticmethod
    def exists(path: str) -> bool:
        """Whether `path` is a FIFO."""
        try:
            return stat.S_ISFIFO(os.stat(path).st_mode)
        except OSError:
            return False

    def fileno(self) -> int:
        """The read end (opened now if need be), for `loop.add_reader`.

        Raises:
            SegmentMissing: the FIFO is gone.
        """
        if self._rfd < 0:
            try:
                self._rfd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError as err:
                raise SegmentMissing(self.path) from err
        return self._rfd

    def release(self) -> None:
        """Post: write one byte (see the class docstring); never blocks. A FIFO that is gone,
        has no reader or is full needs no post and is not an error.

        Raises:
            IpcError: any other failure of the write (a bug, or the system refusing).
        """
        if self._wfd < 0:
            try:
                self._wfd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return  # gone, or no reader (ENXIO): nobody waits on it
        try:
            os.write(self._wfd, b"\x01")
        except BlockingIOError:
            pass  # full: a wake-up is already pending
        except OSError as err:
            if err.errno != errno.EPIPE:
                raise IpcError(f"cannot post FIFO {self.path}: {err}") from err

    def acquire(self, timeout: float | None = None) -> None:
        """Wait for a post (up to `timeout` seconds; None: no limit), then take every post.

        Raises:
            posix_ipc.BusyError: no post within `timeout`.
        """
        fd = self.fileno()
        if not self.drain():
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready or not self.drain():
                raise posix_ipc.BusyError("FIFO bell: no post in time")

    def drain(self) -> bool:
        """Take every pending post without waiting; return whether there was one."""
        fd, took = self.fileno(), False
        try:
            while os.read(fd, 4096):
                took = True
        except BlockingIOError:
            pass
        return took

    @property
    def value(self) -> int:
        """Posts pending (bytes in the FIFO)."""
        if self._rfd < 0:
            return 0
        buf = fcntl.ioctl(self._rfd, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little")

    def close(self) -> None:
        """Close this object's descriptors (the FIFO stays; `unlink` removes it)."""
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                os.close(fd)
        self._rfd = self._wfd = -1

    def unlink(self) -> None:
        """Remove the FIFO's name (missing is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


#: what a wake-up channel posts and parks on: a POSIX semaphore or a FIFO bell
Bell: TypeAlias = posix_ipc.Semaphore | FifoBell


def _sched_yield() -> None:
    os.sched_yield()


def _no_pause() -> None:
    return None


def _first_park_number() -> int:
    # Random, so that a restarted sleeper never repeats a number its waker already posted for.
    return int.from_bytes(os.urandom(5), "little") + 1


class Sleeper:
    """The waiting side of a wake-up channel (one per ring end, used by one thread).

    Args:
        sem: the channel's semaphore, posted by the waker.
        states: an int64 memoryview holding the state word.
        index: the state word's index in `states`; only this sleeper writes it (besides the
            end's own `close()`, which runs in the same thread).
        policy: spin and park settings.
    """

    def __init__(
        self, sem: Bell, states: memoryview, index: int, policy: WaitPolicy
    ) -> None:
        self.policy: Final = policy
        self._sem = sem
        self._states = states
        self._index = index
        self._spin_s = policy.spin_us * 1e-6
        self._park_number = _first_park_number()
        self._spins = self._parks = self._timeouts = 0

    def wait(
        self,
        is_ready: Callable[[], bool],
        timeout_s: float | None,
        on_idle: Callable[[], None] | None = None,
    ) -> bool:
        """Return True as soon as `is_ready()` is true, False if `timeout_s` passes first.

        Args:
            is_ready: cheap predicate over shared memory; called many times.
            timeout_s: seconds to wait at most; None waits until ready.
            on_idle: called after each park slice that ended without a post and without
                `is_ready()`; may raise to end the wait (for example `PeerGone`).

        Raises:
            Whatever `on_idle` raises; the state word is RUNNING again and the semaphore drained.
        """
        start = perf_counter()
        limit = math.inf if timeout_s is None else max(timeout_s, 0.0)
        spin_end = start + min(self._spin_s, limit)
        pause = _sched_yield if self.policy.yield_while_spinning else _no_pause
        while True:
            if is_ready():
                self._spins += 1
                return True
            if perf_counter() >= spin_end:
                break
            pause()
        ready = self._park(is_ready, start + limit, on_idle)
        self._adapt(perf_counter() - start, ready)
        return ready

    def _park(
        self,
        is_ready: Callable[[], bool],
        deadline: float,
        on_idle: Callable[[], None] | None,
    ) -> bool:
        self._parks += 1
        self._park_number += 1
        self._states[self._index] = self._park_number  # announce: "post me"
        full_fence()
        try:
            slice_s = self.policy.recheck_us * 1e-6
            while not is_ready():  # the first call is the re-check after the announcement
                now = perf_counter()
                if now >= deadline:
                    self._timeouts += 1
                    return False
                posted = self._sleep(min(slice_s, deadline - now))
                slice_s = self.policy.park_slice_s
                if not posted and on_idle is not None and not is_ready():
                    on_idle()
            return True
        finally:
            self._states[self._index] = STATE_RUNNING
            self._drain()

    def announce(self) -> None:
        """For event-loop sleepers (`FifoBell`): store a fresh park number ("post me") and
        fence. The caller re-checks its predicate afterwards, as `wait` does, and calls
        `retire` when it wakes up."""
        self._parks += 1
        self._park_number += 1
        self._states[self._index] = self._park_number
        full_fence()

    def retire(self) -> None:
        """Undo `announce`: state back to RUNNING, pending posts taken."""
        self._states[self._index] = STATE_RUNNING
        self._drain()

    def _sleep(self, timeout_s: float) -> bool:
        try:
            self._sem.acquire(timeout_s)
        except posix_ipc.BusyError:
            return False  # the slice ended without a post
        except posix_ipc.SignalError:
            return True  # a signal handler ran (posix_ipc ran it): re-check at once
        return True

    def _drain(self) -> None:
        while self._sem.value > 0:
            try:
                self._sem.acquire(0)
            except posix_ipc.BusyError:
                return  # taken meanwhile by nobody else (SPSC): value was stale

    def _adapt(self, waited_s: float, ready: bool) -> None:
        policy = self.policy
        if not policy.adaptive:
            return
        if ready and waited_s <= policy.max_spin_us * 1e-6:
            self._spin_s = min(policy.max_spin_us * 1e-6, max(self._spin_s, waited_s) * 2)
        else:
            self._spin_s = max(policy.min_spin_us * 1e-6, self._spin_s / 2)

    def statistics(self) -> WaitStatistics:
        """Counters since this sleeper was made, and the current spin budget."""
        return WaitStatistics(self._spins, self._parks, self._timeouts, self._spin_s * 1e6)


class Waker:
    """The posting side of a wake-up channel (one per ring end, used by one thread)."""

    def __init__(self, sem: Bell) -> None:
        self._sem = sem
        self._posted = STATE_RUNNING
        self.posts = 0  #: semaphore posts made

    def wake(self, state: int) -> None:
        """Post if `state` (the sleeper's state word, > 0) is a park not yet posted for."""
        if state != self._posted:
            self._posted = state
            self._sem.release()
            self.posts += 1

    def wake_always(self) -> None:
        """Post unconditionally (used on close, so that a parked peer notices at once)."""
        self._sem.release()
        self.posts += 1
