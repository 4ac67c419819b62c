"""runs.pipelined: results in order, the three steps really overlap, errors and early stops (no model)."""

import threading
import time

import pytest

from lwop_jax.errors import InputFileError
from lwop_jax.inference.runs import pipelined

TIMEOUT_S = 10  # a step waiting for another that never comes fails the test instead of hanging it


@pytest.mark.parametrize('enabled', [True, False])
def test_results_come_in_order(enabled):
    def network(item):
        time.sleep(0.002 * (item % 3))  # uneven network times
        return item * item

    assert list(pipelined(iter(range(20)), network, enabled)) == [(i, i * i) for i in range(20)]
    assert list(pipelined(iter([]), network, enabled)) == []
    assert list(pipelined(iter([5]), network, enabled)) == [(5, 25)]


def test_network_reading_and_the_caller_overlap():
    """While the caller handles item t - 1, the network runs item t and item t + 1 is being read: each step
    waits here for a sign of the other two, which only comes if they run at the same time."""
    network_started = {t: threading.Event() for t in range(6)}
    read_started = {t: threading.Event() for t in range(6)}
    threads = {'network': set(), 'read': set()}

    def items():
        for t in range(6):
            read_started[t].set()
            threads['read'].add(threading.get_ident())
            if t >= 2:  # item t is read while the network runs item t - 1
                assert network_started[t - 1].wait(TIMEOUT_S)
            yield t

    def network(t):
        network_started[t].set()
        threads['network'].add(threading.get_ident())
        if t + 1 < 6:  # ... and the network runs item t while item t + 1 is read
            assert read_started[t + 1].wait(TIMEOUT_S)
        return -t

    handled = []
    for t, result in pipelined(items(), network):
        if t + 1 < 6:  # the caller handles item t while the network runs item t + 1
            assert network_started[t + 1].wait(TIMEOUT_S)
        handled.append((t, result))
    assert handled == [(t, -t) for t in range(6)]
    assert threading.get_ident() not in threads['network']


def test_a_reading_error_comes_after_the_items_before_it():
    def items():
        yield from range(3)
        raise InputFileError('frame 3: cannot be read')

    handled = []
    with pytest.raises(InputFileError, match='frame 3'):
        for t, result in pipelined(items(), lambda t: t + 100):
            handled.append((t, result))
    assert handled == [(0, 100), (1, 101), (2, 102)]  # as the plain loop


def test_a_network_error_is_raised_in_the_caller():
    def network(t):
        if t == 2:
            raise RuntimeError('network failed on 2')
        return t

    handled = []
    with pytest.raises(RuntimeError, match='failed on 2'):
        for t, _ in pipelined(iter(range(5)), network):
            handled.append(t)
    assert handled == [0, 1]


def test_stopping_early_waits_for_the_workers():
    running = set()

    def network(t):
        running.add(t)
        time.sleep(0.05)
        running.discard(t)
        return t

    results = pipelined(iter(range(100)), network)
    assert next(results) == (0, 0)  # the network now runs item 1
    results.close()
    assert running == set()  # close() returned after the network finished
