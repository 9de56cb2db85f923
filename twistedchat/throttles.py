"""
Bookkeeping that bounds abuse across connections: connection attempts,
wrong passwords and account registrations, counted per address group.

Nothing here knows about sockets, protocols or messages: each class is
given the reactor's clock (L{IReactorTime}; tests pass a L{task.Clock})
and answers "may this happen now, and if not, how many seconds until it
may?". Times are in seconds, as C{clock.seconds()} returns them.

Where the rules come from:

  - Ergo (C{default.yaml}, C{server.ip-limits}; C{irc/connection_limits})
    counts connections per "address group": an IPv4 address, or the /64
    network of an IPv6 address (C{cidr-len-ipv4: 32},
    C{cidr-len-ipv6: 64}, "the typical prefix assigned by an ISP to an
    individual customer"). It throttles new connections per group
    (C{max-connections-per-window: 32} per C{window: 10m}; its older
    C{connection-throttling} block also banned a group that went over
    for C{ban-duration: 10m}) and exempts C{"localhost"} (127.0.0.0/8
    and ::1) by default. L{address_group}, L{Exemptions} and
    L{ConnectionThrottle} follow it.
  - ngIRCd (C{src/ngircd/conn.c}, C{New_Connection}) limits only
    concurrent connections per address (C{MaxConnectionsIP}, 5 by
    default), which L{twistedchat.factory.ChatFactory.admission} already
    does as C{max_per_ip}; it has no rate throttle, so
    L{ConnectionThrottle} adds Ergo's.
  - Ergo throttles password attempts per connection
    (C{accounts.login-throttling}: 3 per minute; C{irc/client.go} gives
    each new client its own C{loginThrottle}), which a client defeats by
    reconnecting, and account registrations across the whole server
    (C{accounts.registration.throttling}: 30 per 10 minutes).
    L{PasswordFailures} counts instead per account and per address
    group, across all connections, and makes each further attempt wait
    longer, one of the throttling techniques of NIST SP 800-63B, section
    5.2.2 ("Rate Limiting (Throttling)"); L{RegistrationLimit} counts
    registrations per address group.

Memory is bounded. Every table keeps its entries in the order they last
changed, and each entry knows when it may be forgotten; every call first
drops the expired entries at the old end, so the work is amortised O(1)
per call and no timer is needed. A table therefore holds at most the
address groups (or accounts) that changed within its longest lifetime
(given in each class), and never more than C{max_entries}: past that
the entry changed longest ago is dropped, which forgives that group
early but cannot grow memory. An entry takes about 300 bytes, so the
default 100,000 entries is about 30 MB per table at worst.

Wiring, for a new connection from C{host} (an IP address string, or
C{None} for a UNIX socket)::

    group = None if exemptions.covers(host) else address_group(host)
    wait = connection_throttle.attempt(group)      # None: let it in

and for a password for account C{key} (see L{PasswordFailures}) or a
registration (see L{RegistrationLimit}), the same C{group}: exempted
hosts (a WebSocket proxy on localhost, say) then share no counter.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from twisted.internet.interfaces import IReactorTime

#: Entries each table keeps at most, unless told otherwise.
DEFAULT_MAX_ENTRIES = 100_000

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_group(host: str | None, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str | None:
    """
    Return the key that per-address limits count C{host} under.

    An IPv4 address counts as itself, an IPv6 address as its /64 network
    (C{"2001:db8:1:2::/64"}), as Ergo's C{cidr-len-ipv4: 32} and
    C{cidr-len-ipv6: 64} do: one customer of an ISP usually gets a whole
    /64, so counting single IPv6 addresses would let them rotate through
    2 ** 64 of them. An IPv4-mapped IPv6 address (C{::ffff:1.2.3.4}, what
    a dual-stack listener reports for IPv4 peers) counts as the IPv4
    address.

    @param host: the peer's IP address, or C{None} where there is none
        (a UNIX socket).
    @param ipv4_prefix: bits of an IPv4 address that make its group
        (0 to 32); below 32 the group is written as a network,
        C{"192.0.2.0/24"}.
    @param ipv6_prefix: bits of an IPv6 address that make its group
        (0 to 128).
    @return: C{None} for C{None}; C{host} itself, unchanged, if it is not
        an IP address (never raises for any string).
    """
    if host is None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:
            return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
        address = mapped
    if ipv4_prefix >= 32:
        return str(address)
    return str(ipaddress.IPv4Network((address, ipv4_prefix), strict=False))


def _parse_network(value: str) -> list[_Network]:
    """
    Parse one exemption: C{"localhost"}, a network in CIDR notation or an
    address.

    @raise ValueError: C{value} is none of these; the message starts with
        C{value}.
    """
    text = value.strip()
    if text == "localhost":
        return [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    address_text, slash, prefix = text.partition("/")
    example = "write it like 10.0.0.0/8, 2001:db8::/32, 192.0.2.7 or localhost"
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        shown = address_text or "nothing"
        raise ValueError(
            f"{value}: not an IP network ({shown} is not an IPv4 or IPv6 address; {example})"
        ) from None
    if not slash:
        return [ipaddress.ip_network(address)]
    try:
        if prefix.isascii() and prefix.isdigit():
            if int(prefix) > address.max_prefixlen:
                raise ValueError
            return [ipaddress.ip_network((address, int(prefix)), strict=False)]
        return [ipaddress.ip_network(text, strict=False)]
    except ValueError:
        raise ValueError(
            f"{value}: not an IP network (the prefix length after the / must be"
            f" a number from 0 to {address.max_prefixlen}; {example})"
        ) from None


class Exemptions:
    """
    Networks whose hosts no per-address limit applies to, like Ergo's
    C{ip-limits.exempted} (C{irc/utils/net.go}, C{ParseNetList}).

    Each network is written in CIDR notation (C{"127.0.0.0/8"},
    C{"2001:db8::/32"}); a bare address means that address alone (/32 or
    /128), and C{"localhost"} means 127.0.0.0/8 and ::1/128, as in Ergo.
    Bits set after the prefix are ignored (C{"192.0.2.7/24"} is
    C{192.0.2.0/24}), as Go's C{net.ParseCIDR} does for Ergo.

    L{covers} is one C{if} when there are no networks, and otherwise
    checks each network of the host's IP version in turn.

    @ivar networks: the networks, in the order given.
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        """
        @param networks: the networks, as strings.
        @raise ValueError: one of them is not a network or address; the
            message starts with it, then says why in a sentence, e.g.
            C{"10.0.0.0/33: not an IP network (the prefix length ...)"}.
        """
        parsed: list[_Network] = []
        for value in networks:
            parsed.extend(_parse_network(value))
        self.networks: tuple[_Network, ...] = tuple(parsed)
        self._ipv4 = tuple(n for n in parsed if isinstance(n, ipaddress.IPv4Network))
        self._ipv6 = tuple(n for n in parsed if isinstance(n, ipaddress.IPv6Network))

    def __repr__(self) -> str:
        return f"Exemptions({[str(n) for n in self.networks]!r})"

    def __bool__(self) -> bool:
        """
        Return whether there is any network at all.
        """
        return bool(self.networks)

    def covers(self, host: str | None) -> bool:
        """
        Return whether C{host} is in one of the networks.

        An IPv4-mapped IPv6 address (C{::ffff:127.0.0.1}) is also checked
        as its IPv4 address.

        @param host: an IP address, or C{None} (a UNIX socket).
        @return: C{False} for C{None} and for strings that are not IP
            addresses.
        """
        if not self.networks or host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address):
            if any(address in network for network in self._ipv6):
                return True
            mapped = address.ipv4_mapped
            if mapped is None:
                return False
            return any(mapped in network for network in self._ipv4)
        return any(address in network for network in self._ipv4)


