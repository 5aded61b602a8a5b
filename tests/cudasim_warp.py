"""Warp intrinsics for Numba's CUDA simulator, for tests only.

Why this exists: the simulator (``NUMBA_ENABLE_CUDASIM=1``) runs every CUDA thread of a block
as a Python thread, but its fake ``cuda`` module has no warp-level intrinsics, so a kernel that
uses ``cuda.ballot_sync`` or ``cuda.shfl_sync`` cannot run under it. ``install()`` adds
``ballot_sync``, ``shfl_sync``, ``any_sync``, ``all_sync``, ``match_any_sync`` and ``syncwarp``
to the simulator's ``FakeCUDAModule`` so that such kernels can be checked on a machine without
a GPU. It lives in ``tests/`` and is never imported by the library: it changes a class of
numba-cuda's, which only a test process should do.

How a call works: each intrinsic is a rendezvous of the threads of one block and one warp whose
lanes are in ``mask``. Every lane deposits its argument and waits; the last to arrive completes
the round and wakes the others, and each lane then computes its own result from all the
deposited arguments. Groups with disjoint masks in the same warp meet separately and progress
independently, as cooperative groups smaller than a warp do on a GPU.

Limits:

* Lanes and warps come from the simulator's linear ``thread_id`` (lane ``thread_id % 32``, warp
  ``thread_id // 32``): CUDA's numbering for 1-D blocks, the only layout the tests exercise.
* Lanes named in one mask must call the same intrinsics in the same order (lockstep). There is
  no divergence detection beyond a timeout: a lane that never arrives (it exited early, or it
  waits under a different mask) makes the others raise ``RuntimeError`` after
  ``RENDEZVOUS_TIMEOUT_S`` seconds, naming the lanes that never came, instead of hanging.
* When another thread's exception aborts a launch, lanes already waiting here are not woken:
  they linger until their timeout, but cannot meet the threads of a later launch.
* ``activemask()`` and the ``shfl_up/down/xor`` variants are not provided.

``install()`` also gives all the simulator's atomics one lock, and makes launches from
different host threads take turns (``_serialize_launches``): two things a GPU does right and
the simulator does not.
"""

from __future__ import annotations

import threading
import time

import numpy as np

#: Seconds a lane waits for the rest of its mask before the rendezvous is declared failed.
#: Read at every call, so a test may lower it to make a deliberate deadlock fail fast.
RENDEZVOUS_TIMEOUT_S = 60.0

_WARP_SIZE = 32
_FULL_MASK = 0xFFFFFFFF

# One condition guards every pending round: rounds are short and the simulator runs one block
# at a time, so a single lock costs little and rules out lock-ordering mistakes.
_cond = threading.Condition()
# Rounds still gathering lanes, keyed by (launch, block, warp, mask). A round is removed the
# moment it completes or fails, so the dict only ever holds rounds that have waiters.
_pending: dict[tuple, _Round] = {}


class _Round:
    """One generation of a rendezvous: the arguments deposited so far, by lane.

    Each waiter keeps a reference to its own round object, and the key is freed as soon as the
    round completes, so a lane that hurries on to its next call with the same mask starts a new
    generation rather than mixing its argument into the one its slower peers are still reading.
    """

    __slots__ = ("values", "done", "error")

    def __init__(self):
        self.values: dict[int, object] = {}
        self.done = False
        self.error: str | None = None


def _lanes(mask: int) -> list[int]:
    return [lane for lane in range(_WARP_SIZE) if mask >> lane & 1]


def _exchange(launch, mask, value) -> tuple[int, int, dict[int, object]]:
    """Deposit ``value`` for the calling lane and wait for every lane of ``mask``.

    Returns ``(lane, mask, values)``: the caller's lane, the mask as a Python int and every
    lane's value. ``launch`` (the simulator's per-launch fake cuda module) is part of the key so
    that threads left waiting by a failed launch cannot meet the threads of a later one.
    """
    thread = threading.current_thread()
    if not hasattr(thread, "thread_id"):
        raise RuntimeError("warp intrinsics can only be called inside a simulated CUDA kernel")
    lane = thread.thread_id % _WARP_SIZE
    warp = thread.thread_id // _WARP_SIZE
    block = tuple(thread.blockIdx)
    mask = int(mask) & _FULL_MASK
    if not mask >> lane & 1:
        raise RuntimeError(f"lane {lane} of warp {warp} in block {block} called a warp "
                           f"intrinsic with mask {mask:#010x}, which does not include it")

    key = (launch, block, warp, mask)
    with _cond:
        current = _pending.get(key)
        if current is None:
            current = _pending[key] = _Round()
        current.values[lane] = value
        if len(current.values) == mask.bit_count():
            current.done = True
            del _pending[key]
            _cond.notify_all()
            return lane, mask, current.values

        deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_S
        while not (current.done or current.error):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [m for m in _lanes(mask) if m not in current.values]
                current.error = (f"warp rendezvous timed out after {RENDEZVOUS_TIMEOUT_S} s: "
                                 f"block {block}, warp {warp}, mask {mask:#010x}; lanes "
                                 f"{missing} never arrived (exited early, diverged or used "
                                 f"another mask)")
                # Wake the other waiters of this round so they fail with the same message now
                # rather than each at its own deadline, and free the key.
                del _pending[key]
                _cond.notify_all()
                break
            _cond.wait(remaining)
        if current.error:
            raise RuntimeError(current.error)
        return lane, mask, current.values


