"""The supervisor's stop sequence: the power button (pressed again every few seconds: a press
before the guest's acpid listens is lost), a hard stop after the plan's timeout, SIGKILL after
the driver's grace; a second stop signal skips to the hard stop."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from subprocess import Popen

from ignitevm.errors import IgniteError
from ignitevm.spawn.protocol import REPRESS_INTERVAL
from ignitevm.vmm.driver import VMMDriver

log = logging.getLogger(__name__)


class StopSequence:
    def __init__(
        self,
        driver: VMMDriver,
        timeout: float,
        on_stopping: Callable[[], None],
        repress: float = REPRESS_INTERVAL,
    ) -> None:
        self.driver = driver
        self.timeout = timeout
        self.repress = repress
        self.on_stopping = on_stopping  # told once, when a graceful stop begins
        self.requested = False
        self.stop_deadline: float | None = None  # graceful stop gives up at this time
        self.kill_deadline: float | None = None  # the hard stop was sent; SIGKILL at this time
        self.next_press: float | None = None  # press the power button again at this time

    def signal(self) -> None:
        """A stop signal (from a signal handler: only flags)."""
        if self.stop_deadline is not None:
            self.kill_deadline = self.kill_deadline or time.monotonic()  # second signal
        self.requested = True

    def timeout_for_select(self) -> float:
        now = time.monotonic()
        # The graceful deadline is spent once the hard stop began.
        stop = self.stop_deadline if self.kill_deadline is None else None
        deadlines = [d for d in (stop, self.kill_deadline, self.next_press) if d is not None]
        return max(0.0, min([1.0, *(d - now for d in deadlines)]))

    def begin(self) -> None:
        """Graceful stop: the ACPI power button, then a hard stop after the timeout."""
        self.requested = False
        if self.stop_deadline is not None:
            return
        self.stop_deadline = time.monotonic() + self.timeout
        self.on_stopping()
        try:
            self.driver.powerdown()
            log.info("sent the ACPI power button; hard stop in %g s", self.timeout)
            self.next_press = time.monotonic() + self.repress
        except IgniteError as exc:
            log.warning("graceful stop impossible (%s): stopping hard", exc)
            self.stop_deadline = time.monotonic()

    def check(self, vmm: Popen[bytes]) -> None:
        now = time.monotonic()
        if self.kill_deadline is None and self.next_press is not None and now >= self.next_press:
            self.next_press = now + self.repress
            with contextlib.suppress(IgniteError):
                self.driver.powerdown()
        if self.kill_deadline is not None and now >= self.kill_deadline:
            log.warning("VMM %d still runs: SIGKILL", vmm.pid)
            vmm.kill()
            self.kill_deadline = now + 3600  # once
            self.next_press = None
        elif (
            self.stop_deadline is not None
            and now >= self.stop_deadline
            and (self.kill_deadline is None)
        ):
            log.warning("the guest did not power off in time: hard stop")
            self.hard_stop(vmm)

    def hard_stop(self, vmm: Popen[bytes]) -> None:
        self.next_press = None
        try:
            self.driver.hard_stop(vmm.pid)
        except IgniteError as exc:
            log.warning("%s hard stop failed: %s", self.driver.name, exc)
        self.kill_deadline = time.monotonic() + self.driver.hard_stop_grace