class _Expiring(Protocol):
    expires: float


_E = TypeVar("_E", bound=_Expiring)


class _ExpiringTable(Generic[_E]):
    """
    Entries by key, oldest change first, each forgotten once the clock
    reaches its C{expires}.

    Every change moves its entry to the new end (L{changed}), and no entry
    expires later than its last change plus the table's longest lifetime,
    so L{prune} only looks at the old end and stops at the first entry
    still alive: each entry is dropped once, which makes pruning amortised
    O(1). An entry further in that expires earlier is dropped when it is
    next looked up (L{get}) or when the old end reaches it. If the wall
    clock steps back by d seconds, entries live up to d seconds longer.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._entries: OrderedDict[str, _E] = OrderedDict()
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self, now: float) -> None:
        """
        Drop the expired entries at the old end.
        """
        entries = self._entries
        while entries:
            if next(iter(entries.values())).expires > now:
                return
            entries.popitem(last=False)

    def get(self, key: str, now: float) -> _E | None:
        """
        Return the live entry for C{key}, or C{None} (dropping it if it
        expired).
        """
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now:
            del self._entries[key]
            return None
        return entry

    def changed(self, key: str, entry: _E) -> None:
        """
        Store C{entry} as changed just now; past C{max_entries}, drop the
        entry changed longest ago.
        """
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        if len(entries) > self._max_entries:
            entries.popitem(last=False)

    def pop(self, key: str) -> _E | None:
        """
        Remove and return the entry for C{key}, if any.
        """
        return self._entries.pop(key, None)


@dataclass(slots=True)
class _Window:
    """
    One address group's connection attempts: C{count} since C{start}, and
    whether it is banned until C{expires}.
    """

    start: float
    count: int
    expires: float
    banned: bool = False


class ConnectionThrottle:
    """
    New connections per address group in a time window, as Ergo's
    C{ip-limits} throttle (C{irc/connection_limits}, C{GenericThrottle}).

    A group's window opens at its first attempt and lasts C{window}
    seconds; in it, C{limit} attempts are let in. The next one is refused
    and bans the group for C{ban} seconds from then (Ergo's former
    C{connection-throttling.ban-duration}); attempts while banned are
    refused and neither counted nor extend the ban, so a client retrying
    in a loop gets in once the ban ends. After the window (or the ban)
    the group starts afresh. Because windows are fixed, not sliding, a
    group can make up to 2 * C{limit} attempts within C{window} seconds
    across the end of one window and the start of the next.

    Defaults: 10 attempts a minute, then a 10-minute ban. Ergo allows 32
    per 10 minutes; 10 a minute lets a user reconnect a few times in a
    row (a flaky network, several clients at once) while cutting off a
    reconnect loop or a scan within seconds.

    Memory: an entry per group that attempted within the last
    max(C{window}, C{ban}) seconds, at most C{max_entries}.

    @ivar limit: attempts let in per window; C{0} turns throttling off.
    @ivar window: seconds a window lasts.
    @ivar ban: seconds a group that went over the limit is refused; C{0}
        refuses it only until its window ends.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limit: int = 10,
        window: float = 60.0,
        ban: float = 600.0,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        """
        @raise ValueError: C{limit} or C{ban} is negative, or C{window} is
            not positive.
        """
        if limit < 0 or window <= 0 or ban < 0:
            raise ValueError(
                f"need limit >= 0, window > 0 and ban >= 0, not {limit}, {window}, {ban}"
            )
        self._clock = clock
        self.limit = limit
        self.window = window
        self.ban = ban
        self._groups: _ExpiringTable[_Window] = _ExpiringTable(max_entries)

    def __len__(self) -> int:
        """
        Return how many address groups are remembered (for tests and
        monitoring).
        """
        return len(self._groups)

    def attempt(self, group: str | None) -> float | None:
        """
        Record a connection attempt from C{group}.

        @param group: from L{address_group}, or C{None} (a UNIX socket or
            an exempted host), which is always let in and not recorded.
        @return: C{None} to let it in (counted), or the seconds (a float
            above 0) until the group may connect again (not counted).
        """
        if group is None or not self.limit:
            return None
        now = self._clock.seconds()
        groups = self._groups
        groups.prune(now)
        entry = groups.get(group, now)
        if entry is None:
            groups.changed(group, _Window(now, 1, now + self.window))
            return None
        if entry.banned:
            return entry.expires - now
        if entry.count < self.limit:
            entry.count += 1
            return None
        if not self.ban:
            return entry.expires - now
        entry.banned = True
        entry.expires = now + self.ban
        groups.changed(group, entry)
        return self.ban


