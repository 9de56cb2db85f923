"""
The configuration file (C{--config FILE}): TOML (Python's C{tomllib})
whose keys are C{twistd chat}'s long option names, and which the command
line overrides; and which of its settings a running server takes again on
C{SIGHUP} (L{RELOADABLE}) and which only at a restart.

A key is an option's long name (C{max-clients}, C{port}); its value has
the option's type: an integer or a float (C{flood-rate = 2.5}), a string
(C{motd = "@/etc/twistedchat/motd.txt"}), a boolean for a flag
(C{log-messages = true}), and a string or a list of strings for an
option that may be given several times (C{port = ["tcp:12345",
"ssl:6697:privateKey=key.pem:certKey=cert.pem"]}).
C{examples/twistedchat.toml} documents every key.
"""

from __future__ import annotations

import getopt
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI
    import tomli as tomllib

from twisted.python import usage

#: Options that may be given several times: a list (or one string) in the
#: file; on the command line, any of them replaces the file's list.
REPEATABLE = frozenset({"port", "web", "irc", "web-origin", "exempt", "oper"})

#: Options a running server takes again from the file on SIGHUP; the
#: others (listeners, the database, names that are part of stored state)
#: need a restart.
RELOADABLE = frozenset(
    {
        "motd",
        "max-line-length",
        "registration-timeout",
        "max-sendq",
        "sendq-timeout",
        "flood-rate",
        "flood-burst",
        "flood-bytes",
        "flood-byte-burst",
        "max-clients",
        "max-per-ip",
        "connection-rate",
        "connection-ban",
        "max-registrations",
        "idle-timeout",
        "history-on-join",
        "reserved-nicknames",
        "quiet-joins-above",
        "max-rooms-per-user",
        "max-rooms",
        "random-nicknames",
        "log-messages",
        "exempt",
        "oper",
    }
)


class ConfigError(usage.UsageError):
    """
    The configuration file cannot be read, or holds something it may not:
    C{str()} is one line naming the file, the key and what is allowed.
    """


def read_config(path: str) -> dict[str, Any]:
    """
    Read the TOML file at C{path}.

    @raise ConfigError: it cannot be read or is not TOML.
    """
    try:
        with open(path, "rb") as f:
            table: dict[str, Any] = tomllib.load(f)
            return table
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8, as TOML must be.") from None


def given_options(argv: list[str], options: usage.Options) -> set[str]:
    """
    Return the long names of the options C{argv} gives, read as
    L{usage.Options} reads them (C{getopt}: abbreviations such as C{--po}
    and one-letter synonyms such as C{-p} included); none if C{argv} is
    no valid command line (parsing it will say why).
    """
    try:
        pairs, _ = getopt.getopt(argv, options.shortOpt, options.longOpt)
    except getopt.GetoptError:
        return set()
    given = set()
    for option, _ in pairs:
        name = option.lstrip("-")
        given.add(options.synonyms.get(name, name))
    return given


def config_arguments(
    path: str, table: dict[str, Any], options: usage.Options, given: set[str]
) -> list[str]:
    """
    Check the settings of the file at C{path} (its parsed C{table}) against
    C{options} (an instance of the command's L{usage.Options}), and return
    them as command-line arguments, leaving out those the command line
    gives (C{given}).

    @raise ConfigError: a key is no option, a value has the wrong type, or
        the option refuses it (out of range, not an endpoint, ...).
    """
    parameters = {p[0]: p for p in getattr(options, "optParameters", [])}
    flags = {f[0] for f in getattr(options, "optFlags", [])}
    arguments: list[str] = []
    for key, value in table.items():
        if key == "config":
            raise ConfigError(f"{path}: config: a configuration file cannot name another.")
        if key == "motd" and isinstance(value, str) and value.startswith("@"):
            # A file named in the file is found next to it.
            value = "@" + os.path.join(os.path.dirname(path), value[1:])
        if key in flags:
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: {key}: true or false, not {value!r}.")
            if value and key not in given:
                arguments.append(f"--{key}")
            continue
        if key in REPEATABLE:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"{path}: {key}: a string or a list of strings, not {value!r}.")
            check = getattr(type(options)(), "opt_" + key.replace("-", "_"))
            for item in values:
                _check(path, key, partial(check, item))
            if key not in given:
                arguments += [f"--{key}={item}" for item in values]
            continue
        if key not in parameters:
            known = ", ".join(sorted({*parameters, *flags, *REPEATABLE} - {"config"}))
            raise ConfigError(f"{path}: {key}: no such setting; the settings are {known}.")
        text = _parameter_text(path, key, value, parameters[key][2])
        coerce = parameters[key][4] if len(parameters[key]) > 4 else None
        if coerce is not None:
            _check(path, key, partial(coerce, text))
        if key not in given:
            arguments.append(f"--{key}={text}")
    return arguments


def _parameter_text(path: str, key: str, value: Any, default: Any) -> str:
    """
    Return C{value} as the text of a command-line value for the option
    C{key}, whose default tells its type.

    @raise ConfigError: C{value} has another type.
    """
    if isinstance(default, bool) or isinstance(value, bool):
        pass
    elif isinstance(default, int) and isinstance(value, int):
        return str(value)
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return str(value)
    elif not isinstance(default, (int, float)) and isinstance(value, str):
        return value
    elif key == "reserved-nicknames" and isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return " ".join(value)
    wanted = (
        "an integer"
        if isinstance(default, int)
        else "a number"
        if isinstance(default, float)
        else "a string"
    )
    raise ConfigError(f"{path}: {key}: {wanted}, not {value!r}.")


def _check(path: str, key: str, check: Callable[[], object]) -> None:
    """
    Run C{check}, an option's own validation, naming the file and the key
    in its refusal.
    """
    try:
        check()
    except usage.UsageError as e:
        raise ConfigError(f"{path}: {key}: {e}") from None
