"""
Tests for L{twistedchat.config} and C{--config}: the example file loads;
the command line overrides the file; every kind of mistake stops start-up
with one line naming the file, the key and what is allowed; and
L{twistedchat.tap.ChatService.reload} takes the reloadable settings of a
changed file, logs the others as ignored until restart, and keeps the
running settings when the file is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage

from twistedchat.config import RELOADABLE, REPEATABLE, ConfigError
from twistedchat.factory import ChatFactory
from twistedchat.tap import ChatService, Options
from twistedchat.throttles import Exemptions

EXAMPLE = Path(__file__).parent.parent / "examples" / "twistedchat.toml"


def parse(*argv: str) -> Options:
    """
    Parse C{argv} (with history in memory, so no file is written).
    """
    options = Options()
    options.parseOptions(["--database", ":memory:", *argv])
    return options


def test_example_loads() -> None:
    """
    examples/twistedchat.toml, which documents every setting, loads, and
    sets what it says.
    """
    options = parse("--config", str(EXAMPLE))
    assert options["server-name"] == "chat.example.org"
    assert options["motd"] == "Be nice."
    assert options["irc"] == ["tcp:6667:backlog=1024"]
    assert options["metrics"] == "tcp:9100:interface=127.0.0.1:backlog=1024"
    assert options["reserved-nicknames"] == ["NickServ", "ChanServ", "admin", "root", "operator"]


def test_example_names_every_setting() -> None:
    """
    Every option of twistd chat but config itself has a key in the
    example file, so it documents them all; a key that turns a mode on
    (--cluster) may be there commented out.
    """
    text = EXAMPLE.read_text()
    options = Options()
    names = {p[0] for p in options.optParameters} | {f[0] for f in options.optFlags}
    names |= REPEATABLE
    missing = [
        name
        for name in names - {"config"}
        if f"\n{name} = " not in text and f"\n# {name} = " not in text
    ]
    assert missing == []


def test_command_line_overrides(tmp_path: Path) -> None:
    """
    An option on the command line wins over the file's; a --port on the
    command line replaces the file's list of ports.
    """
    config = tmp_path / "chat.toml"
    config.write_text('max-clients = 50\nport = ["tcp:1", "tcp:2"]\nmotd = "from the file"\n')
    options = parse(f"--config={config}", "--max-clients", "7", "-p", "tcp:3")
    assert options["max-clients"] == 7
    assert options["port"] == ["tcp:3:backlog=1024"]
    assert options["motd"] == "from the file"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("max-clients = 'many'", "max-clients: an integer, not 'many'."),
        ("max-clients = -1", "max-clients: --max-clients must be from 0 to 10000000, not -1."),
        ("flood-rate = 'fast'", "flood-rate: a number, not 'fast'."),
        ("motd = 3", "motd: a string, not 3."),
        ("log-messages = 'yes'", "log-messages: true or false, not 'yes'."),
        ("port = 12345", "port: a string or a list of strings, not 12345."),
        ("port = ['nonsense:1']", "port: --port nonsense:1: not a port number or endpoint"),
        ("log-format = 'xml'", "log-format: --log-format is one of text, json, not 'xml'."),
        ("colour = 'blue'", "colour: no such setting; the settings are "),
        ("config = 'other.toml'", "config: a configuration file cannot name another."),
        ("max-clients = ", "not valid TOML: "),
    ],
)
def test_mistakes_stop_start_up(tmp_path: Path, content: str, error: str) -> None:
    """
    A key that is no setting, a value of the wrong type or out of range,
    and a file that is not TOML each stop start-up with one line: the
    file, the key and what is allowed.
    """
    config = tmp_path / "chat.toml"
    config.write_text(content + "\n")
    with pytest.raises(ConfigError) as raised:
        parse("--config", str(config))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{config}: {error}")


def test_unreadable_file(tmp_path: Path) -> None:
    """
    A file that cannot be read stops start-up, naming it.
    """
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot be read: No such file"):
        parse("--config", str(tmp_path / "missing.toml"))


def service(config: Path) -> tuple[ChatFactory, ChatService]:
    """
    A chat and its service running with the options of C{config}.
    """
    options = parse("--config", str(config))
    factory = ChatFactory(Clock(), max_clients=options["max-clients"], motd=options["motd"])
    chat = ChatService(factory, options)
    chat.startService()
    return factory, chat


def test_reload_takes_reloadable_settings(tmp_path: Path) -> None:
    """
    reload() (SIGHUP) takes the new MOTD, limits and operators' settings
    of the changed file, and logs a changed listener as ignored until
    restart.
    """
    config = tmp_path / "chat.toml"
    config.write_text('max-clients = 50\nmotd = "old"\nport = ["tcp:1"]\n')
    factory, chat = service(config)
    config.write_text(
        'max-clients = 5\nmotd = "new"\nport = ["tcp:2"]\nflood-rate = 0.5\n'
        'reserved-nicknames = "Boss"\nexempt = ["10.0.0.0/8"]\n'
    )
    with capturedLogs() as events:
        chat.reload()
    assert (factory.max_clients, factory.motd, factory.flood_rate) == (5, "new", 0.5)
    assert factory.reserved_nicknames == ("Boss",)
    assert factory.exemptions.covers("10.1.2.3")
    logged = [formatEvent(event) for event in events]
    assert f"port changed in {config}: ignored until restart" in logged
    assert any(line.startswith(f"reloaded {config}: ") for line in logged)


def test_bad_file_on_reload_keeps_the_settings(tmp_path: Path) -> None:
    """
    A file with a mistake on reload changes nothing, and the log says why.
    """
    config = tmp_path / "chat.toml"
    config.write_text("max-clients = 50\n")
    factory, chat = service(config)
    config.write_text("max-clients = 'lots'\n")
    with capturedLogs() as events:
        chat.reload()
    assert factory.max_clients == 50
    assert [formatEvent(e) for e in events][-1] == (
        f"not reloaded, the running settings stay: {config}: max-clients: an integer, not 'lots'."
    )


def test_reloadable_settings_are_factory_settings() -> None:
    """
    Every setting the file may change while running is one ChatFactory
    takes back (reconfigure raises nothing).
    """
    factory = ChatFactory(Clock())
    options = Options()
    options.parseOptions(["--database", ":memory:"])
    for key in RELOADABLE:
        name = {"exempt": "exemptions", "oper": "server_operators"}.get(key, key.replace("-", "_"))
        value = Exemptions([]) if key == "exempt" else [] if key == "oper" else options[key]
        factory.reconfigure(**{name: value})


def test_refusals_of_derived_checks_name_the_file(tmp_path: Path) -> None:
    """
    Values the options check together (a MOTD file to read, a room name,
    history-on-join against history-max) are refused naming the file and
    the key too; --config= names no file.
    """
    config = tmp_path / "chat.toml"
    for content, error in [
        ('motd = "@missing.txt"', "motd: --motd @"),
        ('default-room = "no spaces"', "default-room: --default-room "),
        ("history-on-join = 500", "history-on-join: --history-on-join cannot be more"),
    ]:
        config.write_text(content + "\n")
        with pytest.raises(ConfigError) as raised:
            parse("--config", str(config))
        assert str(raised.value).startswith(f"{config}: {error}"), raised.value
    with pytest.raises(usage.UsageError, match="--config needs a file name"):
        parse("--config=")


def test_files_and_abbreviations(tmp_path: Path) -> None:
    """
    A file that is not UTF-8 is refused; a relative --config and a MOTD
    file named in it (found next to it) are made absolute, so a reload
    after twistd changed directory finds them; an abbreviated option on
    the command line (--po) still replaces the file's list.
    """
    config = tmp_path / "chat.toml"
    config.write_bytes(b'motd = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse("--config", str(config))
    (tmp_path / "motd.txt").write_text("from a file\n")
    config.write_text('motd = "@motd.txt"\nport = ["tcp:1"]\n')
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        options = parse("--config", "chat.toml", "--po", "tcp:3")
    finally:
        os.chdir(here)
    assert options["argv"][options["argv"].index("--config") + 1] == str(config)
    assert options["motd"] == "from a file"
    assert options["port"] == ["tcp:3:backlog=1024"]


def test_reload_refusals_and_irc(tmp_path: Path) -> None:
    """
    A reload is refused whole for an oper that is no registered nickname,
    or a history-on-join above the running history-max; with --irc,
    reloaded reserved nicknames keep NickServ.
    """
    config = tmp_path / "chat.toml"
    config.write_text('irc = ["tcp:0"]\n')
    factory, chat = service(config)
    for content, refusal in [
        ('irc = ["tcp:0"]\noper = ["nobody"]\n', "oper: nobody is no registered nickname"),
        (
            'irc = ["tcp:0"]\nhistory-max = 1000\nhistory-on-join = 900\n',
            "history-on-join: at most history-max (200) until restart",
        ),
    ]:
        config.write_text(content)
        with capturedLogs() as events:
            chat.reload()
        assert formatEvent(events[-1]).endswith(refusal)
    config.write_text('reserved-nicknames = "Boss"\n')
    chat.reload()
    assert factory.reserved_nicknames == ("Boss", "NickServ")


def test_reload_without_config() -> None:
    """
    Without --config, a reload (SIGHUP) is logged and changes nothing.
    """
    factory = ChatFactory(Clock())
    chat = ChatService(factory, parse())
    chat.startService()
    with capturedLogs() as events:
        chat.reload()
    assert [formatEvent(e) for e in events] == ["SIGHUP: there is no --config file to reload"]


def test_repeatable_options_are_the_lists() -> None:
    """
    The options the file gives as lists are exactly those that may be
    given several times on the command line.
    """
    assert {key for key, value in Options().items() if isinstance(value, list)} == REPEATABLE