@dataclass(frozen=True)
class FailureReport:
    """
    What an account's owner is told when they sign in after wrong
    passwords were given for it.

    @ivar failures: wrong passwords since the owner last signed in (or
        since the account's record was forgotten; see
        L{PasswordFailures.remember_for}).
    @ivar last_at: when the last one was given, in the clock's seconds
        (seconds since the epoch with the real reactor).
    @ivar last_peer: who gave it, as the caller described the peer to
        L{PasswordFailures.failed}.
    """

    failures: int
    last_at: float
    last_peer: str


@dataclass(slots=True)
class _Failures:
    """
    Wrong passwords counted against one address group or account.

    @ivar count: failures the delay counts (forgotten after
        C{forget_after} seconds without one).
    @ivar checking: checks begun and not yet ended, counted as failures
        until they end.
    @ivar last: when the last failure was or the last check began.
    """

    count: int = 0
    checking: int = 0
    last: float = 0.0
    expires: float = 0.0


@dataclass(slots=True)
class _AccountFailures(_Failures):
    """
    An account's failures, and what its owner will be told.
    """

    unreported: int = 0
    last_failure_at: float = 0.0
    last_failure_peer: str = field(default="")


_F = TypeVar("_F", bound=_Failures)


class PasswordFailures:
    """
    Wrong passwords per account and per address group, across all
    connections, with delays that double.

    Each account and each address group has a counter of wrong
    passwords. Once one of them reaches C{free}, every further password
    for that account, or from that group, must wait
    min(2 ** (failures - C{free}), C{max_delay}) seconds after that
    counter's last failure (or last begun check, see L{begin}): 1, 2, 4,
    ... 256, then 300 seconds, with the defaults. A counter
    forgets after C{forget_after} seconds without a failure. Signing in
    resets the account's counter but not the group's, so an attacker
    cannot clear their address's count by signing in to an account of
    their own. Ergo instead allows 3 attempts per minute per connection
    (C{accounts.login-throttling}), which reconnecting resets.

    Worst case, with the defaults: an attacker who tries as soon as
    allowed, from any number of address groups, gets 22 passwords for one
    account checked in the first hour (3 at once, then after 1, 2, 4, ...
    256 seconds, by second 511, then one every 300 seconds) and 12 in
    each hour after that (3600 / C{max_delay}): under 300 a day. One
    address group gets the same number checked over all accounts
    together. L{begin} counts a check as a failure until it ends, so
    checks run in parallel from many connections gain nothing.

    The price is that the owner, too, waits up to C{max_delay} seconds
    per try while their account is under attack; they are never locked
    out. NIST SP 800-63B, section 5.2.2, suggests "an increasing wait
    period after each failed attempt" for this reason, besides a cap of
    100 consecutive failures that would lock the account, which is
    left out here: it would let anyone lock any account.

    Use, for a password given for the registered account C{key}::

        wait = failures.begin(key, group)
        if wait:
            ...  # refuse without checking: "try again in ceil(wait) seconds"
        else:
            ...  # check it (portal.login); then exactly one of:
            report = failures.succeeded(key, group)  # tell the owner, if any
            failures.failed(key, group, peer)  # wrong, or the check failed

    A check never ended counts as a failure until C{forget_after}.

    Memory: an entry per address group with a failure or check in the
    last C{forget_after} seconds, and one per account with a failure in
    the last C{remember_for} seconds; at most C{max_entries} of each.

    @ivar free: failures allowed without delay.
    @ivar max_delay: longest wait, in seconds.
    @ivar forget_after: seconds without a failure after which a counter
        starts again from 0.
    @ivar remember_for: seconds a report of failures is kept for the
        owner's next sign-in.
    """

    def __init__(
        self,
        clock: IReactorTime,
        free: int = 3,
        max_delay: float = 300.0,
        forget_after: float = 3600.0,
        *,
        remember_for: float = 7 * 24 * 3600.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        """
        @raise ValueError: C{free} is negative, C{max_delay} is not
            positive or longer than C{forget_after} (the counter would
            forget before the delay ended).
        """
        if free < 0 or not 0 < max_delay <= forget_after:
            raise ValueError(
                f"need free >= 0 and 0 < max_delay <= forget_after,"
                f" not {free}, {max_delay}, {forget_after}"
            )
        self._clock = clock
        self.free = free
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.remember_for = remember_for
        self._accounts: _ExpiringTable[_AccountFailures] = _ExpiringTable(max_entries)
        self._groups: _ExpiringTable[_Failures] = _ExpiringTable(max_entries)

    def __len__(self) -> int:
        """
        Return how many accounts and address groups are remembered (for
        tests and monitoring).
        """
        return len(self._accounts) + len(self._groups)

    def _now(self) -> float:
        """
        Return the time, after dropping expired entries.
        """
        now = self._clock.seconds()
        self._accounts.prune(now)
        self._groups.prune(now)
        return now

    def _delay(self, entry: _Failures | None, now: float) -> float:
        """
        Return the seconds until C{entry}'s counter lets a check begin.
        """
        if entry is None or now - entry.last >= self.forget_after:
            return 0.0
        failures = entry.count + entry.checking
        if failures < max(self.free, 1):
            return 0.0
        delay = min(2.0 ** min(failures - self.free, 64), self.max_delay)
        return max(0.0, entry.last + delay - now)

    def _wait(self, account_key: str, group: str | None, now: float) -> float:
        delay = self._delay(self._accounts.get(account_key, now), now)
        if group is not None:
            delay = max(delay, self._delay(self._groups.get(group, now), now))
        return delay

    def _update(
        self, table: _ExpiringTable[_F], key: str, entry: _F, now: float, failure: bool
    ) -> None:
        """
        Note in C{entry} that a check began (or, if C{failure}, that one
        failed) at C{now}, and store it as changed.
        """
        if now - entry.last >= self.forget_after:
            entry.count = entry.checking = 0
        if failure:
            entry.checking = max(0, entry.checking - 1)
            entry.count += 1
        else:
            entry.checking += 1
        entry.last = now
        entry.expires = now + self.forget_after
        if isinstance(entry, _AccountFailures) and entry.unreported:
            entry.expires = max(entry.expires, entry.last_failure_at + self.remember_for)
        table.changed(key, entry)

    def wait(self, account_key: str, group: str | None) -> float:
        """
        Return the seconds until a password for C{account_key} from
        C{group} may be checked: C{0.0} if now. Changes nothing; to check
        one, call L{begin}.

        @param account_key: the account's nickname key
            (L{twistedchat.nicknames.nickname_key}).
        @param group: from L{address_group}, or C{None} to count the
            account only (a UNIX socket, an exempted host).
        """
        return self._wait(account_key, group, self._now())

    def begin(self, account_key: str, group: str | None) -> float:
        """
        Ask to check a password for C{account_key} from C{group} (see
        L{wait}).

        If it may be checked now, note that a check began: until
        L{failed} or L{succeeded} ends it, it counts as a failure, so
        that checks begun at the same time on other connections (each
        waiting for its password hash) wait their turn.

        @return: C{0.0} if the check may go ahead (then call L{failed} or
            L{succeeded} once when it ends), or the seconds to wait
            (nothing noted; do not check the password).
        """
        now = self._now()
        delay = self._wait(account_key, group, now)
        if delay:
            return delay
        account = self._accounts.get(account_key, now) or _AccountFailures()
        self._update(self._accounts, account_key, account, now, failure=False)
        if group is not None:
            entry = self._groups.get(group, now) or _Failures()
            self._update(self._groups, group, entry, now, failure=False)
        return 0.0

    def failed(self, account_key: str, group: str | None, peer: str) -> None:
        """
        End a check that L{begin} allowed: the password was wrong.

        @param peer: who gave it, as the owner should be told (e.g. the
            peer's address); kept for the last failure only.
        """
        now = self._now()
        account = self._accounts.get(account_key, now) or _AccountFailures()
        account.unreported += 1
        account.last_failure_at = now
        account.last_failure_peer = peer
        self._update(self._accounts, account_key, account, now, failure=True)
        if group is not None:
            entry = self._groups.get(group, now) or _Failures()
            self._update(self._groups, group, entry, now, failure=True)

    def succeeded(self, account_key: str, group: str | None) -> FailureReport | None:
        """
        End a check that L{begin} allowed: the password was right. The
        account's counter starts again from 0; the group's keeps its
        failures.

        @return: the wrong passwords given for the account since its owner
            last signed in, to tell them, or C{None} if there were none.
        """
        now = self._now()
        if group is not None:
            entry = self._groups.get(group, now)
            if entry is not None:
                entry.checking = max(0, entry.checking - 1)
        account = self._accounts.pop(account_key)
        if account is None or not account.unreported or account.expires <= now:
            return None
        return FailureReport(account.unreported, account.last_failure_at, account.last_failure_peer)


@dataclass(slots=True)
class _Registrations:
    """
    When one address group's registrations in the last hour were, oldest
    first.
    """

    times: list[float]
    expires: float


class RegistrationLimit:
    """
    Account registrations per address group: at most C{per_hour} in any
    hour (a sliding window, exact).

    L{allow} counts a registration before it is made, so that several
    begun at once on different connections (each waits for a password
    hash) cannot all pass; if the registration then fails (the password
    is too short, the nickname was taken meanwhile), L{refund} uncounts
    it. Ergo limits registrations for the whole server instead
    (C{accounts.registration.throttling}: 30 per 10 minutes).

    Default: 3 an hour, enough for a household or a small NAT, few enough
    that squatting many nicknames takes many addresses.

    Memory: an entry per group that registered in the last hour, at most
    C{max_entries}.

    @ivar per_hour: registrations let in per group per hour; C{0} turns
        the limit off.
    @ivar window: the hour, in seconds.
    """

    window: float = 3600.0

    def __init__(
        self,
        clock: IReactorTime,
        per_hour: int = 3,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        """
        @raise ValueError: C{per_hour} is negative.
        """
        if per_hour < 0:
            raise ValueError(f"need per_hour >= 0, not {per_hour}")
        self._clock = clock
        self.per_hour = per_hour
        self._groups: _ExpiringTable[_Registrations] = _ExpiringTable(max_entries)

    def __len__(self) -> int:
        """
        Return how many address groups are remembered (for tests and
        monitoring).
        """
        return len(self._groups)

    def allow(self, group: str | None) -> float | None:
        """
        Ask to register an account from C{group}, and count it if allowed.

        @param group: from L{address_group}, or C{None} (a UNIX socket or
            an exempted host), which is always allowed and not counted.
        @return: C{None} if it may register now (counted; call L{refund}
            if the registration then fails), or the seconds until it may.
        """
        if group is None or not self.per_hour:
            return None
        now = self._clock.seconds()
        groups = self._groups
        groups.prune(now)
        entry = groups.get(group, now) or _Registrations([], now)
        times = entry.times
        while times and times[0] + self.window <= now:
            del times[0]
        if len(times) >= self.per_hour:
            return times[0] + self.window - now
        times.append(now)
        entry.expires = now + self.window
        groups.changed(group, entry)
        return None

    def refund(self, group: str | None) -> None:
        """
        Uncount the latest registration L{allow} counted for C{group},
        because it failed.
        """
        if group is None:
            return
        now = self._clock.seconds()
        entry = self._groups.get(group, now)
        if entry is None or not entry.times:
            return
        entry.times.pop()
        if not entry.times:
            self._groups.pop(group)


class TokenBucket:
    """
    One connection's flood control: a token bucket that holds at most
    C{burst} tokens and is refilled at C{rate} tokens per second (the
    algorithm of RFC 2697 section 3.1, as IRC servers' flood control
    uses it per connection: a line, or a byte, costs a token).

    Taking more than the bucket holds overdraws it; L{take} then says how
    long to wait until it holds enough again. The clock's time is passed
    in rather than kept, since every connection has two of these.
    """

    __slots__ = ("_rate", "_burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        """
        @param rate: tokens added per second; above 0.
        @param burst: the most tokens held; the bucket starts full.
        @param now: the clock's time, in seconds.
        """
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, amount: float, now: float, keep: float = 0.0) -> float:
        """
        Take C{amount} tokens at time C{now} (seconds), overdrawing if need
        be.

        @param keep: how many tokens the bucket should still hold.
        @return: seconds until it holds C{keep} tokens again; C{0.0} if it
            does now.
        """
        tokens = min(self._burst, self._tokens + (now - self._at) * self._rate) - amount
        self._tokens, self._at = tokens, now
        return max(0.0, (keep - tokens) / self._rate)
