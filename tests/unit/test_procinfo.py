"""Reading /proc: the address columns of /proc/net/tcp{,6} and which listeners cover an address."""
from __future__ import annotations

import ipaddress
import os

from fastgw.server.procinfo import _covers, _proc_ip, command_of, is_fastgw_master


def test_proc_net_tcp_addresses_are_words_in_host_order() -> None:
    assert _proc_ip("0100007F") == ipaddress.ip_address("127.0.0.1")
    assert _proc_ip("00000000") == ipaddress.ip_address("0.0.0.0")
    assert _proc_ip("00000000000000000000000001000000") == ipaddress.ip_address("::1")
    assert _proc_ip("0000000000000000FFFF00000100007F") == ipaddress.ip_address("::ffff:127.0.0.1")


def test_which_listeners_take_connections_to_an_address() -> None:
    ip = ipaddress.ip_address
    assert _covers(ip("127.0.0.1"), ip("127.0.0.1"))
    assert _covers(ip("0.0.0.0"), ip("127.0.0.1"))
    assert _covers(ip("::"), ip("::1"))
    assert _covers(ip("::"), ip("127.0.0.1"))  # a dual-stack wildcard, as far as /proc tells
    assert _covers(ip("::ffff:127.0.0.1"), ip("127.0.0.1"))
    assert not _covers(ip("0.0.0.0"), ip("::1"))
    assert not _covers(ip("127.0.0.1"), ip("127.0.0.2"))


def test_command_and_master_recognition() -> None:
    command = command_of(os.getpid())
    assert command is not None and "python" in command and "\n" not in command
    assert not is_fastgw_master(os.getpid())  # a test process is no master
    assert not is_fastgw_master(0) and not is_fastgw_master(2**22 + 1)
