"""
Accounts: registered nicknames and their passwords.

Passwords are hashed with Argon2id (C{argon2-cffi}) in Twisted's thread
pool, never on the reactor thread, and stored only as hashes. Checking a
password goes through C{twisted.cred}: a L{Portal} with an L{AccountRealm}
and an L{AccountChecker} over the accounts, so other credential sources
can plug in later.

The hashes are read at start-up (L{load_accounts}) and kept in memory, so
"is this nickname registered?" never waits; changes are written through
the database's C{adbapi} pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread
from zope.interface import Attribute, Interface, implementer

from twistedchat.nicknames import nickname_key

#: Shortest password accepted, in characters.
MINIMUM_PASSWORD_LENGTH = 8


class AccountError(ValueError):
    """
    A registration or password change was refused; C{str()} says why, fit
    to show the user.
    """


class IAccount(Interface):
    """
    The avatar of a user who proved they own a registered nickname.
    """

    nickname_key = Attribute("The account's nickname key (see nickname_key), a str.")


@implementer(IAccount)
@dataclass(frozen=True)
class Account:
    """
    A registered nickname whose password was checked.
    """

    nickname_key: str


@implementer(IRealm)
class AccountRealm:
    """
    Turns a checked nickname into an L{IAccount} avatar.
    """

    def requestAvatar(
        self, avatarId: bytes, mind: object, *interfaces: Any
    ) -> tuple[Any, Account, Callable[[], None]]:
        if IAccount not in interfaces:
            raise NotImplementedError("twistedchat accounts only provide IAccount")
        return IAccount, Account(avatarId.decode("utf-8")), lambda: None


def load_accounts(connection: Any) -> dict[str, str]:
    """
    Read every account's password hash, by nickname key (at start-up).
    """
    return dict(connection.execute("SELECT nickname_key, password_hash FROM accounts"))


class Accounts:
    """
    The registered nicknames.
    """

    def __init__(
        self,
        pool: ConnectionPool | None,
        clock: IReactorTime,
        hashes: dict[str, str] | None = None,
        hasher: PasswordHasher | None = None,
        run_in_thread: Callable[..., Deferred[Any]] = deferToThread,
    ) -> None:
        """
        @param pool: the database pool, or C{None} to keep accounts in
            memory only (C{--database :memory:}).
        @param hashes: password hashes by nickname key, from L{load_accounts}.
        @param hasher: Argon2id with argon2-cffi's default (RFC 9106)
            parameters unless given.
        @param run_in_thread: runs a function in a thread, returning a
            L{Deferred}; Twisted's thread pool by default.
        """
        self._pool = pool
        self._clock = clock
        self._hashes = dict(hashes or {})
        self._hasher = hasher or PasswordHasher()
        self._run_in_thread = run_in_thread

    def __contains__(self, key: object) -> bool:
        return key in self._hashes

    def is_registered(self, nickname: str) -> bool:
        """
        Return whether C{nickname} (compared case-insensitively) is
        registered.
        """
        return nickname_key(nickname) in self._hashes

    async def register(self, nickname: str, password: str) -> None:
        """
        Register C{nickname} with C{password}.

        @raise AccountError: it is registered already, or the password is
            too short.
        """
        key = nickname_key(nickname)
        if key in self._hashes:
            raise AccountError(f"The nickname {nickname} is registered already.")
        _check_strength(password)
        hashed = await self._run_in_thread(self._hasher.hash, password)
        if key in self._hashes:
            raise AccountError(f"The nickname {nickname} is registered already.")
        self._hashes[key] = hashed
        if self._pool is not None:
            await self._pool.runOperation(
                "INSERT INTO accounts (nickname_key, nickname, password_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                (key, nickname, hashed, self._clock.seconds()),
            )

    async def verify(self, nickname: str, password: str) -> bool:
        """
        Return whether C{password} is the password of C{nickname}; C{False}
        for a nickname that is not registered.
        """
        hashed = self._hashes.get(nickname_key(nickname))
        if hashed is None:
            return False
        try:
            return bool(await self._run_in_thread(self._hasher.verify, hashed, password))
        except (VerificationError, InvalidHashError):
            return False

    async def change_password(self, nickname: str, password: str) -> None:
        """
        Set a new password for the registered C{nickname}.

        @raise AccountError: the password is too short.
        """
        _check_strength(password)
        key = nickname_key(nickname)
        hashed = await self._run_in_thread(self._hasher.hash, password)
        self._hashes[key] = hashed
        if self._pool is not None:
            await self._pool.runOperation(
                "UPDATE accounts SET password_hash = ? WHERE nickname_key = ?", (hashed, key)
            )


def _check_strength(password: str) -> None:
    if len(password) < MINIMUM_PASSWORD_LENGTH:
        raise AccountError(f"A password needs at least {MINIMUM_PASSWORD_LENGTH} characters.")


@implementer(ICredentialsChecker)
class AccountChecker:
    """
    Checks a nickname and password (L{IUsernamePassword}, UTF-8) against
    L{Accounts}; the avatar ID is the nickname key, UTF-8.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes:
        nickname = credentials.username.decode("utf-8")
        if await self._accounts.verify(nickname, credentials.password.decode("utf-8")):
            return nickname_key(nickname).encode("utf-8")
        raise UnauthorizedLogin("wrong nickname or password")


def make_portal(accounts: Accounts) -> Portal:
    """
    Return the L{Portal} that checks passwords against C{accounts}.
    """
    return Portal(AccountRealm(), [AccountChecker(accounts)])
