"""Ctrl-C during `fit`: training stops at a step boundary, never inside a step.

Python's SIGINT handler raises KeyboardInterrupt at whatever bytecode runs when the signal
arrives. Inside an optimizer step that can be between the launches for two parameter groups
(weights updated, biases not) or between a launch and the step counter's increment (Adam's
bias correction one step behind), and inside the forward pass after batch norm has updated its
running statistics: a half-applied step. While `fit` runs, `deferred_sigint` replaces the
handler with one that only records the signal; after each step the loop hands `take()` to its
context's `interrupt_point`, which raises KeyboardInterrupt there (under fit(comm=) on every
rank at the same step, when any rank was signalled: see fusedops.distributed.training). A second Ctrl-C before that raises at once: the way out of a
step that takes too long, at the price of the guarantee.

Signals reach only the main thread, and only it may set handlers: elsewhere, or when the
program has installed its own SIGINT handler (or ignores SIGINT), nothing is changed.
"""
from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["deferred_sigint"]


class _Pending:
    def __init__(self):
        self.signalled = False

    def handler(self, signum, frame):
        if self.signalled:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signalled = True

    def take(self) -> bool:
        """Whether a Ctrl-C arrived since the last take or check (and forget it)."""
        signalled, self.signalled = self.signalled, False
        return signalled

    def check(self) -> None:
        """Raise the KeyboardInterrupt a Ctrl-C since the last check deferred."""
        if self.take():
            raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_sigint():
    """Within the block, SIGINT is recorded instead of raised; call `.check()` of the yielded
    object at safe points. On leaving the block the previous handler is back, and a Ctrl-C
    that arrived after the last check is raised then (unless another exception is leaving)."""
    pending = _Pending()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield pending
        return
    signal.signal(signal.SIGINT, pending.handler)
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    pending.check()
