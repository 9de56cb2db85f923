"""
The throwaway servers the cluster's tests will run against
(L{servers}): a real redis-server and a real PostgreSQL cluster start on
free loopback ports, answer, survive a restart as the tests need, and
stop.
"""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
from servers import postgres_server, redis_server


def redis_command(port: int, *words: str) -> bytes:
    """
    Send one command to Redis on C{port} (RESP) and return its reply line.
    """
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request.encode())
        return connection.recv(1024)


def test_redis_server_starts_restarts_empty_and_stops(tmp_path: Path) -> None:
    """
    The fixture's redis-server answers PING, keeps a key, loses it when
    restarted (as a crash loses Redis's data, what the cluster must
    survive), and is gone afterwards.
    """
    with redis_server(tmp_path / "redis") as redis:
        assert redis_command(redis.port, "PING") == b"+PONG\r\n"
        assert redis_command(redis.port, "SET", "k", "v") == b"+OK\r\n"
        redis.restart()
        assert redis_command(redis.port, "GET", "k") == b"$-1\r\n"
        port = redis.port
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass
    else:
        raise AssertionError("redis-server still listens")


def test_postgres_server_answers_psycopg() -> None:
    """
    The fixture's PostgreSQL cluster takes psycopg 3 connections on its
    URL, creates a database, and keeps a row.
    """
    with postgres_server() as postgres:
        with psycopg.connect(postgres.url(), autocommit=True) as connection:
            connection.execute("CREATE DATABASE t_fixture")
        with psycopg.connect(postgres.url("t_fixture")) as connection:
            connection.execute("CREATE TABLE t (n integer)")
            connection.execute("INSERT INTO t VALUES (%s)", (42,))
            assert connection.execute("SELECT n FROM t").fetchall() == [(42,)]
