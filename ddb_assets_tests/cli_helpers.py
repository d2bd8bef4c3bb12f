"""Run the installed ``ddb-assets`` console script as a user would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def ddb_assets_command() -> list[str]:
    script = Path(sys.executable).parent / "ddb-assets"
    return [str(script)] if script.exists() else [shutil.which("ddb-assets") or "ddb-assets"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180,
            cwd: str | os.PathLike[str] | None = None, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``ddb-assets ARGS`` with this environment plus ``env``, minus the variables in ``unset``."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run([*ddb_assets_command(), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
