"""Operating the gateway (issue 13): a second instance is refused and its rival named, `fastgw
reload` reports the outcome, run-time errors name the config line, process titles, the CLI's
basics and the admin API's manners."""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import yaml

from fastgw.config.model import Address
from fastgw.server.procinfo import listening_inodes
from tests.support.client import LOOPBACK, http_get
from tests.support.procs import PYTHON, REPO, Backend, Gateway, free_port, gateway_config

pytestmark = pytest.mark.e2e


def fastgw(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`python -m fastgw ARGS`, its output captured; a command still running after `timeout`
    (the bug some tests guard against: a second instance that starts) is killed with its group."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "fastgw", *args], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"`fastgw {' '.join(args)}` still ran after {timeout}s:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class PortHolder:
    """Another process listening on a loopback port (with SO_REUSEPORT when `reuseport`, which
    the kernel would let a gateway share); it exits when its stdin closes."""

    def __init__(self, reuseport: bool) -> None:
        code = (
            "import socket, sys\n"
            "s = socket.socket()\n"
            f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, {int(reuseport)})\n"
            "s.bind(('127.0.0.1', 0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [PYTHON, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process, as a stale pidfile may name."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line of `path` containing `text`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def admin_request(port: int, method: str, path: str, headers: str = "") -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: admin\r\n{headers}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


# ---- defect 1: a second instance is refused ---------------------------------------------------


def test_second_instance_on_the_same_listen_address_is_refused_and_names_the_first(
    backend: Backend, tmp_path: Path
) -> None:
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        config = gateway_config(backend.port, listen=g.config["listen"], admin={"address": f"127.0.0.1:{free_port()}"})
        path = write_config(tmp_path / "second.yaml", config)
        out = fastgw("run", "-c", str(path))
        line = line_of(path, "address: 127.0.0.1:%d" % g.port)
        assert out.returncode == 1, out.stderr
        assert f"{path}:{line}: listen[0].address: cannot listen on 127.0.0.1:{g.port}: address already in use by " \
            in out.stderr
        assert f"pid {g.master_pid} (fastgw: master" in out.stderr
        assert "Traceback" not in out.stderr and "ready:" not in out.stderr
        assert http_get(g.port, "/echo").status == 200


@pytest.mark.parametrize("reuseport", [True, False], ids=["reuseport", "plain"])
def test_listen_address_held_by_another_process_is_refused_and_named(
    backend: Backend, tmp_path: Path, reuseport: bool
) -> None:
    with PortHolder(reuseport) as holder:
        config = gateway_config(backend.port, listen=[{"address": f"127.0.0.1:{holder.port}"}],
                                admin={"address": f"127.0.0.1:{free_port()}"})
        path = write_config(tmp_path / "gateway.yaml", config)
        out = fastgw("run", "-c", str(path))
    assert out.returncode == 1, out.stderr
    expected = f"listen[0].address: cannot listen on 127.0.0.1:{holder.port}: address already in use by "
    assert f"{expected}pid {holder.pid} (" in out.stderr
    assert "Traceback" not in out.stderr


def test_second_instance_with_the_same_pidfile_is_refused(backend: Backend, tmp_path: Path) -> None:
    pidfile = tmp_path / "fastgw.pid"
    with Gateway(gateway_config(backend.port, pidfile=str(pidfile)), tmp_path) as g:
        config = gateway_config(backend.port, pidfile=str(pidfile), listen=[{"address": f"127.0.0.1:{free_port()}"}],
                                admin={"address": f"127.0.0.1:{free_port()}"})
        path = write_config(tmp_path / "second.yaml", config)
        out = fastgw("run", "-c", str(path))
        assert out.returncode == 1, out.stderr
        assert f"{path}:{line_of(path, 'pidfile:')}: pidfile: {pidfile} names fastgw master {g.master_pid}, " \
            "which is running" in out.stderr
        assert int(pidfile.read_text()) == g.master_pid  # the first keeps its pidfile
        assert "Traceback" not in out.stderr


def test_stale_pidfile_naming_another_process_is_replaced(
    backend: Backend, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pidfile = tmp_path / "fastgw.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    with Gateway(gateway_config(backend.port, pidfile=str(pidfile)), tmp_path) as g:
        assert int(pidfile.read_text()) == g.master_pid
    assert sleeper.poll() is None


# ---- defect 2: reload reports its outcome -----------------------------------------------------


def test_reload_command_waits_for_the_new_generation(backend: Backend, tmp_path: Path) -> None:
    pidfile = tmp_path / "fastgw.pid"
    with Gateway(gateway_config(backend.port, pidfile=str(pidfile)), tmp_path) as g:
        out = fastgw("reload", "-c", str(g.config_path))
        assert out.returncode == 0, out.stderr
        assert f"reloaded: master {g.master_pid} serves generation 2" in out.stdout
        health = g.healthz()  # no waiting: the command returned once generation 2 served
        assert health["generation"] == 2
        assert health["last_reload"]["result"] == "ok" and health["last_reload"]["error"] is None


def test_reload_command_reports_a_listen_address_in_use(backend: Backend, tmp_path: Path) -> None:
    pidfile = tmp_path / "fastgw.pid"
    with Gateway(gateway_config(backend.port, pidfile=str(pidfile)), tmp_path) as g, PortHolder(True) as holder:
        listening = len(listening_inodes(Address("127.0.0.1", g.port)))
        assert listening == 2  # one socket per worker slot
        config = dict(g.config)
        config["listen"] = [*g.config["listen"], {"address": f"127.0.0.1:{holder.port}"}]
        config["workers"] = 3  # a third socket on listen[0] is made before listen[1] fails
        write_config(g.config_path, config)
        out = fastgw("reload", "-c", str(g.config_path))
        assert out.returncode == 1, (out.stdout, out.stderr)
        where = f"{g.config_path}:{line_of(g.config_path, str(holder.port))}: listen[1].address"
        expected = f"{where}: cannot listen on 127.0.0.1:{holder.port}: address already in use by pid {holder.pid}"
        assert "fastgw: reload failed: " in out.stderr and expected in out.stderr
        g.wait_line(re.escape(expected))
        health = g.healthz()
        assert health["generation"] == 1
        assert health["last_reload"]["result"] == "failed" and expected in health["last_reload"]["error"]
        assert http_get(g.port, "/echo").status == 200
        # Nothing is left listening that no worker serves.
        assert len(listening_inodes(Address("127.0.0.1", g.port))) == listening


def test_reload_command_reports_an_invalid_config_seen_by_the_master(backend: Backend, tmp_path: Path) -> None:
    """The file changed between the command's own check and the master's read: the outcome is
    still the master's, with the problem lines."""
    pidfile = tmp_path / "fastgw.pid"
    with Gateway(gateway_config(backend.port, pidfile=str(pidfile)), tmp_path) as g:
        resp = http_get(g.admin_port, "/reload")  # GET: not allowed, nothing happens
        assert resp.status == 405
        g.config_path.write_text(g.config_path.read_text().replace("upstream: backend", "upstream: missing"))
        out = fastgw("reload", "--pidfile", str(pidfile))
        assert out.returncode == 1
        assert "reload failed: the new configuration is invalid" in out.stderr
        assert re.search(r"gateway\.yaml:\d+: routes\[0\]\.upstream", out.stderr)
        last = g.healthz()["last_reload"]
        assert last["result"] == "failed" and "routes[0].upstream" in last["error"]


def test_post_reload_is_numbered_and_its_outcome_shows_in_healthz(backend: Backend, tmp_path: Path) -> None:
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        assert g.healthz()["last_reload"] is None
        start = len(g.lines)
        data = admin_request(g.admin_port, "POST", "/reload")
        assert data.startswith(b"HTTP/1.1 202 Accepted\r\n"), data
        g.wait_ready(generation=2, start=start)
        last = g.healthz()["last_reload"]
        assert last["result"] == "ok" and last["generation"] == 2 and last["request"] >= 1


@pytest.mark.parametrize("command", ["reload", "stop"])
def test_a_stale_pidfile_naming_another_process_is_not_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], command: str
) -> None:
    pidfile = tmp_path / "fastgw.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    out = fastgw(command, "--pidfile", str(pidfile))
    assert out.returncode == 1
    assert f"pidfile {pidfile} names pid {sleeper.pid}, but that is not a fastgw master but sleep 60" in out.stderr
    assert "nothing was signalled" in out.stderr
    assert sleeper.poll() is None  # SIGHUP or SIGTERM would have ended it


