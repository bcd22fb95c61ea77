"""The gateway's one back-off (child restarts, Redis, JWKS fetches), the words the master logs for
a child's exit, ending children started with subprocess, and a worker's periodic jobs, which all
run from its one sweeper tick."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastgw.backoff import Backoff
from fastgw.runtime import TICK, Periodic
from fastgw.server.children import MAX_BACKOFF, SHORT_LIFE, Restarts, end_processes, exit_words


def test_backoff_doubles_from_first_up_to_most_and_starts_again_after_a_success() -> None:
    b = Backoff(0.1, 1.0)
    assert [b.failed() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert b.reset() == 0.0 and b.delay == 0.0
    assert b.failed() == 0.1


def test_backoff_whose_first_wait_is_over_its_most_waits_most() -> None:
    b = Backoff(5.0, 1.0)  # a JWKS refresh shorter than the first retry: retried at the refresh
    assert (b.failed(), b.failed()) == (1.0, 1.0)


def test_a_child_that_keeps_dying_waits_longer_each_time_and_one_that_lived_is_replaced_at_once() -> None:
    r = Restarts()
    short = SHORT_LIFE / 2
    delays = [r.after_exit(short) for _ in range(8)]
    assert delays[:3] == pytest.approx([0.1, 0.2, 0.4]) and delays[-1] == MAX_BACKOFF
    assert r.words() == f" in {MAX_BACKOFF:.1f}s"
    assert r.after_exit(SHORT_LIFE) == 0.0 and r.words() == ""
    assert r.after_exit(short) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (0, "status 0"),
        (3 << 8, "status 3"),
        (int(signal.SIGKILL), "signal SIGKILL"),
        (int(signal.SIGRTMIN) + 5, f"signal {int(signal.SIGRTMIN) + 5}"),  # no name in signal.Signals
    ],
)
def test_exit_words(status: int, words: str) -> None:
    assert exit_words(status) == words


def ticks(start: float, seconds: float, jitter: list[float]) -> list[float]:
    """Sweeper times: every TICK, each a little early or late (timers fire to the millisecond)."""
    n = int(seconds / TICK)
    return [start + (i + 1) * TICK + jitter[i % len(jitter)] for i in range(n)]


@given(
    period=st.sampled_from([TICK, 0.25, 0.5, 1.0, 2.5]),
    jitter=st.lists(st.floats(-0.004, 0.004), min_size=1, max_size=20),
    start=st.floats(0.0, 1e6),
)
def test_a_job_runs_once_per_period_on_average(period: float, jitter: list[float], start: float) -> None:
    p = Periodic()
    runs: list[float] = []
    now = start

    def job() -> None:
        runs.append(now)

    p.every(period, job, start)
    for now in ticks(start, 20.0, jitter):
        p.run_due(now)
    assert abs(len(runs) - round(20.0 / period)) <= 1
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    assert all(gap <= period + TICK + 0.01 for gap in gaps), gaps


def test_a_job_that_raises_is_logged_and_stays_scheduled_and_the_others_run(capsys: pytest.CaptureFixture[str]) -> None:
    p = Periodic()
    good: list[int] = []
    calls = 0

    def bad() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("broken job")

    p.every(TICK, bad, 0.0)
    p.every(TICK, lambda: good.append(1), 0.0)
    for now in ticks(0.0, 1.0, [0.0]):
        p.run_due(now)
    assert calls == 10 and len(good) == 10
    assert "broken job" in capsys.readouterr().err


def test_a_late_tick_runs_a_job_once_not_once_per_missed_period() -> None:
    """A loop blocked for seconds (the master then kills the worker for its silence) must not
    be answered with a burst of heartbeats when it wakes up."""
    p = Periodic()
    runs: list[int] = []
    p.every(1.0, lambda: runs.append(1), 0.0)
    p.run_due(5.0)
    p.run_due(5.1)
    assert runs == [1]
    p.run_due(6.0)
    assert runs == [1, 1]


def test_a_job_added_by_a_running_job_starts_one_period_later() -> None:
    """The drain check is added by the heartbeat when the status pipe fails."""
    p = Periodic()
    added: list[int] = []

    def heartbeat() -> None:
        if not added and len(p._jobs) == 1:
            p.every(1.0, lambda: added.append(1), 0.1)

    p.every(TICK, heartbeat, 0.0)
    p.run_due(0.1)
    p.run_due(0.2)
    assert added == []
    p.run_due(1.1)
    assert added == [1]


def test_end_processes_kills_what_ignores_term_and_reaps_everything() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                               "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    end_processes([stubborn, polite], 0.5)
    assert (stubborn.returncode, polite.returncode) == (-signal.SIGKILL, -signal.SIGTERM)
    stubborn.stdout.close()
