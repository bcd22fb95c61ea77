"""The benchmark harness's arithmetic, without load: reading wrk's result, CPU accounting from
/proc (fastgw.loadtest, shared with `fastgw bench`), CPU placement and the medians/ratios of the
report. A wrong figure here would make every
benchmark wrong silently, hence these tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import pinning
from bench.scenarios import SCENARIOS, json_body
from fastgw.loadtest import cpu, report, wrk

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:40000/small
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.12ms  201.33us   9.77ms   91.02%
    Req/Sec    57.31k     1.02k   59.12k    80.00%
  Latency Distribution
     50%    1.09ms
     75%    1.18ms
     90%    1.30ms
     99%    1.85ms
  285114 requests in 5.00s, 38.07MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:  57012.80
Transfer/sec:      7.61MB
FASTGW_BENCH_RESULT {"requests":285114,"duration_us":5000900,"bytes":39919562,"errors":{"connect":0,"read":3,"write":0,"status":7,"timeout":0},"latency_us":{"min":61,"mean":1121.7,"stdev":201.3,"max":9770,"50":1093,"75":1181,"90":1302,"99":1851,"99.9":3010}}
"""


def test_wrk_result_line() -> None:
    r = wrk.parse_output(WRK_OUTPUT)
    assert r.requests == 285114
    assert r.duration_s == pytest.approx(5.0009)
    assert r.rps == pytest.approx(285114 / 5.0009)
    assert r.latency_us["50"] == 1093 and r.latency_us["99"] == 1851 and r.latency_us["99.9"] == 3010
    assert r.latency_us["mean"] == pytest.approx(1121.7)
    assert r.errors == {"connect": 0, "read": 3, "write": 0, "status": 7, "timeout": 0}
    assert r.error_count == 10
    assert r.as_dict()["rps"] == r.rps


def test_wrk_without_result_line_is_an_error() -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse_output(WRK_OUTPUT.rsplit("FASTGW", 1)[0])


def test_wrk_script_sets_method_and_body() -> None:
    post = next(s for s in SCENARIOS if s.method == "POST")
    text = wrk.script(post)
    assert 'wrk.method = "POST"' in text
    assert f'wrk.body = string.rep("x", {post.body_bytes})' in text
    assert wrk.MARKER in text
    assert "wrk.method" not in wrk.script(SCENARIOS[0])


def _stat(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # Fields 3..13 are state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt, majflt, cmajflt.
    return (
        f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 5 0\n"
    )


def test_parse_stat_with_awkward_command_name() -> None:
    st = cpu.parse_stat(_stat(42, "nginx: worker) (x", 7, 300, 45, 2, 1))
    assert (st.pid, st.ppid, st.ticks) == (42, 7, 348)


def _fake_proc(root: Path, stats: dict[int, str]) -> Path:
    for entry in root.iterdir():
        if entry.name.isdigit():
            (entry / "stat").unlink()
            entry.rmdir()
    for pid, text in stats.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_text(text)
    return root


def test_tree_ticks_counts_master_and_all_descendants_only(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {
            1: _stat(1, "init", 0, 5, 5),
            100: _stat(100, "master", 1, 10, 5),
            101: _stat(101, "worker 1", 100, 400, 100),
            102: _stat(102, "worker 2", 100, 300, 50),
            103: _stat(103, "helper", 102, 7, 3),
            200: _stat(200, "unrelated", 1, 999, 999),
        },
    )
    assert sorted(cpu.tree_pids(100, proc)) == [100, 101, 102, 103]
    assert cpu.tree_ticks(100, proc) == 15 + 500 + 350 + 10
    assert cpu.tree_ticks(999, proc) == 0


def test_reaped_worker_time_stays_in_the_total(tmp_path: Path) -> None:
    """A worker that dies and is reaped between the samples moves its time into the master's
    cutime/cstime; the total must not drop."""
    before = cpu.tree_ticks(
        100,
        _fake_proc(
            tmp_path,
            {
                100: _stat(100, "master", 1, 10, 0),
                101: _stat(101, "worker", 100, 400, 100),
            },
        ),
    )
    after = cpu.tree_ticks(
        100,
        _fake_proc(
            tmp_path,
            {
                100: _stat(100, "master", 1, 11, 0, cutime=450, cstime=110),
                102: _stat(102, "new worker", 100, 30, 10),
            },
        ),
    )
    assert after - before == 1 + 50 + 10 + 40


def test_us_per_request() -> None:
    # 250 ticks of 10 ms = 2.5 s of CPU over 125,000 requests = 20 µs each.
    assert cpu.us_per_request(1000, 1250, 125_000, clk_tck=100) == pytest.approx(20.0)
    assert cpu.us_per_request(0, 10, 0, clk_tck=100) is None


def test_placement() -> None:
    one = pinning.plan([0, 1], workers=1, pin=True)
    assert (one.proxy, one.load, one.wrk_threads) == ((0,), (1,), 1)
    two = pinning.plan([0, 1], workers=2, pin=True)
    assert two.proxy is None and two.load is None and "oversubscribed" in two.note
    big = pinning.plan([4, 0, 1, 2, 3, 5, 6, 7], workers=2, pin=True)
    assert (big.proxy, big.load, big.wrk_threads) == ((0, 1), (2, 3, 4, 5, 6, 7), 6)
    assert pinning.plan([0, 1, 2], workers=1, pin=False).proxy is None
    assert pinning.taskset((0, 2), ["nginx"]) == ["taskset", "-c", "0,2", "nginx"]
    assert pinning.taskset(None, ["nginx"]) == ["nginx"]


def _run(scenario: str, target: str, rps: float, p99: float, cpu_us: float | None) -> dict[str, object]:
    lat = {
        "min": 1.0,
        "mean": 1.0,
        "stdev": 0.0,
        "max": 1.0,
        "50": p99 / 2,
        "75": p99 / 2,
        "90": p99,
        "99": p99,
        "99.9": p99,
    }
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    return {
        "scenario": scenario,
        "target": target,
        "wrk": {"rps": rps, "latency_us": lat, "errors": errors},
        "proxy_cpu_us_per_request": cpu_us,
        "backend_cpu_us_per_request": None,
    }


def test_summary_medians_and_ratio_to_nginx() -> None:
    runs = [
        _run("get-small", "nginx", 50_000, 2000, 17.0),
        _run("get-small", "fastgw", 40_000, 3000, 22.0),
        _run("get-small", "nginx", 60_000, 1000, 18.0),
        _run("get-small", "fastgw", 30_000, 4000, 26.0),
        _run("get-small", "nginx", 55_000, 1500, 99.0),
        _run("get-small", "fastgw", 44_000, 3300, 24.0),
        _run("get-small", "direct", 100_000, 500, None),
    ]
    rows = {r["target"]: r for r in report.summarize(runs)}
    assert rows["nginx"]["rps"] == 55_000 and rows["nginx"]["proxy_cpu_us_per_request"] == 18.0
    assert rows["fastgw"]["rps"] == 40_000 and rows["fastgw"]["latency_us"]["99"] == 3300
    assert rows["fastgw"]["vs_nginx"]["rps"] == pytest.approx(40 / 55)
    assert rows["fastgw"]["vs_nginx"]["p99"] == pytest.approx(3300 / 1500)
    assert rows["fastgw"]["vs_nginx"]["cpu"] == pytest.approx(24 / 18)
    assert rows["direct"]["proxy_cpu_us_per_request"] is None and "vs_nginx" not in rows["direct"]


def test_json_body_is_exactly_4_kib() -> None:
    assert len(json_body().encode()) == 4096
