"""Where a model's value checks run: at once on the host, later for values on a GPU, not at all while traced.

A check of an input's *values* (ids inside their table, a 0/1 mask, labels in range, finite embeddings) has to read
a verdict back from where the values are.

* **now**: values on the CPU in eager mode. Reading them costs nothing; the check raises its ``ValueError`` before
  any layer runs.
* **later**: values on a GPU in eager mode. Reading one back would wait for every kernel queued before it (a host
  synchronisation): the host stops queueing work, and the GPU then idles while the host queues the next. So the
  verdict is reduced on the device to a few numbers (the smallest and the largest id, the first bad label, ...),
  copied into page-locked host memory without blocking, and an event is recorded after the copy. The call goes on
  with its input made safe where a bad value would stop the device (ids clamped into their table, bad labels
  ignored: a CUDA device-side assert ends the process's use of the GPU). The numbers are read once their event has
  passed, without waiting, by the next value check of any bizoo model (in the same call or a later one), or at once
  by ``wait_for_input_checks()``. A failed check then raises the ``ValueError`` it would have raised at once, with
  a note that the input came with this call or an earlier one, which went on with the input made safe, and the
  failures of the checks queued after it (waited for then: the error's path may wait), none of them dropped.
  Nothing else reads them: a loop that does not call ``wait_for_input_checks()`` at its end (the Trainer's
  ``train``, ``evaluate`` and ``predict`` do not; bizoo's commands add a callback that does) leaves the checks of its
  last inputs unread. Those left at the
  interpreter's exit are waited for then, and a failure is logged as an error (``_read_unread_at_exit``): an
  exception raised at exit would reach no caller and leave the exit status 0.
* **off**: while torch.compile or torch.export trace a model, where a read would be a graph break (and on a GPU a
  host synchronisation in every step), and while a CUDA graph is captured (a replay would not redo the checks'
  copies, and the events of earlier checks cannot be asked about meanwhile). A compiled or captured model trusts
  its inputs, as transformers' own models do. Also off for tensors on the meta device, which have no values (a
  forward pass on them infers output shapes, as it does for transformers' models).

Shape, dtype and option checks read no values and run in every mode (``common.py``).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from typing import Callable, NamedTuple

import torch

from ..kernels import dispatch

__all__ = ["check_mode", "settle", "wait_for_input_checks", "discard_input_checks"]

# explain(numbers read back) -> the error message, or None when the input passed.
Explain = Callable[[list], "str | None"]


class _Pending(NamedTuple):
    numbers: torch.Tensor  # on the host (page-locked when copied from a GPU)
    event: "torch.cuda.Event | None"  # passed once the copy has landed; None: landed already
    explain: Explain
    device: str


logger = logging.getLogger(__name__)

_PENDING: deque[_Pending] = deque()
_LOCK = threading.Lock()  # nn.DataParallel runs a model's replicas in threads


def check_mode(tensor: torch.Tensor) -> str:
    """"now", "later" or "off" for a value check of ``tensor`` (module docstring)."""
    if dispatch.tracing() or tensor.is_meta:  # meta tensors (shape inference) have no values to check
        return "off"
    if dispatch.values_on_host(tensor):
        return "now"
    return "off" if tensor.is_cuda and torch.cuda.is_current_stream_capturing() else "later"


def settle(mode: str, numbers: torch.Tensor, explain: Explain) -> None:
    """Act on a check whose verdict ``explain`` reads from ``numbers`` (a small 1-D tensor on the values' device):
    raise its ``ValueError`` now, or queue it to be read later (module docstring). Nothing in "off" mode."""
    if mode == "off":
        return
    raise_arrived()  # the earlier calls' checks first, so that their errors come in order
    if mode == "now":
        message = explain(numbers.tolist())
        if message is not None:
            raise ValueError(message)
        return
    on_gpu = numbers.is_cuda
    host = torch.empty(numbers.shape, dtype=numbers.dtype, pin_memory=on_gpu)  # (n,) on the host
    host.copy_(numbers, non_blocking=on_gpu)
    event = None
    if on_gpu:  # after the copy, on the stream that runs it (the values' device's, not necessarily the current one)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(numbers.device))
    with _LOCK:
        _PENDING.append(_Pending(host, event, explain, str(numbers.device)))


def _landed(pending: _Pending) -> bool:
    """Whether the check's numbers are on the host (asked without waiting)."""
    return pending.event is None or pending.event.query()


def _read(pending: _Pending) -> None:
    """Raise ``pending``'s error, if it failed, together with those of every check queued after it. Those are waited
    for (a host synchronisation, on the error's path only) rather than dropped: a later call's bad input, queued
    before this error surfaced, would otherwise go on unreported after a caller that catches the error and goes on
    (the calls in between went on with their inputs made safe)."""
    message = pending.explain(pending.numbers.tolist())
    if message is None:
        return
    with _LOCK:
        later = list(_PENDING)
        _PENDING.clear()
    also = []  # the distinct failures of the later checks, oldest first (one bad batch may fail several checks)
    for other in later:
        try:
            if other.event is not None:
                other.event.synchronize()
        except RuntimeError:  # the device failed meanwhile: what is left cannot be read
            break
        failure = other.explain(other.numbers.tolist())
        if failure is not None and failure != message and failure not in also:
            also.append(failure)
    also_text = "".join(f"; also, with this call or an earlier one: {failure}" for failure in also)
    raise ValueError(
        f"{message} [read back from {pending.device} without waiting for the device: the input came with this call "
        "or an earlier one, which went on with it made safe (ids clamped into their table, bad labels ignored); "
        f"outputs and training steps computed from it are not to be trusted]{also_text}"
    )


def raise_arrived() -> None:
    """Read every queued check whose numbers have landed, oldest first, without waiting; raise the first failure
    (``_read``: with those of the checks queued after it)."""
    while True:
        with _LOCK:
            if not _PENDING or not _landed(_PENDING[0]):
                return
            pending = _PENDING.popleft()
        _read(pending)


def wait_for_input_checks() -> None:
    """Wait for every queued check of a GPU input and raise the first failure (a host synchronisation: call it at
    the end of a loop, or where an error must surface before going on)."""
    while True:
        with _LOCK:
            if not _PENDING:
                return
            pending = _PENDING.popleft()
        if pending.event is not None:
            pending.event.synchronize()
        _read(pending)


def discard_input_checks() -> int:
    """Drop every queued check unread; returns how many were dropped."""
    with _LOCK:
        count = len(_PENDING)
        _PENDING.clear()
    return count


def _read_unread_at_exit() -> None:
    """At the interpreter's exit: wait for the checks nothing has read (a bad value in the last batches of a loop
    without ``wait_for_input_checks()`` at its end) and log their first failure, which would otherwise be lost."""
    # bizoo's public name; in a copy of this file that an export ships (a model loaded with trust_remote_code, bizoo
    # perhaps not installed) the copy's own module, which the program has imported
    where = "bizoo" if __name__.startswith("bizoo.") else __name__
    try:
        wait_for_input_checks()
    except ValueError as error:
        logger.error(
            "%s\n(an input check of a GPU input that nothing read before the program's exit: call "
            "%s.wait_for_input_checks() at the end of a loop, e.g. after Trainer.train(), evaluate() or "
            "predict(), to raise it there)", error, where
        )
    except RuntimeError as error:  # the device failed meanwhile: its checks cannot be read
        logger.error("%d input checks of GPU inputs could not be read at exit: %s", discard_input_checks(), error)


atexit.register(_read_unread_at_exit)
