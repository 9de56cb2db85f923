"""
End-to-end rooms and moderation: the real C{twistd -n chat}, real TCP
clients on 127.0.0.1. A room an account operates keeps its topic,
operators and bans across a restart on the same database; C{--oper} makes
a registered account a server operator, and names no other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from realserver import BIN, TIMEOUT, ChatServer, LineClient, register

PASSWORD = "open-sesame"


def sign_in(server: ChatServer, nickname: str) -> LineClient:
    """
    Connect to C{server} as the registered C{nickname}, giving its password
    with the nickname.
    """
    client = LineClient(server.port)
    client.expect("*** Choose a nickname")
    client.send(f"{nickname} {PASSWORD}")
    client.expect(f"*** Welcome, {nickname}!")
    return client


def register_account(server: ChatServer, nickname: str) -> None:
    """
    Register C{nickname} with L{PASSWORD} on C{server}, then quit.
    """
    client = register(server, nickname)
    client.send(f"/register {PASSWORD}")
    client.expect(f"*** The nickname {nickname} is now registered to you")
    client.send("/quit")
    client.read_until_closed()


def test_rooms_and_moderation_survive_restart(tmp_path: Path) -> None:
    """
    alice registers, creates #dev (she is its operator through her account)
    and sets its topic; #dev lines reach only its members, #lobby lines
    everyone. Her kick of carol is seen by every member with the reason;
    bob, banned, is removed and cannot join again. After a restart on the
    same database, #dev still has its topic, alice (signed in with her
    password) is still its operator, and bob is still banned.
    """
    database = str(tmp_path / "chat.sqlite3")
    options = ("--database", database, "--flood-rate", "0", "--history-on-join", "0")
    server = ChatServer(tmp_path, *options)
    try:
        alice = register(server, "alice")
        alice.send(f"/register {PASSWORD}")
        alice.expect("is now registered to you")
        alice.send("/join #dev")
        assert alice.expect("You joined") == (
            "*** You joined #dev; your lines go there now. 1 user here: alice."
        )
        alice.send("/topic Release planning")
        assert alice.expect("topic") == "*** alice set the topic of #dev: Release planning"
        bob, carol = register(server, "bob"), register(server, "carol")
        bob.send("/join #dev")
        assert bob.expect("You joined") == (
            "*** You joined #dev; your lines go there now. 2 users here: alice, bob."
        )
        assert bob.expect("Topic") == "*** Topic of #dev: Release planning"

        bob.send("only for #dev")
        bob.send("/msg #lobby for everyone")
        assert alice.expect("<bob>") == "[#dev] <bob> only for #dev"
        assert alice.expect("<bob>") == "[#lobby] <bob> for everyone"
        # The #lobby line came after the #dev one: had carol been sent the
        # #dev line, it would be the first.
        assert carol.expect("<bob>") == "<bob> for everyone"

        carol.send("/join #dev")
        carol.expect("You joined #dev")
        alice.send("/kick carol off topic")
        kicked = "*** alice removed carol from #dev (off topic)"
        for member in (alice, bob, carol):
            assert member.expect("removed carol") == kicked

        alice.send("/ban bob spam")
        assert bob.expect("banned") == "*** alice banned bob from #dev"
        assert bob.expect("removed") == "*** alice removed bob from #dev (spam)"
        bob.send("/join #dev")
        assert bob.expect("!!!") == "!!! You are banned from #dev."
        for client in (alice, bob, carol):
            client.close()
        server.terminate()
    finally:
        server.stop()

    restarted = ChatServer(tmp_path, *options)
    try:
        bob = register(restarted, "bob")
        bob.send("/rooms")
        assert bob.expect("#dev") == "***   #dev (0 users): Release planning"
        bob.send("/join #dev")
        assert bob.expect("!!!") == "!!! You are banned from #dev."

        alice = sign_in(restarted, "alice")
        alice.send("/join #dev")
        assert alice.expect("You joined") == (
            "*** You joined #dev; your lines go there now. 1 user here: alice."
        )
        assert alice.expect("Topic") == "*** Topic of #dev: Release planning"
        alice.send("/names")
        assert alice.expect("in #dev") == "*** 1 user in #dev: @alice"
        alice.send("/unban bob")
        assert alice.expect("ban") == "*** alice lifted the ban on bob in #dev"
        bob.send("/join #dev")
        assert bob.expect("You joined") == (
            "*** You joined #dev; your lines go there now. 2 users here: alice, bob."
        )
        alice.close()
        bob.close()
    finally:
        restarted.stop()


def test_server_operator_kills(tmp_path: Path) -> None:
    """
    Restarted with --oper naming a registered account, its owner may /kill:
    the user killed is told who did it and why, then disconnected; everyone
    in their rooms sees that they left, killed. Nobody else may /kill.
    """
    database = str(tmp_path / "chat.sqlite3")
    first = ChatServer(tmp_path, "--database", database)
    try:
        register_account(first, "sysop")
        first.terminate()
    finally:
        first.stop()

    server = ChatServer(tmp_path, "--database", database, "--oper", "sysop")
    try:
        sysop = sign_in(server, "sysop")
        bob, carol = register(server, "bob"), register(server, "carol")
        carol.send("/kill bob")
        assert carol.expect("!!!") == "!!! Only server operators can /kill."
        sysop.send("/kill bob flooding")
        assert bob.expect("server operator") == (
            "*** The server operator sysop disconnected you: flooding"
        )
        assert bob.read_until_closed() == []
        left = "*** bob has left (killed by sysop: flooding)"
        assert carol.expect("bob has left") == left
        assert sysop.expect("bob has left") == left
        sysop.close()
        carol.close()
    finally:
        server.stop()


def test_oper_without_account_stops_start_up(tmp_path: Path) -> None:
    """
    --oper naming a nickname that has no account in the database stops
    start-up with one line saying so, and no traceback.
    """
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--database",
            "chat.sqlite3",
            "--oper",
            "nosuchaccount",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "nosuchaccount" in line]
    assert len(errors) == 1, output
    assert errors[0].endswith(
        ": --oper nosuchaccount: no such account in chat.sqlite3; register the nickname "
        "(/register) first, then start the server with --oper."
    )
    assert "Traceback" not in output
