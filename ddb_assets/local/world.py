"""The local AWS world: moto in server mode on 127.0.0.1 with faithful exports.

A real HTTP endpoint that boto3 reaches through the ordinary endpoint settings
(``AWS_ENDPOINT_URL``), so the project's AWS code path is the same code path, pointed elsewhere.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from contextlib import contextmanager
from typing import Any, Iterator

import boto3
import requests
from botocore.config import Config

from ddb_assets.local import emulator
from ddb_assets.local.clock import WorldClock, clock
from ddb_assets.local.iceberg_catalog import glue_catalog_properties

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Dummy credentials: the emulator accepts any, and boto3 refuses to sign without some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class BindError(RuntimeError):
    """The world cannot listen on the address asked for; the message says why, in one line."""


class PortInUseError(BindError):
    """The requested port is taken by another process."""


class LocalWorld:
    """moto server (DynamoDB, S3, Glue, Athena, ...) plus the faithful export emulator, in this process.

    ``port=0`` picks a free port. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", region: str = DEFAULT_REGION):
        self.host = host
        self.requested_port = port
        self.region = region
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the local world is not started")
        host, port = self._server.get_host_and_port()
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> "LocalWorld":
        from moto.server import ThreadedMotoServer

        # Checked here, in this thread: the server binds on its own thread, where a failure would
        # leave start() waiting for ever (and werkzeug prints its own lines, then exits).
        _check_bindable(self.host, self.requested_port)
        emulator.install()
        # werkzeug logs every request at INFO; a served world should be quiet unless asked.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.requested_port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "LocalWorld":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def clock(self) -> WorldClock:
        """The world's clock (real time until moved; only ever forward): ``advance(seconds)``,
        ``set(epoch, frozen=...)``, ``real_time()``, and ``reset()`` back to the wall clock (the
        end of a test). The emulator reads it for write times, PITR windows, export times and
        "now" checks. It is this process's clock (the world runs here); another process drives a
        served world with ``ClockClient(endpoint)`` (``local/clock.py``)."""
        return clock

    def reset(self) -> None:
        """Forget every table, bucket and export (moto's reset API); the clock goes back to real time."""
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def env(self) -> dict[str, str]:
        """The variables that point boto3 (and anything else using the AWS SDK) at this world."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region, **CREDENTIALS}

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"max_attempts": 3, "mode": "standard"}))

    def iceberg_catalog_properties(self, warehouse: str) -> dict[str, str]:
        """Properties for pyiceberg's ``GlueCatalog`` (and its PyArrow FileIO) against this world.

        ``warehouse`` is an ``s3://bucket/prefix`` URI (the bucket must exist). Use as
        ``GlueCatalog(name, **props)`` or ``load_catalog(name, **props)``; see
        ``iceberg_catalog.glue_catalog_properties``.
        """
        return glue_catalog_properties(self.endpoint, self.region, warehouse)

    @contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """Temporarily export :meth:`env` into ``os.environ`` (for code that builds its own clients)."""
        saved = {key: os.environ.get(key) for key in self.env()}
        os.environ.update(self.env())
        try:
            yield self.env()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _check_bindable(host: str, port: int) -> None:
    """Raise BindError (PortInUseError for a port in use) unless ``host:port`` can be listened on."""
    if not 0 <= port <= 65535:
        raise BindError(f"port {port} does not exist; --port takes 0-65535 (0: any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {host}:{port}: {host!r} is not an address or host name of this "
                        f"machine ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        # As werkzeug binds (SO_REUSEADDR): a server stopped a moment ago does not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {host} is already in use; pick another with --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BindError(f"cannot listen on {host}:{port}: {host} is not an address of this machine "
                                f"(--host takes one of its addresses: 127.0.0.1, or 0.0.0.0 for all)") from None
            if exc.errno == errno.EACCES:
                raise BindError(f"cannot listen on {host}:{port}: permission denied (ports below 1024 need "
                                f"privileges; pick another with --port)") from None
            raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
