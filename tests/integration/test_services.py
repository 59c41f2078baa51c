"""The session's test services are real: PostgreSQL answers SQL, the S3 server stores objects."""

from __future__ import annotations

import pytest
from support.postgres_server import PostgresServer
from support.s3_server import S3Server

pytestmark = pytest.mark.slow


def test_postgres_server_runs_sql_in_a_fresh_database(postgres_server: PostgresServer,
                                                      postgres_database: str) -> None:
    postgres_server.psql("CREATE TABLE t AS SELECT 41 + 1 AS answer", dbname=postgres_database)
    assert postgres_server.psql("SELECT answer FROM t", dbname=postgres_database) == "42"
    assert postgres_server.psql("SHOW listen_addresses") == "127.0.0.1"


def test_s3_server_stores_objects(s3_server: S3Server, s3_bucket: str) -> None:
    fs = s3_server.filesystem()
    fs.pipe(f"{s3_bucket}/dir/hello.json", b'{"ok": true}')
    assert fs.cat(f"{s3_bucket}/dir/hello.json") == b'{"ok": true}'
    assert fs.ls(s3_bucket) == [f"{s3_bucket}/dir"]
