"""`ddb-assets emulator` cannot listen: one line saying why (port in use, an address not this
machine's, a name that does not resolve, a port that does not exist), never a traceback or a hang."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from ddb_assets.local.world import BindError, PortInUseError, _check_bindable
from ddb_assets_tests.cli_helpers import free_port, run_cli

# 192.0.2.0/24 is TEST-NET-1 (RFC 5737): documentation only, never an address of this machine.
FOREIGN = "192.0.2.1"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


# (case, host, port or "busy"/"free", error class, message; "{port}" stands for the port)
CASES = [
    ("port in use", "127.0.0.1", "busy", PortInUseError,
     "port {port} on 127.0.0.1 is already in use; pick another with --port"),
    ("address not this machine's", FOREIGN, "free", BindError,
     f"cannot listen on {FOREIGN}:{{port}}: {FOREIGN} is not an address of this machine (--host takes one of its "
     f"addresses: 127.0.0.1, or 0.0.0.0 for all)"),
    ("address not this machine's, any port", FOREIGN, 0, BindError,
     f"cannot listen on {FOREIGN}:0: {FOREIGN} is not an address of this machine (--host takes one of its "
     f"addresses: 127.0.0.1, or 0.0.0.0 for all)"),
    ("port too big", "127.0.0.1", 70000, BindError, "port 70000 does not exist; --port takes 0-65535 (0: any free port)"),
    ("negative port", "127.0.0.1", -1, BindError, "port -1 does not exist; --port takes 0-65535 (0: any free port)"),
    ("a name that does not resolve", "no-such-host.invalid", "free", BindError,
     "cannot listen on no-such-host.invalid:{port}: 'no-such-host.invalid' is not an address or host name of this "
     "machine ("),
]


def _port(spec: object, busy: int) -> int:
    return busy if spec == "busy" else free_port() if spec == "free" else int(spec)  # type: ignore[call-overload]


@pytest.mark.fast
@pytest.mark.parametrize("case, host, port, error, message", CASES, ids=[c[0] for c in CASES])
def test_why_the_world_cannot_listen(busy_port: int, case: str, host: str, port: object, error: type,
                                     message: str) -> None:
    number = _port(port, busy_port)
    with pytest.raises(error) as raised:
        _check_bindable(host, number)
    assert str(raised.value).startswith(message.format(port=number))


@pytest.mark.fast
def test_a_free_port_and_any_port_pass() -> None:
    _check_bindable("127.0.0.1", free_port())
    _check_bindable("127.0.0.1", 0)


@pytest.mark.parametrize("case, host, port, error, message", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_the_emulator_command_says_it_in_one_line(busy_port: int, case: str, host: str, port: object, error: type,
                                                  message: str) -> None:
    number = _port(port, busy_port)
    result = run_cli("emulator", "--host", host, "--port", str(number), timeout=30)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: {message.format(port=number)}\n"