def _ballot_sync(self, mask, predicate):
    _, mask, values = _exchange(self, mask, bool(predicate))
    return np.uint32(sum(1 << lane for lane, bit in values.items() if bit))


def _shfl_sync(self, mask, value, src_lane):
    src_lane = int(src_lane)
    _, mask, values = _exchange(self, mask, value)
    if src_lane not in values:
        # On a GPU this reads an undefined value; in a test it is always a bug worth reporting.
        raise RuntimeError(f"shfl_sync from lane {src_lane}, which is not in mask {mask:#010x}")
    return values[src_lane]


def _any_sync(self, mask, predicate):
    _, _, values = _exchange(self, mask, bool(predicate))
    return int(any(values.values()))


def _all_sync(self, mask, predicate):
    _, _, values = _exchange(self, mask, bool(predicate))
    return int(all(values.values()))


def _match_any_sync(self, mask, value):
    lane, _, values = _exchange(self, mask, value)
    mine = values[lane]
    return np.uint32(sum(1 << other for other, v in values.items() if v == mine))


def _syncwarp(self, mask=_FULL_MASK):
    _exchange(self, mask, None)


_INTRINSICS = {
    "ballot_sync": _ballot_sync,
    "shfl_sync": _shfl_sync,
    "any_sync": _any_sync,
    "all_sync": _all_sync,
    "match_any_sync": _match_any_sync,
    "syncwarp": _syncwarp,
}


def install() -> None:
    """Add the warp intrinsics to the simulator's fake ``cuda`` module (safe to call again).

    Raises ``RuntimeError`` unless the simulator is enabled: without it, ``cuda.*`` inside a
    kernel is the real compiler's and this shim would patch a class that is never used.
    """
    from numba import config

    if not config.ENABLE_CUDASIM:
        raise RuntimeError("cudasim_warp.install() needs Numba's CUDA simulator: set "
                           "NUMBA_ENABLE_CUDASIM=1 before numba is imported")
    from numba.cuda.simulator import kernelapi
    from numba.cuda.simulator.kernelapi import FakeCUDAModule

    # The simulator guards each kind of atomic with a lock of its own, so an atomic add and an
    # atomic sub on one word can interleave and lose an update (on a GPU they cannot): one lock
    # for all of them makes every atomic atomic with respect to the others.
    one_lock = threading.Lock()
    for name in [n for n in vars(kernelapi) if n.endswith("lock") and n != "_locks_register_lock"]:
        if isinstance(getattr(kernelapi, name), type(one_lock)):
            setattr(kernelapi, name, one_lock)

    for name, method in _INTRINSICS.items():
        setattr(FakeCUDAModule, name, method)
    _serialize_launches()


def _serialize_launches() -> None:
    """Make kernel launches from different host threads take turns.

    The simulator keeps "the kernel now running" in a module-level stack and swaps the fake
    ``cuda`` module into the kernel's globals for the launch, so a second host thread that
    launches meanwhile is taken for a device-function call of the first and fails. On a GPU,
    launches from several host threads are fine (the tests of Python threads sharing a table
    make them); here one lock serialises them. Calls made by the simulated GPU threads
    themselves (device functions) never take it.
    """
    from numba.cuda.simulator import kernel

    launch = kernel.FakeCUDAKernel.__call__
    if getattr(launch, "serialized", False):
        return
    lock = threading.RLock()

    def serialized(self, *args):
        if self._device or isinstance(threading.current_thread(), kernel.BlockThread):
            return launch(self, *args)
        with lock:
            return launch(self, *args)

    serialized.serialized = True
    kernel.FakeCUDAKernel.__call__ = serialized
