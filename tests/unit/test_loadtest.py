"""fastgw.loadtest and the cost curves without load: wrk request rotation, added latency, Locust's
CSVs, request mixes, loopback URLs, memory of a process tree, the plots, the growth check, the
Locust verdict, and `fastgw bench`'s argument parsing. No speed is asserted anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import locust_run
from bench.curves import common
from fastgw.loadtest import command, locust, memory, mix, plot, report, tools, urls, wrk

# -- wrk ------------------------------------------------------------------------------------------


def test_rotate_generates_requests_at_init() -> None:
    lua = wrk.rotate(100_000, path_format="/r%d/items", header="X-Client", value_format="client-%d")
    assert 'local path_format = "/r%d/items"' in lua and 'local header_name = "X-Client"' in lua
    assert "local count = 100000" in lua and "request = function()" in lua and "init = function(args)" in lua
    # The values are generated in Lua, not listed: the script stays small whatever the count.
    assert len(lua) < 2000
    text = wrk.script(wrk.Shape(), lua)
    assert wrk.MARKER in text and lua in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0, "path_format": "/%d"},
        {"count": 5},
        {"count": 5, "path_format": "/no-number"},
        {"count": 5, "path_format": '/"%d'},
        {"count": 5, "path_format": "/%d/%d"},
        {"count": 5, "header": "X-Key"},
        {"count": 5, "header": "X Key", "value_format": "k%d"},
    ],
)
def test_rotate_refuses_what_it_cannot_send(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        wrk.rotate(**kwargs)


def test_wrk_command_carries_shape_and_pinning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wrk, "binary", lambda: "/usr/bin/wrk")
    shape = wrk.Shape("POST", 10, (("X-A", "1"),))
    argv = wrk.command("http://127.0.0.1:1/x", shape, wrk.Load(2, 1, 3), tmp_path / "s.lua", (1,))
    assert argv[:4] == ["taskset", "-c", "1", "/usr/bin/wrk"]
    assert "-c2" in argv and "-d3s" in argv and argv[-3:] == ["-H", "X-A: 1", "http://127.0.0.1:1/x"]


# -- report -----------------------------------------------------------------------------------------


def _run(target: str, rps: float, p50: float, p99: float, cpu: float | None = None) -> dict[str, Any]:
    lat = {"min": 1.0, "mean": p50, "stdev": 0.0, "max": p99, "50": p50, "75": p50, "90": p99, "99": p99, "99.9": p99}
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    return {"scenario": "request", "target": target, "wrk": {"rps": rps, "latency_us": lat, "errors": errors},
            "proxy_cpu_us_per_request": cpu}


def test_added_latency_is_the_difference_of_median_percentiles() -> None:
    runs = [
        _run("direct", 100, 300, 900), _run("gateway", 80, 500, 1500, 20.0),
        _run("direct", 110, 200, 1000), _run("gateway", 90, 450, 1200, 22.0),
        _run("direct", 90, 250, 800), _run("gateway", 70, 400, 1900, 30.0),
    ]
    summary = report.summarize(runs, subject="gateway", reference=None)
    assert not any(k.startswith("vs_") for row in summary for k in row)
    gw = next(r for r in summary if r["target"] == "gateway")
    assert gw["proxy_cpu_us_per_request"] == 22.0 and gw["rps"] == 80
    added = report.added_latency(summary, "gateway", "direct")
    assert added == {"request": {"50": 450 - 250, "99": 1500 - 900}}
    assert report.added_latency(summary, "gateway", "nginx") == {}


def test_summary_ratio_to_any_reference() -> None:
    summary = report.summarize([_run("a", 50, 1, 4, 10.0), _run("b", 100, 1, 2, 5.0)], subject="a", reference="b")
    row = next(r for r in summary if r["target"] == "a")
    assert row["vs_b"]["rps"] == 0.5 and row["vs_b"]["p99"] == 2 and row["vs_b"]["cpu"] == 2


def test_write_json_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report.write_json(path, {"a": 1})
    report.write_json(path, {"b": "µs"})
    assert path.read_text(encoding="utf-8").count("µs") == 1 and not list(tmp_path.glob("*.tmp"))


# -- Locust ---------------------------------------------------------------------------------------

_PCTS = "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
# Locust's own column names (2.x), verbatim.
STATS = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    f"Max Response Time,Average Content Size,Requests/s,Failures/s,{_PCTS}\n"
    "GET,GET small,600,0,3,3.4,1,40,12,10.0,0.0,3,4,4,5,6,8,10,12,40,40,40\n"
    ",Aggregated,1000,2,4,4.1,1,55,1000,16.7,0.03,4,5,6,6,8,10,13,15,55,55,55\n"
)
HISTORY = (
    f"Timestamp,User Count,Type,Name,Requests/s,Failures/s,{_PCTS},Total Request Count,Total Failure Count,"
    "Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,"
    "Total Average Content Size\n"
    "1700000000,10,,Aggregated,0.000000,0.000000,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0.0,0,0,0\n"
    "1700000001,10,GET,GET small,10.0,0.0,3,4,4,5,6,8,10,12,40,40,40,10,0,3,3.4,1,40,12\n"
    "1700000001,10,,Aggregated,16.0,0.0,4,5,6,6,8,10,13,15,55,55,55,16,0,4,4.1,1,55,1000\n"
)


def test_locust_csvs(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(STATS)
    (tmp_path / "h.csv").write_text(HISTORY)
    final = locust.read_final(tmp_path / "s.csv")
    assert final["Aggregated"] == {"requests": 1000, "failures": 2, "rps": 16.7, "p50": 4.0, "p95": 10.0,
                                   "p99": 15.0, "max": 55.0}
    assert final["GET small"]["p99"] == 12.0
    history = locust.read_history(tmp_path / "h.csv")
    assert [r["t"] for r in history] == [1700000000, 1700000001]  # Aggregated rows only
    assert history[0]["p99"] is None and history[1]["p99"] == 15.0 and history[1]["requests"] == 16
    assert locust.read_final(tmp_path / "missing.csv") == {} and locust.read_history(tmp_path / "missing.csv") == []


def test_locust_added() -> None:
    assert locust.added({"p50": 5.0, "p95": 9.0, "p99": 20.0}, {"p50": 3.0, "p95": 9.0, "p99": 12.0}) == {
        "p50": 2.0, "p95": 0.0, "p99": 8.0}
    assert locust.added({"p50": None, "p95": 1.0, "p99": 2.0}, None) == {"p50": None, "p95": None, "p99": None}


def test_locust_command(tmp_path: Path) -> None:
    argv = locust.command("http://127.0.0.1:1", tmp_path / "m.json", locust.Settings(300, 30, 12, 2), tmp_path / "p")
    assert argv[argv.index("-f") + 1] == str(locust.LOCUSTFILE) and locust.LOCUSTFILE.exists()
    assert argv[argv.index("--user-rps") + 1] == "10" and argv[argv.index("-t") + 1] == "12s"
    assert argv[-2:] == ["--processes", "2"] and "--csv-full-history" in argv


def _outcome(tmp_path: Path, name: str, final: dict[str, Any]) -> locust.Outcome:
    return locust.Outcome(0, final, [], tmp_path / name)


def _total(p99: float, failures: int = 0) -> dict[str, Any]:
    return {"Aggregated": {"requests": 100, "failures": failures, "rps": 10.0, "p50": 2.0, "p95": 5.0, "p99": p99,
                           "max": 30.0}}


def test_locust_run_fails_on_added_p99_over_the_bound(tmp_path: Path) -> None:
    outcomes = {"direct": _outcome(tmp_path, "d", _total(10.0)), "fastgw": _outcome(tmp_path, "g", _total(16.0))}
    problems, added = locust_run.verdict(outcomes, None, 5.0)
    assert added is not None and added["p99"] == 6.0
    assert len(problems) == 1 and "adds +6 ms to the p99" in problems[0] and "--max-added-p99-ms 5" in problems[0]
    assert locust_run.verdict(outcomes, None, 6.0)[0] == []
    assert locust_run.verdict(outcomes, 15.0, None)[0][0].startswith("p99 through fastgw 16 ms exceeds")


def test_locust_run_fails_on_failed_requests_and_missing_stats(tmp_path: Path) -> None:
    outcomes = {"direct": _outcome(tmp_path, "d", {}), "fastgw": _outcome(tmp_path, "g", _total(16.0, failures=3))}
    problems, added = locust_run.verdict(outcomes, None, 100.0)
    assert any("direct: Locust wrote no statistics" in p for p in problems)
    assert any("3 of 100 requests failed" in p for p in problems)
    assert added is not None and added["p99"] is None and any("adds - to the p99" in p for p in problems)


def test_locust_run_added_bound_needs_the_direct_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        locust_run.main(["--no-direct", "--max-added-p99-ms", "5"])
    assert exc.value.code == 2 and "needs the direct run" in capsys.readouterr().err


# -- mixes, URLs, tools ---------------------------------------------------------------------------------


def test_mix_round_trip(tmp_path: Path) -> None:
    endpoints = (
        mix.Endpoint("a", "GET", "/a", 3),
        mix.Endpoint("b", "POST", "/b", 1, body=b'{"x":"\xe9"}', headers={"Content-Type": "application/json"},
                     expect=(200, 429)),
        mix.Endpoint("c", "GET", "/c", expect=()),
    )
    mix.dump(endpoints, tmp_path / "m.json")
    assert mix.load(tmp_path / "m.json") == endpoints
    assert endpoints[1].accepts(429) and not endpoints[1].accepts(201)
    assert endpoints[2].accepts(302) and not endpoints[2].accepts(404)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError):
        mix.load(tmp_path / "bad.json")


def test_loopback_urls() -> None:
    assert urls.parse_loopback_url("http://localhost:8080/a?b=1", "URL") == ("127.0.0.1", 8080, "/a?b=1")
    assert urls.parse_loopback_url("http://127.1.2.3", "URL") == ("127.1.2.3", 80, "/")
    assert urls.parse_loopback_url("http://[::1]:9/x", "URL", allow_ipv6=True) == ("::1", 9, "/x")
    assert urls.http_url("::1", 9, "/x") == "http://[::1]:9/x"
    for bad in ("http://192.0.2.1/", "https://127.0.0.1/", "http://example.com/", "http://127.0.0.1:99999/"):
        with pytest.raises(ValueError):
            urls.parse_loopback_url(bad, "URL")
    with pytest.raises(ValueError, match="IPv6"):
        urls.parse_loopback_url("http://[::1]:9/x", "URL")


def test_missing_tools_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(tools.MissingTool, match="apt-get install wrk"):
        tools.wrk_binary()
    with pytest.raises(tools.MissingTool, match=r"pip install 'fastgw\[bench\]'"):
        tools.require_module("no_such_module_for_sure", "the plot")


# -- memory ---------------------------------------------------------------------------------------------

_ALLOCATOR = """
import sys
print("ready", flush=True)
sys.stdin.readline()
block = bytearray(64 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
del block
print("done", flush=True)
sys.stdin.readline()
"""


def test_peak_watch_sees_a_spike_that_is_gone_at_the_end() -> None:
    child = subprocess.Popen([sys.executable, "-c", _ALLOCATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        assert memory.tree_rss(child.pid) > 0
        with memory.PeakWatch(child.pid) as watch:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"
        peak = watch.result
        assert peak is not None
        assert peak.growth >= 60 << 20, peak  # the 64 MiB block, freed before the watch ended
        assert peak.as_dict()["peak_method"] in ("hwm", "sampled")
    finally:
        child.kill()
        child.wait()
    assert memory.tree(child.pid) == [] and memory.tree_rss(child.pid) == 0


# -- plots --------------------------------------------------------------------------------------------


def test_plots_are_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    summary = report.summarize([_run("direct", 100, 300, 900), _run("gateway", 80, 500, 1500, 20.0)],
                               subject="gateway", reference=None)
    plot.bars([{"summary": summary, "label": "case"}], tmp_path / "bars.png", "t")
    history = [{"t": 1, "rps": 10.0, "failures_per_s": 0.0, "p50": 1.0, "p95": 2.0, "p99": 3.0},
               {"t": 2, "rps": 11.0, "failures_per_s": 0.0, "p50": 1.0, "p95": 2.0, "p99": 4.0}]
    plot.timeline({"direct": history, "fastgw": history}, tmp_path / "timeline.png", "t")
    panel = plot.Panel("match", "ns", {"fastgw": [(10, 90.0), (1000, None), (100000, 120.0)]})  # type: ignore[list-item]
    plot.curves([panel, plot.Panel("empty", "")], tmp_path / "curves.png", "t", "routes")
    for name in ("bars", "timeline", "curves"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    plot.timeline({"x": []}, tmp_path / "none.png", "t")
    assert not (tmp_path / "none.png").exists()


# -- the growth check of the curves ----------------------------------------------------------------


def test_growth_exponents_and_defects() -> None:
    metrics = [common.Metric("t", "time", "s", 1.0), common.Metric("rps", "req/s", "", None)]
    points = [
        {"x": 10, "target": "a", "t": 1.0, "rps": 5.0},
        {"x": 1000, "target": "a", "t": 100.0, "rps": 5.0},  # linear: as expected
        {"x": 100000, "target": "a", "t": 1e6, "rps": 1.0},  # ×10,000 for ×100: quadratic
        {"x": 10, "target": "b", "t": None},
        {"x": 1000, "target": "b", "t": 2.0},
    ]
    steps = common.growth(points, metrics)
    t_steps = [s for s in steps if s["metric"] == "t"]
    assert [(s["target"], s["from"], s["to"]) for s in t_steps] == [("a", 10, 1000), ("a", 1000, 100000)]
    assert t_steps[0]["exponent"] == pytest.approx(1.0) and not t_steps[0]["defect"]
    assert t_steps[1]["exponent"] == pytest.approx(2.0) and t_steps[1]["defect"]
    assert not any(s["defect"] for s in steps if s["metric"] == "rps")  # unchecked figure
    assert [s["to"] for s in common.defects(steps)] == [100000]
    assert common.exponent(10, 0.0, 100, 1.0) is None and common.exponent(10, 1.0, 10, 2.0) is None
    # Within the tolerance: a constant cost that grows 1.5× over 100× (cache effects) is not flagged.
    within = common.growth([{"x": 1, "target": "a", "c": 1.0}, {"x": 100, "target": "a", "c": 1.5}],
                           [common.Metric("c", "c", "", 0.0)])
    assert not within[0]["defect"]


def test_point_lists_and_human_sizes() -> None:
    assert common.parse_ints("10k,64,1M") == (64, 10_000, 1_000_000)
    assert common.parse_ints("4KiB,100MiB,1MiB") == (4096, 2**20, 100 * 2**20)
    for bad in ("", "x", "0", "-5"):
        with pytest.raises(ValueError):
            common.parse_ints(bad)
    assert [common.human(x) for x in (64, 1000, 100 * 2**20, 4096, 10_000)] == ["64", "1k", "100Mi", "4Ki", "10k"]


# -- fastgw bench's command line ---------------------------------------------------------------------


def _args(*argv: str) -> Any:
    from fastgw.cli import build_parser

    return build_parser().parse_args(["bench", *argv])


def test_bench_arguments() -> None:
    args = _args("http://127.0.0.1:9/x", "-H", "Authorization: Bearer a:b", "-X", "post", "--body-bytes", "10")
    assert args.header == [("Authorization", "Bearer a:b")] and args.method == "post" and args.body_bytes == 10
    assert args.plot is None and args.func is command.main
    assert _args("http://127.0.0.1:9/", "--no-plot").plot is False
    for bad in (["-H", "no colon"], ["-r", "0"], ["--connections", "x"], ["-c", "a.yaml", "--gateway", "http://x"]):
        with pytest.raises(SystemExit):
            _args("http://127.0.0.1:9/", *bad)


def test_bench_sends_to_the_configs_first_listen_address(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("listen: [{address: '0.0.0.0:18123'}]\nupstreams: {u: {targets: ['127.0.0.1:9']}}\n"
                      "routes: [{match: {prefix: /}, upstream: u}]\n")
    assert command._listen_target(str(config), "/") == ("127.0.0.1", 18123)
    config.write_text(config.read_text().replace("0.0.0.0", "192.0.2.7"))
    with pytest.raises(command.Usage, match="loopback"):
        command._listen_target(str(config), "/")


def test_raise_nofile_never_lowers_the_limit() -> None:
    import resource

    from fastgw.server.fdlimit import raise_nofile

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert raise_nofile(16) == soft
    assert os.sysconf("SC_OPEN_MAX") == soft


def test_a_curve_run_says_how_it_ended(tmp_path: Path) -> None:
    """Every curve ends through Curve.run: measured points are written whatever happened, an error
    is said in one line with exit status 1, an interrupt is passed on."""
    import json

    from fastgw.loadtest.procs import ServerError

    metric = common.Metric("v", "value", "", None)

    def curve_with(points: Any) -> tuple[int | None, dict[str, Any], list[str]]:
        lines: list[str] = []
        curve = common.Curve("test", "x", [metric], {}, tmp_path, need_fastgw=False)
        try:
            code: int | None = curve.run(lambda: points(curve, lines.append), lines.append, ["a note"], False)
        except KeyboardInterrupt:
            code = None
        assert not curve.tmp.exists(), "the run's temporary files are removed"
        return code, json.loads(curve.json_path.read_text()), lines

    def one_point(curve: common.Curve, emit: Any) -> None:
        curve.add({"x": 1, "target": "t", "v": 2.0}, emit)

    def fails(curve: common.Curve, emit: Any) -> None:
        one_point(curve, emit)
        raise ServerError("the proxy did not start")

    def interrupted(curve: common.Curve, emit: Any) -> None:
        raise KeyboardInterrupt

    code, doc, lines = curve_with(one_point)
    assert (code, doc["status"], len(doc["points"]), doc["notes"]) == (0, "complete", 1, ["a note"])
    code, doc, lines = curve_with(fails)
    assert (code, doc["status"], len(doc["points"])) == (1, "aborted: the proxy did not start", 1)
    assert "\nERROR: the proxy did not start" in lines
    code, doc, _ = curve_with(interrupted)
    assert (code, doc["status"]) == (None, "interrupted")
