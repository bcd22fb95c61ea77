"""The access log's own time rendering (no libc, no time zone) against the standard library, over
four centuries of seconds: leap years, month ends, the epoch, and the millisecond part."""

from __future__ import annotations

import time

from hypothesis import example, given
from hypothesis import strategies as st

from fastgw._proxy import AccessLog, WallClock

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _log_at(wall: float) -> tuple[AccessLog, float]:
    """An access log whose clock reads `wall` at monotonic time 1000.0."""
    clock = WallClock()
    clock.tick(wall, 1000.0)
    return AccessLog(-1, "json", clock), 1000.0


@given(st.integers(min_value=0, max_value=13_000_000_000), st.integers(min_value=0, max_value=999))
@example(951_782_400, 0)  # 2000-02-29
@example(4_107_542_399, 999)  # 2100-02-28 23:59:59 (2100 is not a leap year)
@example(0, 0)
@example(1_796_436_308, 749)
def test_timestamps_match_the_standard_library(second: int, ms: int) -> None:
    log, mono = _log_at(second + ms / 1000 + 0.0004)
    g = time.gmtime(second)
    assert log.timestamp(mono).decode() == time.strftime("%Y-%m-%dT%H:%M:%S", g) + f".{ms:03d}Z"
    expected_clf = f"{g.tm_mday:02d}/{MONTHS[g.tm_mon - 1]}/{g.tm_year:04d}:" + time.strftime("%H:%M:%S", g)
    assert log.clf_time(mono).decode() == expected_clf + " +0000"


def test_time_moves_with_the_monotonic_clock_and_never_back_by_a_hair() -> None:
    clock = WallClock()
    clock.tick(1_796_436_308.0, 50.0)
    log = AccessLog(-1, "json", clock)
    assert log.timestamp(50.0123).decode().endswith(":08.012Z")
    assert log.timestamp(51.5).decode().endswith(":09.500Z")
    clock.tick(1_796_436_309.4, 51.5)  # the next tick's anchor is 0.1 s behind
    assert log.timestamp(51.5).decode().endswith(":09.500Z")  # held, not stamped before the last
    clock.tick(1_796_436_000.0, 52.0)  # the system clock stepped back 5 minutes: followed
    assert log.timestamp(52.0).decode().endswith("T02:00:00.000Z")
