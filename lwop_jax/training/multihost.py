"""Starting a multi-host run (``jax.distributed``) so that a coordinator that never answers, or a process that
never joins, ends in one line after ``coordinator_timeout_s`` instead of JAX's 300 s and an abort from C++.

Why two guards: a process other than 0 first waits in Python for anything to answer at the coordinator's
address (a typo, or process 0 not started, is then an ordinary :class:`TrainingError`). After that, JAX's
client connects and waits for every process to join; when that fails, XLA's client does not raise: it
terminates the process from C++ (``LOG(FATAL)``, exit status 134, a stack trace). So a watchdog thread ends
the process first, with the same one line and exit status 1 that the commands give for an LwopError.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import threading
import time

import jax

from lwop_jax.errors import TrainingError

# JAX's own limit is set this much later than ours, so that the watchdog, not XLA's abort, ends a failed start.
JAX_TIMEOUT_MARGIN_S = 30
PROBE_INTERVAL_S = 0.5


def maybe_initialize_distributed(config) -> None:
    """Multi-host: ``jax.distributed.initialize`` when ``config.distributed`` or ``coordinator_address`` is
    set, with the explicit coordinator, process count and rank where given (else JAX detects the cluster).

    Waits at most ``config.coordinator_timeout_s`` for the coordinator and all processes. Must run before
    anything touches a JAX device. On CPU the processes' collectives go through gloo.
    """
    if not (config.distributed or config.coordinator_address) or jax.distributed.is_initialized():
        return
    if 0 < config.num_processes <= config.process_id:  # before waiting for a coordinator it would never join
        raise TrainingError(f'process_id {config.process_id}: must be below num_processes ({config.num_processes})')
    timeout_s = float(config.coordinator_timeout_s)
    deadline = time.monotonic() + timeout_s
    address = config.coordinator_address
    if address and config.process_id > 0:  # process 0 starts the coordinator itself
        wait_for_coordinator(address, timeout_s)
    where = address or 'the detected cluster'
    with _exit_after(deadline, lambda: _join_failure(address, timeout_s, config.num_processes)):
        try:
            jax.distributed.initialize(
                coordinator_address=address or None,
                num_processes=config.num_processes if config.num_processes > 0 else None,
                process_id=config.process_id if config.process_id >= 0 else None,
                initialization_timeout=math.ceil(timeout_s) + JAX_TIMEOUT_MARGIN_S,
            )
        except (RuntimeError, ValueError) as exc:  # no cluster detected, a bad rank, JAX already started
            raise TrainingError(
                f'multi-host start through {where} failed: {" ".join(str(exc).split())[:300]}'
            ) from None


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Returns once something accepts a TCP connection at ``address`` (host:port); TrainingError naming the
    address and the time waited when nothing did within ``timeout_s`` seconds."""
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        if _answers(host, port, max(0.1, min(PROBE_INTERVAL_S, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise TrainingError(
                f'{address}: no multi-host coordinator answered within {timeout_s:g} s (coordinator_timeout_s): '
                'is process 0 running there?'
            )
        time.sleep(max(0.0, min(PROBE_INTERVAL_S, deadline - time.monotonic())))


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        raise TrainingError(f'{address}: coordinator_address must be host:port')
    return host.strip('[]'), int(port)  # [::1]:1234 -> ::1


def _answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:  # refused, unreachable, unknown host, timed out
        return False


def _join_failure(address: str, timeout_s: float, num_processes: int) -> str:
    processes = f'all {num_processes} processes' if num_processes > 0 else 'all processes'
    where = address or 'the detected cluster'
    return f'{where}: multi-host start: not {processes} joined within {timeout_s:g} s (coordinator_timeout_s)'


@contextlib.contextmanager
def _exit_after(deadline: float, message):
    """Ends the process with ``error: <message()>`` and exit status 1 if the block is still running at
    ``deadline`` (time.monotonic()); the block is blocked in C++ (with the GIL released) at that point."""
    done = threading.Event()

    def watch():
        if not done.wait(max(0.0, deadline - time.monotonic())):
            sys.stderr.write(f'error: {message()}\n')
            sys.stderr.flush()
            os._exit(1)  # the main thread cannot be interrupted inside XLA's connect; nothing was written yet

    watchdog = threading.Thread(target=watch, name='lwop-coordinator-watchdog', daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        done.set()
        watchdog.join()