# ---- defect 3: run-time errors with a place ---------------------------------------------------


def test_pidfile_in_a_missing_directory_is_refused_by_check_and_run(backend: Backend, tmp_path: Path) -> None:
    config = gateway_config(backend.port, pidfile=str(tmp_path / "nowhere" / "fastgw.pid"),
                            listen=[{"address": f"127.0.0.1:{free_port()}"}])
    path = write_config(tmp_path / "gateway.yaml", config)
    expected = f"{path}:{line_of(path, 'pidfile:')}: pidfile: directory {tmp_path}/nowhere does not exist"
    for command in ("check", "run"):
        out = fastgw(command, "-c", str(path))
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and "Traceback" not in out.stderr


def test_access_log_in_a_missing_directory_is_refused_by_check_and_run(backend: Backend, tmp_path: Path) -> None:
    config = gateway_config(backend.port, access_log={"path": str(tmp_path / "nowhere" / "access.log")},
                            listen=[{"address": f"127.0.0.1:{free_port()}"}])
    path = write_config(tmp_path / "gateway.yaml", config)
    expected = f"{path}:{line_of(path, '  path:')}: access_log.path: directory {tmp_path}/nowhere does not exist"
    for command in ("check", "run"):
        out = fastgw(command, "-c", str(path))
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and "Traceback" not in out.stderr


