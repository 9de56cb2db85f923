"""
End-to-end history: lines reach the disk within a second of delivery,
survive kill -9 and a restart, and are replayed to the next user; event
ids go on growing after a restart, above any id the killed server handed
out; the database files are readable by the server's user only.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from realserver import TIMEOUT, ChatServer, LineClient, register

from twistedchat.history import MAX_UNWRITTEN


def stored_lines(path: Path) -> list[str]:
    """
    The chat texts in the database at C{path}, read as another process
    would.
    """
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [
            text for (text,) in connection.execute("SELECT text FROM events WHERE kind = 'chat'")
        ]
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()


def test_history_survives_kill_and_restart(tmp_path: Path) -> None:
    """
    Lines a user has seen delivered are on disk within one second; after
    kill -9 and a restart, a new user is shown them as history.
    """
    database = tmp_path / "chat.sqlite3"
    server = ChatServer(tmp_path, "--database", str(database))
    try:
        alice, bob = register(server, "alice"), register(server, "bob")
        lines = [f"line {i}" for i in range(5)]
        for line in lines:
            alice.send(line)
        for line in lines:
            assert bob.expect("<alice>") == f"<alice> {line}"
        delivered = time.monotonic()
        while stored_lines(database) != lines:
            assert time.monotonic() - delivered < 1.0, stored_lines(database)
            time.sleep(0.05)  # polling another process's file, not the reactor
        server.process.kill()
        server.process.wait(TIMEOUT)
        alice.close()
        bob.close()
    finally:
        server.stop()

    restarted = ChatServer(tmp_path, "--database", str(database))
    try:
        carol = LineClient(restarted.port)
        carol.send("carol")
        assert carol.expect("lines said here") == "*** The last 5 lines said here:"
        history = [carol.expect("UTC]") for _ in range(7)]
        assert [line.split("] ", 1)[1] for line in history] == [
            "*** alice has joined",
            "*** bob has joined",
            *(f"<alice> {line}" for line in lines),
        ]
        assert carol.expect("***") == "*** End of history."
        carol.send("/history 2")
        assert carol.expect("said here") == "*** The last 2 lines said here:"
        assert carol.expect("UTC]").endswith("<alice> line 3")
        assert carol.expect("UTC]").endswith("<alice> line 4")
        assert carol.expect("UTC]").endswith("*** carol has joined")
        carol.send("after the restart")
        wait_for_lines(database, [*lines, "after the restart"])
        carol.close()
    finally:
        restarted.stop()
    # Event ids went on growing across the restart: each event, in one
    # room here, has an id of its own, one more than the one before, and
    # the restart numbers from above any id the killed server may have
    # handed out without writing it (and from the clock, in microseconds,
    # exact as JavaScript numbers).
    connection = sqlite3.connect(database)
    ids = [event for (event,) in connection.execute("SELECT event FROM events ORDER BY id")]
    connection.close()
    before, after = ids[:7], ids[7:]  # 2 joins, 5 lines; carol's join and line
    assert before == list(range(before[0], before[0] + 7))
    assert after == [after[0], after[0] + 1]
    assert before[-1] + MAX_UNWRITTEN < after[0] < 2**53


def wait_for_lines(path: Path, lines: list[str]) -> None:
    """
    Wait until the chat texts in the database at C{path} are C{lines}
    (the server writes them within a second).
    """
    deadline = time.monotonic() + TIMEOUT
    while stored_lines(path) != lines:
        assert time.monotonic() < deadline, stored_lines(path)
        time.sleep(0.05)  # polling another process's file, not the reactor


def test_database_files_are_private(tmp_path: Path) -> None:
    """
    Under the usual umask (022) the running server's database file and
    its -wal and -shm files are mode 0600: only the server's user can read
    the history and the password hashes.
    """
    database = tmp_path / "chat.sqlite3"
    old_umask = os.umask(0o022)
    try:
        server = ChatServer(tmp_path, "--database", str(database))
    finally:
        os.umask(old_umask)
    try:
        alice = register(server, "alice")
        alice.send("/register open-sesame")
        alice.expect("is now registered")
        alice.send("a line for the history")
        wait_for_lines(database, ["a line for the history"])
        modes = {
            suffix: os.stat(f"{database}{suffix}").st_mode & 0o777
            for suffix in ("", "-wal", "-shm")
        }
        assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
        alice.close()
    finally:
        server.stop()


def test_readable_database_tightened_at_start_up(tmp_path: Path) -> None:
    """
    A database file other users can read (as earlier versions created it)
    is made 0600 at start-up, and the server's log says so.
    """
    database = tmp_path / "chat.sqlite3"
    database.touch()
    os.chmod(database, 0o644)
    server = ChatServer(tmp_path, "--database", str(database))
    try:
        assert os.stat(database).st_mode & 0o777 == 0o600
        assert (
            f"{database} could be read or written by other users (mode 0644);"
            " it is now mode 0600" in server.log
        )
    finally:
        server.stop()


def test_corrupt_database_stops_start_up(tmp_path: Path) -> None:
    """
    twistd chat with a corrupt database exits at once with one line naming
    the file, and no traceback.
    """
    import subprocess

    from realserver import BIN

    database = tmp_path / "broken.sqlite3"
    database.write_bytes(b"garbage" * 1000)
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "chat", "--database", str(database)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"cannot use the database {database}: file is not a database" in output
    assert "Traceback" not in output


def test_registered_nickname_survives_restart(tmp_path: Path) -> None:
    """
    A nickname registered with /register is stored; after a restart nobody
    can take it without its password (three wrong tries close the
    connection), and the right password gets it.
    """
    database = tmp_path / "chat.sqlite3"
    server = ChatServer(tmp_path, "--database", str(database))
    try:
        alice = register(server, "alice")
        alice.send("/register open-sesame")
        assert alice.expect("registered") == (
            "*** The nickname alice is now registered to you; from now on it needs this password."
        )
        alice.send("/quit")
        alice.read_until_closed()
    finally:
        server.terminate()

    restarted = ChatServer(tmp_path, "--database", str(database))
    try:
        mallory = LineClient(restarted.port)
        mallory.send("Alice")
        mallory.expect("is registered. Send its password")
        for guess in ("password1", "letmein99"):
            mallory.send(guess)
            assert mallory.expect("!!!") == "!!! Wrong password."
        mallory.send("qwertyuiop")
        assert mallory.expect("!!!") == "!!! Wrong password 3 times; goodbye."
        assert mallory.read_until_closed() == []
        owner = LineClient(restarted.port)
        owner.send("alice")
        owner.expect("is registered. Send its password")
        owner.send("open-sesame")
        owner.expect("*** Welcome, alice!")
        owner.close()
        assert "open-sesame" not in restarted.log
    finally:
        restarted.stop()
