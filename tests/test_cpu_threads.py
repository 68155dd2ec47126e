"""The helper threads the chunked CPU convolution runs its parts on (backends/cpu_threads.py)."""

from __future__ import annotations

import threading
import time

import pytest

from numbacnn.backends import cpu_threads


def test_every_part_runs_once_each_on_its_own_thread() -> None:
    seen: list[tuple[int, int, str, int]] = []
    lock = threading.Lock()

    def part(p: int, parts: int, tag: str) -> None:
        with lock:
            seen.append((p, parts, tag, threading.get_ident()))

    for parts in (1, 2, 4, 3):
        seen.clear()
        cpu_threads.run_parts(part, parts, "x")
        assert sorted(s[:3] for s in seen) == [(p, parts, "x") for p in range(parts)]
        assert len({s[3] for s in seen}) == parts
        last = next(s for s in seen if s[0] == parts - 1)
        assert last[3] == threading.get_ident()  # the last part on the caller's thread


def test_an_error_in_a_helper_part_reaches_the_caller_and_the_helpers_go_on() -> None:
    def part(p: int, parts: int) -> None:
        if p == 0:
            raise ValueError("part 0 failed")

    with pytest.raises(ValueError, match="part 0 failed"):
        cpu_threads.run_parts(part, 2)
    done: list[int] = []
    cpu_threads.run_parts(lambda p, parts: done.append(p), 2)
    assert sorted(done) == [0, 1]


def test_the_caller_waits_for_every_part() -> None:
    release = threading.Event()
    finished: list[int] = []

    def part(p: int, parts: int) -> None:
        if p == 0:
            release.wait(5)
            finished.append(p)
        else:
            release.set()

    cpu_threads.run_parts(part, 2)
    assert finished == [0]


def test_callers_on_several_threads_take_turns() -> None:
    results: dict[int, list[int]] = {}

    def part(p: int, parts: int, out: list[int], k: int) -> None:
        time.sleep(0.0005)  # lets the other callers' threads run meanwhile
        out.append(p * 10 + k)

    def caller(k: int) -> None:
        for _ in range(50):
            got: list[int] = []
            cpu_threads.run_parts(part, 2, got, k)
            assert sorted(got) == [k, 10 + k]
        results[k] = got

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [0, 1, 2]


def test_no_argument_is_held_after_the_call() -> None:
    import weakref

    import numpy as np

    a = np.zeros(4)
    ref = weakref.ref(a)
    cpu_threads.run_parts(lambda p, parts, arr: arr.fill(p), 2, a)
    del a
    assert ref() is None
