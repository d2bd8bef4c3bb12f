"""``ddb-assets shard package``: what a Glue or EMR Serverless job's executors need, uploaded to
S3: the package's wheel (built with ``pip wheel --no-deps`` from the source checkout), the same
archive named ``.zip`` and the job's script (lake/shards/glue_job.py). Glue installs the wheel
and its dependencies from PyPI when the job names it in ``--additional-python-modules``; EMR
Serverless imports the package from the zip in ``spark.submit.pyFiles`` (Spark puts only .zip,
.egg and .jar files on the executors' Python path; a pure-Python wheel is a zip of the package).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ddb_assets.exports.storage import S3Options, resolve

SCRIPT = Path(__file__).with_name("glue_job.py")


class PackageError(RuntimeError):
    """The wheel could not be built or uploaded (the message says why, in one line)."""


@dataclass(frozen=True)
class Package:
    wheel: str  # s3:// URI of the uploaded wheel
    script: str  # s3:// URI of the job script (the Glue job's ScriptLocation, EMR Serverless's entryPoint)
    modules: str  # s3:// URI of the wheel's copy named .zip (EMR Serverless's spark.submit.pyFiles)


def project_root() -> Path:
    """The source checkout this package runs from (where setup.py is)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "setup.py").is_file():
        raise PackageError(f"no setup.py in {root}: `shard package` builds the wheel from a source checkout "
                           f"of ddb_assets (pip install -e .)")
    return root


def _source_copy(root: Path, into: Path) -> Path:
    """What the wheel is built from, copied out of the checkout: setuptools writes ``build/`` (and
    egg-info) into the tree it builds, and the user's checkout must stay as it was."""
    source = into / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        if (root / name).is_file():
            shutil.copy2(root / name, source / name)
    shutil.copytree(root / "ddb_assets", source / "ddb_assets",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return source


def build_wheel(folder: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the checkout into ``folder``; the wheel's path."""
    with tempfile.TemporaryDirectory(prefix="ddb-assets-wheel-") as scratch:
        source = _source_copy(project_root(), Path(scratch))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                               str(folder), str(source)], capture_output=True, text=True)
    wheels = sorted(folder.glob("ddb_assets-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise PackageError(f"pip wheel failed (status {done.returncode}): {lines[-1]}")
    return wheels[-1]


def package(to: str, s3: S3Options | None = None) -> Package:
    """Build the wheel and upload it, its .zip copy and the job script under ``to``
    (``s3://bucket/prefix/``)."""
    if not to.startswith("s3://"):
        raise PackageError(f"--to must be an s3:// folder the job can read, not {to!r}")
    folder = resolve(to.rstrip("/"), s3)
    with tempfile.TemporaryDirectory(prefix="ddb-assets-package-") as scratch:
        wheel = build_wheel(Path(scratch))
        wheel_at = folder.join(wheel.name)
        modules_at = folder.join(wheel.name[:-len(".whl")] + ".zip")
        script_at = folder.join(SCRIPT.name)
        try:
            wheel_at.write_bytes(wheel.read_bytes())
            modules_at.write_bytes(wheel.read_bytes())
            script_at.write_bytes(SCRIPT.read_bytes())
        except OSError as exc:
            raise PackageError(f"cannot upload to {to}: {exc}") from None
    return Package(wheel_at.uri, script_at.uri, modules_at.uri)


__all__ = ["Package", "PackageError", "build_wheel", "package"]
