"""nginx, twice: the built-in backend (`return 200` with fixed bodies) and the reference reverse
proxy. Both run as the current user from a generated prefix directory, in the foreground
(`daemon off`) with a master, so that they are our children and stop with us.

Fairness choices of the proxy (stated in the README): the same worker count as fastgw, SO_REUSEPORT
listeners like fastgw's per-worker sockets, a keep-alive upstream pool of the same size, no cap
on requests per connection either side, the forwarding headers fastgw sets (X-Forwarded-For/
-Proto/-Host, X-Request-ID kept or generated and returned), request bodies streamed rather than
spooled to disk (fastgw streams them), and a JSON access log buffered like fastgw's (64 KiB or
100 ms). The backend logs nothing: it is not under test.
"""

from __future__ import annotations

import getpass
import grp
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.scenarios import JSON_PATH, SMALL_BODY, Scenario, json_body
from fastgw.config.model import MOZILLA_INTERMEDIATE
from fastgw.loadtest.procs import Server, taskset

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_ACCESS_LOG_FORMAT = (
    'log_format bench_json escape=json \'{"ts":"$time_iso8601","remote":"$remote_addr:$remote_port",'
    '"method":"$request_method","uri":"$request_uri","status":$status,"bytes":$bytes_sent,'
    '"duration_ms":$request_time,"upstream":"$upstream_addr","request_id":"$reqid"}\';'
)


def binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if path is None:
        raise RuntimeError("nginx not found: `make bench` installs it (Debian package nginx-light)")
    return path


def version() -> str:
    out = subprocess.run([binary(), "-v"], capture_output=True, text=True, check=False)
    m = re.search(r"nginx/(\S+)", out.stderr + out.stdout)
    return m.group(1) if m else "unknown"


#: worker_connections unless a curve needs more (nginx counts upstream connections too).
CONNECTIONS = 4096


def _main_section(prefix: Path, workers: int, connections: int = CONNECTIONS) -> str:
    """The parts every instance needs to run unprivileged from its own prefix; opens `http {`.
    `connections` per worker: client and upstream connections together; the worker's open-file
    limit is set to match (the harness raises its own hard limit first, see fastgw.server.fdlimit.raise_nofile)."""
    user = ""
    if os.geteuid() == 0:
        # As root nginx would switch its workers to `nobody`, who cannot write our temp dirs.
        user = f"user {getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name};\n"
    temps = "\n".join(f"    {name}_temp_path {prefix / 'tmp' / name};" for name in _TEMP_PATHS)
    return (
        f"{user}worker_processes {workers};\n"
        "daemon off;\nmaster_process on;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        f"worker_rlimit_nofile {connections + 1024};\n"
        f"events {{ worker_connections {connections}; }}\n"
        f"http {{\n{temps}\n"
    )


def _write(prefix: Path, text: str) -> Path:
    for name in _TEMP_PATHS:
        (prefix / "tmp" / name).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


#: Where the built-in backend serves the bodies of the body-size curve: BODY_PREFIX + "<bytes>".
BODY_PREFIX = "/body/"


def backend_config(
    prefix: Path, port: int, workers: int, connections: int = CONNECTIONS, body_sizes: Sequence[int] = ()
) -> Path:
    """The built-in backend. `body_sizes`: also serve GET BODY_PREFIX<n> with n bytes (sparse
    files: the page cache serves zeros, nothing is written to disk) and accept request bodies of
    any size (read and discarded)."""
    # A file, not `return`: nginx refuses a 4 KiB token; the open file is cached, so a request
    # costs no open().
    body_file = prefix / "json4k.json"
    body_file.write_text(json_body())
    bodies = ""
    if body_sizes:
        (prefix / "body").mkdir(exist_ok=True)
        for size in body_sizes:
            with open(prefix / "body" / str(size), "wb") as f:
                f.truncate(size)
        bodies = f"""
        client_max_body_size 0;
        location {BODY_PREFIX} {{
            default_type application/octet-stream;
            alias {prefix / "body"}/;
        }}"""
    return _write(
        prefix,
        _main_section(prefix, workers, connections)
        + f"""\
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;
    etag off;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        default_type text/plain;
        location = {JSON_PATH} {{
            default_type application/json;
            alias {body_file};
        }}
        location / {{
            return 200 '{SMALL_BODY}';
        }}{bodies}
    }}
}}
""",
    )


def proxy_config(
    prefix: Path,
    port: int,
    workers: int,
    upstream: str,
    keepalive: int,
    scenarios: Sequence[Scenario],
    connections: int = CONNECTIONS,
    http_extra: str = "",
    locations: str = "",
    tls: tuple[int, Path, Path] | None = None,
) -> Path:
    """`http_extra` (http-level directives) and `locations` (location blocks before the
    catch-all) are added to the scenarios' own, for the curves. `tls` (port, certificate, key):
    a second server, the same but for TLS (fastgw's TLS settings: TLS 1.2+, Mozilla intermediate,
    session cache and tickets)."""
    http_extra = "\n".join(
        [s.nginx_http for s in scenarios if s.nginx_equivalent and s.nginx_http] + ([http_extra] if http_extra else [])
    )
    locations = "\n".join(
        [s.nginx_locations for s in scenarios if s.nginx_equivalent and s.nginx_locations]
        + ([locations] if locations else [])
    )
    tls_lines = ""
    if tls is not None:
        # One server for both listeners: the ssl_* lines apply to the `ssl` one only.
        tls_port, cert, key = tls
        tls_lines = (
            f"        listen 127.0.0.1:{tls_port} ssl reuseport backlog=4096;\n"
            f"        ssl_certificate {cert};\n"
            f"        ssl_certificate_key {key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
            f"        ssl_ciphers {MOZILLA_INTERMEDIATE};\n"
            "        ssl_prefer_server_ciphers off;\n"
            "        ssl_session_cache shared:bench_tls:10m;\n"
            "        ssl_session_tickets on;\n"
        )
    # keepalive 0: no idle connections kept, a new upstream connection per request (nginx refuses
    # `keepalive 0`, it means leaving the directive out).
    keepalive_lines = (
        f"        keepalive {keepalive};\n        keepalive_requests 1000000;\n        keepalive_timeout 60s;\n"
        if keepalive
        else ""
    )
    return _write(
        prefix,
        _main_section(prefix, workers, connections)
        + f"""\
    {_ACCESS_LOG_FORMAT}
    map $http_x_request_id $reqid {{
        default $http_x_request_id;
        "" $request_id;
    }}
    access_log {prefix / "access.log"} bench_json buffer=64k flush=100ms;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_buffer_size 128k;
    upstream backend {{
        server {upstream};
{keepalive_lines}    }}
{http_extra}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
{tls_lines}        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Request-ID $reqid;
        add_header X-Request-ID $reqid always;
        proxy_request_buffering off;
        proxy_connect_timeout 1s;
        proxy_read_timeout 10s;
{locations}
        location / {{
            proxy_pass http://backend;
        }}
    }}
}}
""",
    )


def start(name: str, prefix: Path, conf: Path, port: int, workers: int, cpus: tuple[int, ...] | None,
          timeout: float = 15.0) -> Server:
    """nginx listening on `port` with its `workers`; `timeout` is how long its start may take (a
    config of 100,000 locations takes minutes to parse)."""
    server = Server(
        name,
        taskset(cpus, [binary(), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]),
        prefix / "stderr.log",
    )
    server.wait_listening(port, workers + 1, timeout=timeout)
    return server
