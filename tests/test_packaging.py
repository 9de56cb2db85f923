"""
Packaging tests: the installed C{twistd} finds the C{chat} plugin, after
both C{pip install .} and C{pip install -e .}, from a directory outside
the checkout; the wheel ships no C{twisted/__init__.py},
C{twisted/plugins/__init__.py} or C{dropin.cache}.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from realserver import BIN

CHECKOUT = Path(__file__).resolve().parent.parent


def lists_chat(help_text: str) -> bool:
    """
    Whether C{twistd --help} output lists the chat command.
    """
    return any(line.split()[:1] == ["chat"] for line in help_text.splitlines())


def test_installed_twistd_lists_chat(tmp_path: Path) -> None:
    """
    The twistd command of this environment, run from an empty directory
    outside the checkout, lists chat.
    """
    result = subprocess.run(
        [str(BIN / "twistd"), "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert lists_chat(result.stdout), result.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A copy of the checkout's tracked shape, with a stale dropin.cache
    planted in twisted/plugins/ as Twisted writes one there.
    """
    copy = tmp_path_factory.mktemp("src") / "twistedchat"
    shutil.copytree(
        CHECKOUT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "dist", "build", ".hypothesis", ".pytest_cache"
        ),
    )
    (copy / "twisted" / "plugins" / "dropin.cache").write_bytes(b"stale cache")
    return copy


def fresh_environment(directory: Path) -> Path:
    """
    Make a virtual environment without pip whose Python also sees this
    environment's installed packages (Twisted and its dependencies) but
    not this environment's twistedchat; return its Python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A plain path line in a .pth file adds the folder to sys.path without
    # processing its own .pth files, so the editable twistedchat install of
    # this environment stays invisible.
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def pip_install(python: Path, *arguments: str) -> None:
    """
    Install into C{python}'s environment with this environment's pip,
    offline and without dependencies.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            *arguments,
        ],
        check=True,
    )


def twistd_help(python: Path, cwd: Path) -> str:
    """
    Run twistd (C{python -m twisted}) with --help in C{cwd}.
    """
    return subprocess.run(
        [str(python), "-m", "twisted", "--help"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_wheel(source_copy: Path, tmp_path: Path) -> None:
    """
    The wheel holds the plugin file and the browser client's files, but
    no twisted/__init__.py, twisted/plugins/__init__.py or dropin.cache,
    and once installed twistd lists chat.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source_copy),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("twistedchat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/twistedchat_plugin.py" in names
    assert "twistedchat/tap.py" in names
    static = source_copy / "twistedchat" / "static"
    page = {f"twistedchat/static/{path.name}" for path in static.iterdir() if path.is_file()}
    assert "twistedchat/static/index.html" in page
    assert page <= names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not any(name.endswith("dropin.cache") for name in names)

    python = fresh_environment(tmp_path / "venv")
    assert not lists_chat(twistd_help(python, tmp_path))
    pip_install(python, str(wheel))
    assert lists_chat(twistd_help(python, tmp_path))


def test_editable_install(source_copy: Path, tmp_path: Path) -> None:
    """
    After pip install -e, twistd run outside the checkout lists chat.
    """
    python = fresh_environment(tmp_path / "venv")
    pip_install(python, "--editable", str(source_copy))
    assert lists_chat(twistd_help(python, tmp_path))


def test_chat_help_documents_every_option(tmp_path: Path) -> None:
    """
    twistd chat --help documents every option, with its default where it
    has one.
    """
    result = subprocess.run(
        [str(BIN / "twistd"), "chat", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for option in [
        "--port=",
        "--max-nick-length=",
        "--max-line-length=",
        "--motd=",
        "--random-nicknames",
        "--registration-timeout=",
        "--log-messages",
        "--server-name=",
    ]:
        assert option in text
    for default in ["[default: tcp:12345]", "[default: 16]", "[default: 2048]", "[default: 60.0]"]:
        assert default in text
