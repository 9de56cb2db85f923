"""
Accounts: registered nicknames and their passwords.

Passwords are hashed with Argon2id (C{argon2-cffi}) in Twisted's thread
pool, never on the reactor thread, and stored only as hashes. Checking a
password goes through C{twisted.cred}: a L{Portal} with an L{AccountRealm}
and an L{AccountChecker} over the accounts, so other credential sources
can plug in later.

The hashes are read at start-up (L{load_accounts}) and kept in memory, so
"is this nickname registered?" never waits; changes are written through
the database's C{adbapi} pool (SQLite or PostgreSQL). In a cluster, where
another node may register a nickname or change its password, that one
account is read again (L{Accounts.refresh}) when it says so; if two nodes
register the same nickname at once, the database's primary key decides,
and the loser's registration is refused as taken.

Argon2id with argon2-cffi's defaults takes 64 MiB and about 0.1 s per
hash, so at most L{CONCURRENT_HASHES} run at once; more wait their turn,
in order, instead of taking the server's memory with them.
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
from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread
from zope.interface import Attribute, Interface, implementer

from twistedchat import postgres
from twistedchat.database import Dialect, Query, dialect_of, is_duplicate
from twistedchat.nicknames import nickname_key, nickname_skeleton

#: Shortest password accepted, in characters.
MINIMUM_PASSWORD_LENGTH = 8

#: Password hashes computed at the same time, at most (each takes 64 MiB
#: with argon2-cffi's default, RFC 9106 "low memory" parameters).
CONCURRENT_HASHES = 2


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
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Account, Callable[[], None]]:
        if IAccount not in interfaces:
            raise NotImplementedError("twistedchat accounts only provide IAccount")
        assert isinstance(avatarId, bytes)  # AccountChecker never gives ANONYMOUS
        return IAccount, Account(avatarId.decode("utf-8")), lambda: None


@dataclass(frozen=True)
class StoredAccount:
    """
    What is kept of an account.

    @ivar password_hash: Argon2id, in the PHC string format.
    @ivar created_at: when it was registered, in seconds since the epoch.
    """

    password_hash: str
    created_at: float


_LOAD_ACCOUNTS = Query(
    "SELECT nickname_key, password_hash, created_at FROM accounts", postgres.LOAD_ACCOUNTS
)
_LOAD_ACCOUNT = Query(
    "SELECT password_hash, created_at FROM accounts WHERE nickname_key = ?", postgres.LOAD_ACCOUNT
)
_INSERT_ACCOUNT = Query(
    "INSERT INTO accounts (nickname_key, nickname, password_hash, created_at) VALUES (?, ?, ?, ?)",
    postgres.INSERT_ACCOUNT,
)
_UPDATE_PASSWORD = Query(
    "UPDATE accounts SET password_hash = ? WHERE nickname_key = ?", postgres.UPDATE_PASSWORD
)


def load_accounts(connection: Any) -> dict[str, StoredAccount]:
    """
    Read every account, by nickname key (at start-up), from an open
    C{sqlite3} or psycopg connection.
    """
    return {
        key: StoredAccount(password_hash, created_at)
        for key, password_hash, created_at in connection.execute(
            _LOAD_ACCOUNTS.text(dialect_of(connection))
        )
    }


class Accounts:
    """
    The registered nicknames.
    """

    def __init__(
        self,
        pool: ConnectionPool | None,
        clock: IReactorTime,
        accounts: dict[str, StoredAccount] | None = None,
        hasher: PasswordHasher | None = None,
        run_in_thread: Callable[..., Deferred[Any]] = deferToThread,
    ) -> None:
        """
        @param pool: the database pool, or C{None} to keep accounts in
            memory only (C{--database :memory:}).
        @param accounts: the accounts by nickname key, from L{load_accounts}.
        @param hasher: Argon2id with argon2-cffi's default (RFC 9106)
            parameters unless given.
        @param run_in_thread: runs a function in a thread, returning a
            L{Deferred}; Twisted's thread pool by default. At most
            L{CONCURRENT_HASHES} calls run at once.
        """
        self._pool = pool
        self._dialect = dialect_of(pool) if pool is not None else Dialect.SQLITE
        self._clock = clock
        self._accounts = dict(accounts or {})
        # Nickname keys of the accounts, by nickname skeleton (a set: a
        # database from before look-alikes were refused may hold several).
        self._skeletons: dict[str, set[str]] = {}
        for key in self._accounts:
            self._skeletons.setdefault(nickname_skeleton(key), set()).add(key)
        self._hasher = hasher or PasswordHasher()
        self._run_in_thread = run_in_thread
        self._hashing = DeferredSemaphore(CONCURRENT_HASHES)
        #: Called with an account's nickname key once it was registered or
        #: its password changed and written; a cluster tells the other
        #: nodes, which L{refresh} it.
        self.changed: Callable[[str], None] | None = None

    def __contains__(self, key: object) -> bool:
        return key in self._accounts

    def _hash(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """
        Run C{function(*args)} in a thread once fewer than
        L{CONCURRENT_HASHES} hashes are running.
        """
        return self._hashing.run(self._run_in_thread, function, *args)

    def is_registered(self, nickname: str) -> bool:
        """
        Return whether C{nickname} (compared case-insensitively) is
        registered.
        """
        return nickname_key(nickname) in self._accounts

    def is_confusable(self, nickname: str) -> bool:
        """
        Return whether C{nickname} is not registered but looks like a
        registered nickname (the same L{nickname_skeleton}), so that taking
        it would pass for that account's owner.
        """
        keys = self._skeletons.get(nickname_skeleton(nickname), ())
        return bool(keys) and nickname_key(nickname) not in keys

    def is_taken(self, key: str) -> bool:
        """
        Return whether the nickname key C{key}, or one that looks like it,
        is registered.
        """
        return nickname_skeleton(key) in self._skeletons

    def registered_at(self, key: str) -> float | None:
        """
        Return when the account with nickname key C{key} was registered, in
        seconds since the epoch, or C{None} if there is none.
        """
        account = self._accounts.get(key)
        return account.created_at if account is not None else None

    async def register(self, nickname: str, password: str) -> None:
        """
        Register C{nickname} with C{password}.

        @raise AccountError: it, or one that looks like it, is registered
            already, or the password is too short.
        """
        key = nickname_key(nickname)
        self._check_free(nickname)
        _check_strength(password)
        hashed = await self._hash(self._hasher.hash, password)
        self._check_free(nickname)  # again: another may have won the race
        account = StoredAccount(hashed, self._clock.seconds())
        self._set(key, account)
        if self._pool is not None:
            try:
                await self._pool.runOperation(
                    _INSERT_ACCOUNT.text(self._dialect),
                    (key, nickname, hashed, account.created_at),
                )
            except Exception as e:
                if not is_duplicate(e):
                    raise
                # Another node registered it first: theirs stands.
                self._set(key, None)
                raise AccountError(f"The nickname {nickname} is registered already.") from None
        if self.changed is not None:
            self.changed(key)

    def _set(self, key: str, account: StoredAccount | None) -> None:
        """
        Keep C{account} as the account with nickname key C{key}, or, for
        C{None}, forget that account.
        """
        skeleton = nickname_skeleton(key)
        if account is not None:
            self._accounts[key] = account
            self._skeletons.setdefault(skeleton, set()).add(key)
            return
        self._accounts.pop(key, None)
        keys = self._skeletons.get(skeleton)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._skeletons[skeleton]

    def refresh(self, key: str) -> Deferred[None]:
        """
        Read the account with nickname key C{key} again from the database,
        and keep what it holds now: added, with a changed password, or
        gone. In a cluster, for an account another node registered or
        changed (docs/cluster.md, section 12). Without a database, nothing
        changes.

        @return: fires once it is read; fails if the database cannot be
            read (what is kept is then unchanged).
        """
        if self._pool is None:
            return succeed(None)
        d: Deferred[list[tuple[str, float]]] = self._pool.runQuery(
            _LOAD_ACCOUNT.text(self._dialect), (key,)
        )

        def keep(rows: list[tuple[str, float]]) -> None:
            if rows:
                password_hash, created_at = rows[0]
                self._set(key, StoredAccount(password_hash, created_at))
            else:
                self._set(key, None)

        return d.addCallback(keep)

    def _check_free(self, nickname: str) -> None:
        """
        @raise AccountError: C{nickname}, or one that looks like it, is
            registered.
        """
        if nickname_key(nickname) in self._accounts:
            raise AccountError(f"The nickname {nickname} is registered already.")
        if self.is_confusable(nickname):
            raise AccountError(f"The nickname {nickname} looks like one registered already.")

    async def verify(self, nickname: str, password: str) -> bool:
        """
        Return whether C{password} is the password of C{nickname}; C{False}
        for a nickname that is not registered.
        """
        account = self._accounts.get(nickname_key(nickname))
        if account is None:
            return False
        try:
            return bool(await self._hash(self._hasher.verify, account.password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    async def change_password(self, nickname: str, password: str) -> None:
        """
        Set a new password for the registered C{nickname}.

        @raise AccountError: the password is too short.
        """
        _check_strength(password)
        key = nickname_key(nickname)
        hashed = await self._hash(self._hasher.hash, password)
        self._accounts[key] = StoredAccount(hashed, self._accounts[key].created_at)
        if self._pool is not None:
            await self._pool.runOperation(_UPDATE_PASSWORD.text(self._dialect), (hashed, key))
        if self.changed is not None:
            self.changed(key)


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

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
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