def test_a_pidfile_the_master_cannot_write_is_a_placed_error(backend: Backend, tmp_path: Path) -> None:
    """What slips past the checks (here the pidfile given on the command line) is still
    reported with the config's place, never as a traceback."""
    config = gateway_config(backend.port, listen=[{"address": f"127.0.0.1:{free_port()}"}])
    path = write_config(tmp_path / "gateway.yaml", config)
    out = fastgw("run", "-c", str(path), "--pidfile", str(tmp_path / "nowhere" / "fastgw.pid"))
    assert out.returncode == 1, out.stderr
    assert f"{path}:1: pidfile: cannot write {tmp_path}/nowhere/fastgw.pid: No such file or directory" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_listen_host_that_does_not_resolve_is_refused_by_check(backend: Backend, tmp_path: Path) -> None:
    config = gateway_config(backend.port, listen=[{"address": "no-such-host.invalid:8080"}])
    path = write_config(tmp_path / "gateway.yaml", config)
    out = fastgw("check", "-c", str(path))
    assert out.returncode == 2
    assert f"{path}:{line_of(path, 'no-such-host')}: listen[0].address: cannot resolve host " in out.stderr


# ---- defects 4 and 5: what the gateway says about itself --------------------------------------


STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z fastgw: ")


def test_stderr_lines_carry_a_utc_timestamp(backend: Backend, tmp_path: Path) -> None:
    before = time.time()
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        g.reload()
        lines = list(g.lines)
    after = time.time()
    assert len(lines) >= 3
    for line in lines:
        m = STAMPED.match(line)
        assert m is not None, line
        stamp = calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float(m.group(1)[19:])
        assert before - 0.01 <= stamp <= after + 0.01, line


def test_stderr_lines_have_no_timestamp_when_stderr_is_the_journal(backend: Backend, tmp_path: Path) -> None:
    """systemd stamps journal lines itself and says so with JOURNAL_STREAM=DEVICE:INODE."""
    path = write_config(tmp_path / "gateway.yaml",
                        gateway_config(backend.port, listen=[{"address": f"127.0.0.1:{free_port()}"}]))
    missing = str(tmp_path / "nowhere" / "fastgw.pid")  # refused by the master: it logs and exits
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    try:
        proc = subprocess.run([PYTHON, "-m", "fastgw", "run", "-c", str(path), "--pidfile", missing], cwd=REPO, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_end, timeout=30)
        os.close(write_end)
        write_end = -1
        with os.fdopen(read_end, "rb") as f:
            read_end = -1
            err = f.read().decode()
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    assert proc.returncode == 1
    assert err.startswith(f"fastgw: {path}:"), err


