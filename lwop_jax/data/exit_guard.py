"""A clean interpreter exit while tf.data still calls the pipeline's Python producer.

tf.data keeps calling the producer from its own threads to refill its buffers; a call that is in flight
when Python finalizes aborts the process ("terminate called without an active exception") or hangs it.
An ``atexit`` hook therefore switches every producer to returning empty placeholders and waits until no
call is in flight.
"""

import atexit
import threading
import time


class ExitGuard:
    """Counts producer calls in flight; at exit, stops real work and waits for them to drain."""

    QUIET_S, TIMEOUT_S, POLL_S = 0.1, 5.0, 0.01

    def __init__(self):
        self._lock = threading.Lock()
        self._in_flight = 0
        self.exiting = False
        self.used = False

    def __enter__(self):
        with self._lock:
            self._in_flight += 1
            self.used = True

    def __exit__(self, *exc_info):
        with self._lock:
            self._in_flight -= 1

    def drain(self):
        """atexit: from now on producers return placeholders (instantly), so tf.data's buffers fill
        and its threads park in C++; return once no call has been in flight for QUIET_S."""
        self.exiting = True
        if not self.used:
            return
        quiet_since, deadline = time.monotonic(), time.monotonic() + self.TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(self.POLL_S)  # releases the GIL for the in-flight calls
            if self._in_flight:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.QUIET_S:
                return


EXIT_GUARD = ExitGuard()
atexit.register(EXIT_GUARD.drain)
