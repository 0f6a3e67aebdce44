"""Shared media for tests and bench/: a real S3-compatible server (moto's standalone server) and
fresh PostgreSQL databases for the external-database transport. Nothing is mocked: the server is
a separate process on 127.0.0.1 that boto3 talks to over HTTP, stopped (bounded in time) on exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from multinode.cluster import free_port, pg_drop, pg_recreate

MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))
S3_ACCESS_KEY_ID = "testing-access-key"  # moto accepts any credentials: test-only values
S3_SECRET_ACCESS_KEY = "testing-secret-key-not-real"
S3_REGION = "us-east-1"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Server:
    """A running moto server: its endpoint and the credentials to use."""

    endpoint_url: str
    process: subprocess.Popen[bytes]

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client for this server (``overrides``: e.g. wrong credentials)."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": S3_ACCESS_KEY_ID,
            "aws_secret_access_key": S3_SECRET_ACCESS_KEY,
            "region_name": S3_REGION,
        }
        options.update(overrides)
        return boto3.client("s3", **options)

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (a unique name unless given); returns its name."""
        bucket = name or f"cs-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket``: its key and its bytes (listed page by page, each read)."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", ()):
                key = item["Key"]
                found[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return found

    def env(self, bucket: str) -> dict[str, str]:
        """The ``CONFIGSYNC_R2_*`` variables that point a node at ``bucket`` on this server."""
        return {
            "CONFIGSYNC_R2_ENDPOINT_URL": self.endpoint_url,
            "CONFIGSYNC_R2_BUCKET": bucket,
            "CONFIGSYNC_R2_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
            "CONFIGSYNC_R2_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
            "CONFIGSYNC_R2_REGION": S3_REGION,
        }


@contextlib.contextmanager
def s3_server(*, log: Path | None = None) -> Iterator[S3Server]:
    """Start moto's standalone S3 server on a free 127.0.0.1 port; stop it on exit."""
    port = free_port()
    out: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                requests.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise TimeoutError("moto_server did not start") from None
                time.sleep(0.1)
        yield S3Server(endpoint_url=endpoint, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if log:
            out.close()


def pg_server_url() -> str:
    """A PostgreSQL URL of the server the tests use (``TEST_DATABASE_URL``'s, else local)."""
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL


def _with_db(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def readable(data: bytes) -> bytes:
    """``data`` as stored, or decompressed when it is gzip, zlib, bzip2 or xz (a search for a
    plaintext in an object must see through compression)."""
    import bz2
    import gzip
    import lzma
    import zlib

    for magic, decompress in (
        (b"\x1f\x8b", gzip.decompress),
        (b"BZh", bz2.decompress),
        (b"\xfd7zXZ", lzma.decompress),
        (b"\x78", zlib.decompress),
    ):
        if data.startswith(magic):
            with contextlib.suppress(Exception):
                return bytes(decompress(data))
    return data


def database_text(url: str) -> dict[str, str]:
    """Every row of every table of the PostgreSQL database ``url`` names, as text, by table
    (``schema.table``): what a search for a plaintext in a shared database must cover."""
    import psycopg
    from psycopg import sql

    found: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            found[f"{schema}.{table}"] = "\n".join(row[0] for row in conn.execute(query))
    return found


@contextlib.contextmanager
def external_database(prefix: str = "cs_external") -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the tests' server; its URL. Dropped on exit."""
    url = _with_db(pg_server_url(), f"{prefix}_{uuid.uuid4().hex[:10]}")
    pg_recreate(url)
    try:
        yield url
    finally:
        pg_drop(url)