def test_stderr_says_where_the_gateway_listens(backend: Backend, tmp_path: Path) -> None:
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        g.wait_line(rf"fastgw: listening on 127\.0\.0\.1:{g.port} \(admin API on 127\.0\.0\.1:{g.admin_port}\)$")


def test_version() -> None:
    out = fastgw("--version")
    assert out.returncode == 0
    assert re.fullmatch(r"fastgw \d+\.\d+\.\d+\S* \(Python 3\.\d+\.\d+, compiled core\)\n", out.stdout), out.stdout


def _title(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def test_process_titles(backend: Backend, tmp_path: Path) -> None:
    config = gateway_config(backend.port)
    config["upstreams"]["backend"]["health"] = {"path": "/healthz", "interval": "1s"}
    with Gateway(config, tmp_path) as g:
        assert _title(g.master_pid) == f"fastgw: master (generation 1) -c {g.config_path}"
        assert sorted(_title(p) for p in g.workers) == ["fastgw: worker 0 (generation 1)",
                                                        "fastgw: worker 1 (generation 1)"]
        children = Path(f"/proc/{g.master_pid}/task/{g.master_pid}/children").read_text().split()
        titles = sorted(_title(int(p)) for p in children)
        assert "fastgw: checker (generation 1)" in titles
        assert g.reload() == 2
        assert _title(g.master_pid).startswith("fastgw: master (generation 2)")
        assert {_title(p) for p in g.workers} == {"fastgw: worker 0 (generation 2)", "fastgw: worker 1 (generation 2)"}


def test_demo_on_a_busy_port_names_it_and_how_to_pick_another() -> None:
    with PortHolder(False) as holder:
        out = fastgw("demo", "--port", str(holder.port), "--admin-port", str(free_port()),
                     "--backend-port", str(free_port()), timeout=20)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{holder.port}: address already in use by pid {holder.pid}" in out.stderr
    assert f"make run PORT={holder.port + 1}" in out.stderr and f"--port {holder.port + 1}" in out.stderr


# ---- the admin API ----------------------------------------------------------------------------


def test_admin_statuses_have_reason_phrases_and_405_has_allow(backend: Backend, tmp_path: Path) -> None:
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        head, _, _ = admin_request(g.admin_port, "DELETE", "/healthz").partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 405 Method Not Allowed"
        assert b"Allow: GET, HEAD" in lines
        head, _, _ = admin_request(g.admin_port, "GET", "/reload").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"\r\nAllow: POST" in head
        assert admin_request(g.admin_port, "GET", "/nothing").startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert admin_request(g.admin_port, "GET", "/healthz").startswith(b"HTTP/1.1 200 OK\r\n")
        head, _, body = admin_request(g.admin_port, "HEAD", "/routes").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b""


def test_admin_serves_others_while_a_client_stalls_and_closes_the_staller(backend: Backend, tmp_path: Path) -> None:
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        stalled = [socket.create_connection((LOOPBACK, g.admin_port), timeout=10) for _ in range(3)]
        try:
            for s in stalled:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a")  # half a head, then nothing
            started = time.monotonic()
            for _ in range(5):
                assert http_get(g.admin_port, "/healthz", timeout=2).status == 200
            assert time.monotonic() - started < 2
            # The stalled exchanges are cut after the admin's exchange timeout (5 s).
            for s in stalled:
                assert s.recv(1) == b""
        finally:
            for s in stalled:
                s.close()
        assert time.monotonic() - started < 8


def test_admin_answers_a_slow_reader_in_full(backend: Backend, tmp_path: Path) -> None:
    routes = [{"match": {"prefix": f"/r{i}"}, "upstream": "backend"} for i in range(300)]
    with Gateway(gateway_config(backend.port, routes=routes), tmp_path) as g:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(10)
        slow.connect((LOOPBACK, g.admin_port))
        try:
            slow.sendall(b"GET /routes HTTP/1.1\r\nHost: a\r\n\r\n")
            assert http_get(g.admin_port, "/healthz", timeout=2).status == 200
            data = b""
            while chunk := slow.recv(1024):
                data += chunk
        finally:
            slow.close()
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        assert len(body) == length > 30_000


TOKEN = "test-admin-token-0123456789"


def test_admin_token_is_required_on_every_endpoint(backend: Backend, tmp_path: Path) -> None:
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        g.config["admin"]["token"] = TOKEN
        g.write_config()
        # The admin listener started without a token; a reload brings the new one in at once.
        assert g.reload() == 2
        for method, path in (("GET", "/healthz"), ("GET", "/config"), ("POST", "/reload"), ("GET", "/nothing")):
            head = admin_request(g.admin_port, method, path).partition(b"\r\n\r\n")[0]
            assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), (path, head)
            assert b'\r\nWWW-Authenticate: Bearer realm="fastgw admin"' in head
        wrong = admin_request(g.admin_port, "GET", "/healthz", "Authorization: Bearer wrong-token-0123456789\r\n")
        assert wrong.startswith(b"HTTP/1.1 401 ")
        ok = admin_request(g.admin_port, "GET", "/healthz", f"Authorization: Bearer {TOKEN}\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and b'"generation": 2' in ok
        ok = admin_request(g.admin_port, "GET", "/healthz", f"authorization: bearer {TOKEN}\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")


def test_admin_off_loopback_without_a_token_never_starts(backend: Backend, tmp_path: Path) -> None:
    port = free_port()
    config = gateway_config(backend.port, listen=[{"address": f"127.0.0.1:{free_port()}"}],
                            admin={"address": f"0.0.0.0:{port}"})
    path = write_config(tmp_path / "gateway.yaml", config)
    out = fastgw("run", "-c", str(path))
    assert out.returncode == 2
    assert f"{path}:{line_of(path, f'0.0.0.0:{port}')}: admin.address: 0.0.0.0:{port} is not a loopback address, " \
        "so the admin API needs a token" in out.stderr


def test_config_endpoint_shows_the_effective_config_without_secrets(backend: Backend, tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN + "\n")
    config = gateway_config(
        backend.port,
        rate_limits={"shared": {"rate": "100/s", "scope": "cluster", "redis": "redis://app:s3cret@127.0.0.1:1/0"}},
    )
    with Gateway(config, tmp_path) as g:
        g.config["admin"]["token_file"] = str(token_file)
        g.write_config()
        assert g.reload() == 2
        raw = admin_request(g.admin_port, "GET", "/config", f"Authorization: Bearer {TOKEN}\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"s3cret" not in body and TOKEN.encode() not in body
        view = json.loads(body)
        assert view["generation"] == 2
        effective = view["config"]
        assert effective["admin"] == {"address": f"127.0.0.1:{g.admin_port}", "token": "***"}
        assert effective["listen"][0]["address"] == f"127.0.0.1:{g.port}"
        assert effective["rate_limits"]["shared"]["redis"] == "redis://***@127.0.0.1:1/0"
        assert effective["upstreams"]["backend"]["targets"] == [{"address": f"127.0.0.1:{backend.port}", "weight": 1}]
        assert effective["grace_period"] == 5.0 and effective["limits"]["max_body"] == 1024 * 1024


def test_admin_answer_survives_a_request_body_it_does_not_read(backend: Backend, tmp_path: Path) -> None:
    """The admin API reads no bodies; closing with one unread would reset the connection and can
    destroy the answer, so it half-closes and drains instead."""
    with Gateway(gateway_config(backend.port), tmp_path) as g:
        body = b"x" * 200_000
        for _ in range(5):
            with socket.create_connection((LOOPBACK, g.admin_port), timeout=5) as s:
                s.sendall(b"POST /nothing HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
                try:
                    s.sendall(body)
                except OSError:
                    pass  # the server may have answered and half-closed already; it still drains
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 404 Not Found\r\n") and data.endswith(b"}\n"), data[:200]
