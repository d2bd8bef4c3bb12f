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
from ddb_assets.local.iceberg_catalog import glue_catalog_properties

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Dummy credentials: the emulator accepts any, and boto3 refuses to sign without some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class PortInUseError(RuntimeError):
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
        return f"http://{host}:{port}"

    def start(self) -> "LocalWorld":
        from moto.server import ThreadedMotoServer

        if self.requested_port:
            _check_port_free(self.host, self.requested_port)
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

    def reset(self) -> None:
        """Forget every table, bucket and export (moto's reset API)."""
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


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As werkzeug binds (SO_REUSEADDR): a server stopped a moment ago does not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {host} is already in use; pick another with --port") from None
            raise
