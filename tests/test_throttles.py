"""
Tests for the bookkeeping that bounds abuse across connections: address
groups, exemptions, the connection throttle, wrong-password delays and
the registration limit, all on a fake clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from twistedchat.throttles import (
    ConnectionThrottle,
    Exemptions,
    FailureReport,
    PasswordFailures,
    RegistrationLimit,
    address_group,
)


def ipv4(n: int) -> str:
    """
    Return the C{n}th address of 10.0.0.0/8, as a string.
    """
    return str(ipaddress.IPv4Address(0x0A000000 + n))


# address_group


def test_ipv4_group_is_the_address() -> None:
    """
    An IPv4 address is its own group.
    """
    assert address_group("192.0.2.7") == "192.0.2.7"


def test_ipv6_group_is_its_64() -> None:
    """
    An IPv6 address counts as its /64 network: addresses in one /64 share
    a group, the next /64 is another.
    """
    assert address_group("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_group("::1") == "::/64"


def test_ipv4_mapped_counts_as_ipv4() -> None:
    """
    An IPv4-mapped IPv6 address, as a dual-stack listener reports an IPv4
    peer, counts as the IPv4 address.
    """
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7"


def test_no_address_no_group() -> None:
    """
    C{None} (a UNIX socket) has no group.
    """
    assert address_group(None) is None


@pytest.mark.parametrize("host", ["", "example.com", "1.2.3.4.5", "01.2.3.4", "::g", "unix"])
def test_invalid_host_unchanged(host: str) -> None:
    """
    A string that is not an IP address is returned as it is.
    """
    assert address_group(host) == host


def test_other_prefixes() -> None:
    """
    The IPv4 and IPv6 prefix lengths can be chosen, as Ergo's
    C{cidr-len-ipv4} and C{cidr-len-ipv6}.
    """
    assert address_group("192.0.2.7", ipv4_prefix=24) == "192.0.2.0/24"
    assert address_group("::ffff:192.0.2.7", ipv4_prefix=24) == "192.0.2.0/24"
    assert address_group("2001:db8:1:2::1", ipv6_prefix=48) == "2001:db8:1::/48"
    assert address_group("2001:db8::1", ipv6_prefix=128) == "2001:db8::1/128"


@given(st.text())
def test_group_never_raises(host: str) -> None:
    """
    Any string gives a string.
    """
    assert isinstance(address_group(host), str)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_same_64_same_group(network: int, low1: int, low2: int) -> None:
    """
    Two IPv6 addresses share a group exactly when their first 64 bits
    are equal (IPv4-mapped addresses aside).
    """
    first = str(ipaddress.IPv6Address((network << 64) | low1))
    second = str(ipaddress.IPv6Address((network << 64) | low2))
    if ipaddress.IPv6Address(first).ipv4_mapped is None and (
        ipaddress.IPv6Address(second).ipv4_mapped is None
    ):
        assert address_group(first) == address_group(second)
        other = str(ipaddress.IPv6Address((((network + 1) % 2**64) << 64) | low1))
        assert address_group(other) != address_group(first)


# Exemptions


def test_exemptions_cover_networks() -> None:
    """
    Hosts in an IPv4 or IPv6 network are covered; others are not.
    """
    exemptions = Exemptions(["10.0.0.0/8", "2001:db8::/32"])
    assert exemptions.covers("10.1.2.3")
    assert exemptions.covers("2001:db8:ffff::1")
    assert not exemptions.covers("11.0.0.1")
    assert not exemptions.covers("2001:db9::1")


def test_bare_address_is_one_host() -> None:
    """
    A bare address covers itself only (/32 or /128).
    """
    exemptions = Exemptions(["192.0.2.7", "2001:db8::7"])
    assert exemptions.covers("192.0.2.7")
    assert not exemptions.covers("192.0.2.8")
    assert exemptions.covers("2001:db8::7")
    assert not exemptions.covers("2001:db8::8")


def test_localhost_keyword() -> None:
    """
    C{localhost} means 127.0.0.0/8 and ::1, as in Ergo.
    """
    exemptions = Exemptions(["localhost"])
    assert exemptions.covers("127.0.0.1")
    assert exemptions.covers("127.255.0.1")
    assert exemptions.covers("::1")
    assert not exemptions.covers("::2")


def test_exemptions_ipv4_mapped() -> None:
    """
    An IPv4-mapped IPv6 address is covered by the IPv4 network of its
    IPv4 address.
    """
    assert Exemptions(["127.0.0.0/8"]).covers("::ffff:127.0.0.1")
    assert not Exemptions(["127.0.0.0/8"]).covers("::ffff:128.0.0.1")
    assert Exemptions(["::ffff:0:0/96"]).covers("::ffff:128.0.0.1")


def test_host_bits_ignored() -> None:
    """
    Bits after the prefix are ignored, as Go's C{net.ParseCIDR} does.
    """
    assert Exemptions(["192.0.2.7/24"]).covers("192.0.2.200")


def test_netmask_form() -> None:
    """
    A netmask after the slash is understood too.
    """
    assert Exemptions(["10.0.0.0/255.0.0.0"]).covers("10.9.9.9")


def test_exemptions_cover_no_unix_socket_or_garbage() -> None:
    """
    C{None} and strings that are not IP addresses are never covered.
    """
    exemptions = Exemptions(["0.0.0.0/0", "::/0"])
    assert not exemptions.covers(None)
    assert not exemptions.covers("example.com")


def test_empty_exemptions() -> None:
    """
    No networks: nothing is covered, and the exemptions are false.
    """
    exemptions = Exemptions()
    assert not exemptions
    assert not exemptions.covers("127.0.0.1")
    assert Exemptions(["localhost"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.0/33", "prefix length after the / must be a number from 0 to 32"),
        ("2001:db8::/129", "from 0 to 128"),
        ("10.0.0.0/x", "from 0 to 32"),
        ("10.0.0.0/", "from 0 to 32"),
        ("10.0.0.0/-1", "from 0 to 32"),
        ("example.com", "example.com is not an IPv4 or IPv6 address"),
        ("10.0.0/8", "10.0.0 is not an IPv4 or IPv6 address"),
        ("", "nothing is not an IPv4 or IPv6 address"),
    ],
)
def test_bad_network(value: str, reason: str) -> None:
    """
    A value that is not a network raises L{ValueError} whose message
    starts with the value and says why.
    """
    with pytest.raises(ValueError) as caught:
        Exemptions(["localhost", value])
    message = str(caught.value)
    assert message.startswith(f"{value}: not an IP network (")
    assert reason in message


# ConnectionThrottle


def test_throttle_allows_limit_then_bans() -> None:
    """
    C{limit} attempts in a window are let in; the next is refused and bans
    the group for C{ban} seconds.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, limit=3, window=60, ban=600)
    for _ in range(3):
        assert throttle.attempt("192.0.2.7") is None
        clock.advance(1)
    assert throttle.attempt("192.0.2.7") == 600


def test_ban_not_extended() -> None:
    """
    Attempts during a ban are refused with the seconds left, and do not
    extend it; once it ends the group gets a fresh window.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, limit=2, window=60, ban=600)
    throttle.attempt("g")
    throttle.attempt("g")
    assert throttle.attempt("g") == 600
    clock.advance(100)
    assert throttle.attempt("g") == 500
    clock.advance(499)
    assert throttle.attempt("g") == 1
    clock.advance(1)
    assert throttle.attempt("g") is None
    assert throttle.attempt("g") is None
    assert throttle.attempt("g") == 600


def test_window_resets() -> None:
    """
    Once a window has passed, the group starts counting again.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, limit=2, window=60, ban=600)
    throttle.attempt("g")
    throttle.attempt("g")
    clock.advance(60)
    assert throttle.attempt("g") is None
    assert throttle.attempt("g") is None
    assert throttle.attempt("g") == 600


def test_groups_counted_apart() -> None:
    """
    One group being banned does not affect another.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, limit=1)
    throttle.attempt("a")
    assert throttle.attempt("a") is not None
    assert throttle.attempt("b") is None


def test_no_group_always_allowed() -> None:
    """
    C{None} (a UNIX socket, an exempted host) is always let in and not
    remembered.
    """
    throttle = ConnectionThrottle(Clock(), limit=1)
    for _ in range(10):
        assert throttle.attempt(None) is None
    assert len(throttle) == 0


def test_limit_zero_disables() -> None:
    """
    C{limit=0} lets everything in and remembers nothing.
    """
    throttle = ConnectionThrottle(Clock(), limit=0)
    for _ in range(100):
        assert throttle.attempt("g") is None
    assert len(throttle) == 0


def test_no_ban_refuses_until_window_ends() -> None:
    """
    With C{ban=0}, attempts over the limit are refused only until the
    window ends, as Ergo's C{GenericThrottle} does.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, limit=1, window=60, ban=0)
    throttle.attempt("g")
    clock.advance(45)
    assert throttle.attempt("g") == 15
    clock.advance(15)
    assert throttle.attempt("g") is None


def test_throttle_defaults() -> None:
    """
    By default 10 attempts a minute are let in, then the group is banned
    for ten minutes.
    """
    throttle = ConnectionThrottle(Clock())
    assert [throttle.attempt("g") for _ in range(11)] == [None] * 10 + [600]


@pytest.mark.parametrize(
    "arguments", [{"limit": -1}, {"window": 0}, {"ban": -1}, {"max_entries": 0}]
)
def test_throttle_bad_arguments(arguments: dict[str, Any]) -> None:
    """
    Negative limits or bans, an empty window or no room raise
    L{ValueError}.
    """
    with pytest.raises(ValueError):
        ConnectionThrottle(Clock(), **arguments)


def test_throttle_forgets_old_addresses() -> None:
    """
    100,000 addresses connecting once each, 10 ms apart, leave only those
    of the last window remembered, and none once it has passed.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, window=60, ban=600)
    most = 0
    for n in range(100_000):
        assert throttle.attempt(address_group(ipv4(n))) is None
        most = max(most, len(throttle))
        clock.advance(0.01)
    assert 6000 <= most <= 6002
    clock.advance(60)
    throttle.attempt("192.0.2.7")
    assert len(throttle) == 1


def test_throttle_forgets_bans() -> None:
    """
    Banned groups are forgotten once their bans end; until then the table
    holds at most the groups seen during the last C{ban} seconds.
    """
    clock = Clock()
    throttle = ConnectionThrottle(clock, limit=1, window=60, ban=600)
    for n in range(10_000):
        throttle.attempt(ipv4(n))
        assert throttle.attempt(ipv4(n)) == 600
        clock.advance(0.1)
    assert 5999 <= len(throttle) <= 6001
    clock.advance(600)
    throttle.attempt("192.0.2.7")
    assert len(throttle) == 1


def test_throttle_max_entries() -> None:
    """
    Past C{max_entries}, the group changed longest ago is forgotten: the
    table never grows beyond it, however fast addresses arrive.
    """
    throttle = ConnectionThrottle(Clock(), limit=1, max_entries=100)
    assert throttle.attempt("first") is None
    assert throttle.attempt("first") == 600
    for n in range(1000):
        throttle.attempt(ipv4(n))
    assert len(throttle) == 100
    assert throttle.attempt("first") is None


# PasswordFailures


def try_password(
    failures: PasswordFailures, account: str, group: str | None, right: bool = False
) -> FailureReport | bool | None:
    """
    Try a password for C{account} from C{group} the way the server does:
    C{False} if it has to wait; otherwise check it, wrong unless C{right}
    (then return what the owner is told), and return C{True} if wrong.
    """
    if failures.begin(account, group):
        return False
    if right:
        return failures.succeeded(account, group)
    failures.failed(account, group, f"peer in {group}")
    return True


def test_free_failures_then_doubling_delays() -> None:
    """
    The first C{free} wrong passwords need no wait; then each further
    check waits 1, 2, 4, ... seconds after the last failure, at most
    C{max_delay}.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=3, max_delay=300)
    for _ in range(3):
        assert failures.wait("alice", "g") == 0
        assert try_password(failures, "alice", "g") is True
    delays = []
    for _ in range(12):
        delay = failures.wait("alice", "g")
        delays.append(delay)
        assert failures.begin("alice", "g") == delay
        clock.advance(delay)
        assert try_password(failures, "alice", "g") is True
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_wait_counts_down() -> None:
    """
    The wait is measured from the last failure.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=1)
    try_password(failures, "alice", "g")
    assert failures.wait("alice", "g") == 1
    clock.advance(0.25)
    assert failures.wait("alice", "g") == 0.75
    clock.advance(0.75)
    assert failures.wait("alice", "g") == 0


def attack_for(
    clock: Clock,
    failures: PasswordFailures,
    seconds: float,
    account: str | Callable[[int], str],
    group: str | Callable[[int], str],
) -> int:
    """
    Try wrong passwords as soon as allowed for C{seconds}, and return how
    many were checked. C{account} and C{group} are called with the
    attempt's number to give its account key and address group.
    """
    end = clock.seconds() + seconds
    checked = 0
    while clock.seconds() < end:
        n = checked
        key = account(n) if callable(account) else account
        where = group(n) if callable(group) else group
        delay = failures.begin(key, where)
        if delay:
            clock.advance(delay)
            continue
        failures.failed(key, where, f"attacker {n}")
        checked += 1
    return checked


#: Passwords checked for one account in the first hour of an attack, at
#: most, with the default delays: 3 free, then after waits of 1, 2, 4,
#: ... 256 seconds (9 more by second 511), then one every 300 seconds
#: (10 more by second 3600).
FIRST_HOUR = 22

#: Passwords checked for one account in each later hour: 3600 / 300.
LATER_HOURS = 12


def test_worst_case_guesses_per_hour() -> None:
    """
    An attacker who tries passwords for one account as soon as allowed
    gets 22 checked in the first hour and 12 in each later hour (well
    under 40 an hour); meanwhile another account, from another address
    group, signs in at once.
    """
    clock = Clock()
    failures = PasswordFailures(clock)
    assert attack_for(clock, failures, 3600, "alice", "203.0.113.66") == FIRST_HOUR
    assert FIRST_HOUR < 40
    assert failures.wait("bob", "192.0.2.7") == 0
    assert try_password(failures, "bob", "192.0.2.7", right=True) is None
    for _ in range(23):
        start = clock.seconds()
        checked = attack_for(clock, failures, 3600, "alice", "203.0.113.66")
        assert checked <= LATER_HOURS
        assert clock.seconds() - start < 3600 + 300
        assert failures.wait("bob", "192.0.2.8") == 0


def test_many_addresses_gain_nothing() -> None:
    """
    An attacker trying one account from a new address group each time
    gets no more passwords checked than from one group.
    """
    clock = Clock()
    failures = PasswordFailures(clock)
    checked = attack_for(clock, failures, 3600, "alice", lambda n: f"2001:db8:{n:x}::/64")
    assert checked == FIRST_HOUR


def test_many_accounts_gain_nothing() -> None:
    """
    An attacker trying a different account each time from one address
    group gets no more passwords checked in all than against one account;
    other groups are unaffected.
    """
    clock = Clock()
    failures = PasswordFailures(clock)
    checked = attack_for(clock, failures, 3600, lambda n: f"user{n}", "203.0.113.66")
    assert checked == FIRST_HOUR
    assert failures.wait("user0", "192.0.2.7") == 0


def test_parallel_checks_wait_their_turn() -> None:
    """
    Checks begun at the same moment on many connections (each waiting for
    its password hash) count as failures until they end: only C{free} of
    them go ahead.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=3)
    begun = [failures.begin("alice", f"group{n}") for n in range(10)]
    assert begun == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert failures.begin("bob", "group0") == 0


def test_success_resets_account_and_reports() -> None:
    """
    Signing in resets the account's counter and returns how many wrong
    passwords were given since the last sign-in, when the last was and
    from where; the next sign-in has nothing to report.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=3)
    for n in range(5):
        clock.advance(failures.wait("alice", f"group{n}"))
        failures.begin("alice", f"group{n}")
        failures.failed("alice", f"group{n}", f"peer {n}")
    last = clock.seconds()
    clock.advance(failures.wait("alice", "home"))
    assert failures.begin("alice", "home") == 0
    assert failures.succeeded("alice", "home") == FailureReport(5, last, "peer 4")
    assert failures.wait("alice", "elsewhere") == 0
    assert try_password(failures, "alice", "home", right=True) is None


def test_success_keeps_group_count() -> None:
    """
    Signing in to one's own account does not clear the address group's
    count of wrong passwords given for other accounts.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=3)
    for n in range(5):
        clock.advance(failures.wait(f"victim{n}", "attacker"))
        try_password(failures, f"victim{n}", "attacker")
    assert failures.begin("mallory", "attacker") == 4
    clock.advance(4)
    assert try_password(failures, "mallory", "attacker", right=True) is None
    assert failures.wait("victim9", "attacker") > 0


def test_no_group() -> None:
    """
    Without an address group (a UNIX socket, an exempted host) only the
    account is counted.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=1)
    try_password(failures, "alice", None)
    assert failures.wait("alice", None) == 1
    assert failures.wait("bob", None) == 0
    assert len(failures) == 1


def test_counters_forget() -> None:
    """
    After C{forget_after} seconds without a failure, a counter starts
    again from 0.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=3, forget_after=3600)
    for _ in range(3):
        try_password(failures, "alice", "g")
    clock.advance(3599)
    assert failures.begin("alice", "g") == 0
    failures.failed("alice", "g", "peer")
    assert failures.wait("alice", "g") == 2
    clock.advance(3600)
    assert failures.wait("alice", "g") == 0
    for _ in range(3):
        assert try_password(failures, "alice", "g") is True
    assert failures.wait("alice", "g") == 1


def test_report_outlives_counter() -> None:
    """
    The owner is told about wrong passwords even after the delay counter
    forgot them, for C{remember_for} seconds.
    """
    clock = Clock()
    failures = PasswordFailures(clock, remember_for=86400)
    try_password(failures, "alice", "g")
    clock.advance(7200)
    try_password(failures, "alice", "g")
    last = clock.seconds()
    clock.advance(80000)
    assert try_password(failures, "alice", "home", right=True) == FailureReport(
        2, last, "peer in g"
    )
    try_password(failures, "alice", "g")
    clock.advance(86400)
    assert try_password(failures, "alice", "home", right=True) is None


def test_unfinished_check_forgotten() -> None:
    """
    A check that was begun and never ended counts as a failure until the
    counter forgets it.
    """
    clock = Clock()
    failures = PasswordFailures(clock, free=1, forget_after=3600)
    failures.begin("alice", "g")
    assert failures.wait("alice", "g") == 1
    clock.advance(3600)
    assert failures.wait("alice", "g") == 0
    assert len(failures) == 0


def test_password_failures_forget_old_addresses() -> None:
    """
    100,000 wrong passwords from distinct address groups for distinct
    accounts, 100 ms apart, leave only the recent ones remembered, and
    none once C{forget_after} and C{remember_for} have passed.
    """
    clock = Clock()
    failures = PasswordFailures(clock, forget_after=600, remember_for=1200)
    most = 0
    for n in range(100_000):
        assert try_password(failures, f"user{n}", ipv4(n)) is True
        most = max(most, len(failures))
        clock.advance(0.1)
    assert most <= 6000 + 12000 + 2
    clock.advance(1200)
    try_password(failures, "alice", "g")
    assert len(failures) == 2


def test_password_failures_max_entries() -> None:
    """
    Each table keeps at most C{max_entries} entries.
    """
    failures = PasswordFailures(Clock(), max_entries=50)
    for n in range(1000):
        try_password(failures, f"user{n}", ipv4(n))
    assert len(failures) == 100


@pytest.mark.parametrize(
    "arguments",
    [{"free": -1}, {"max_delay": 0}, {"max_delay": 7200, "forget_after": 3600}],
)
def test_password_failures_bad_arguments(arguments: dict[str, Any]) -> None:
    """
    A negative C{free}, no delay, or a delay longer than the counters are
    remembered raise L{ValueError}.
    """
    with pytest.raises(ValueError):
        PasswordFailures(Clock(), **arguments)


# RegistrationLimit


def test_registrations_per_hour() -> None:
    """
    C{per_hour} registrations in an hour are allowed; the next is refused
    with the seconds until the oldest is an hour old.
    """
    clock = Clock()
    limit = RegistrationLimit(clock, per_hour=3)
    for _ in range(3):
        assert limit.allow("g") is None
        clock.advance(600)
    assert limit.allow("g") == 1800
    clock.advance(1800)
    assert limit.allow("g") is None
    assert limit.allow("g") == 600


def test_refund() -> None:
    """
    A registration that failed and was refunded does not count.
    """
    clock = Clock()
    limit = RegistrationLimit(clock, per_hour=2)
    assert limit.allow("g") is None
    limit.refund("g")
    assert limit.allow("g") is None
    assert limit.allow("g") is None
    assert limit.allow("g") == 3600
    limit.refund("g")
    limit.refund("other")
    limit.refund(None)
    assert limit.allow("g") is None


def test_refund_everything_forgets_group() -> None:
    """
    Refunding a group's only registration forgets the group.
    """
    limit = RegistrationLimit(Clock())
    limit.allow("g")
    limit.refund("g")
    assert len(limit) == 0


def test_registration_groups_apart() -> None:
    """
    One group's registrations do not limit another's.
    """
    limit = RegistrationLimit(Clock(), per_hour=1)
    limit.allow("a")
    assert limit.allow("a") == 3600
    assert limit.allow("b") is None


def test_registration_no_group_or_off() -> None:
    """
    C{None} is always allowed and C{per_hour=0} turns the limit off;
    neither remembers anything.
    """
    limit = RegistrationLimit(Clock(), per_hour=1)
    off = RegistrationLimit(Clock(), per_hour=0)
    for _ in range(10):
        assert limit.allow(None) is None
        assert off.allow("g") is None
    assert len(limit) == len(off) == 0
    with pytest.raises(ValueError):
        RegistrationLimit(Clock(), per_hour=-1)


def test_registrations_forget_old_addresses() -> None:
    """
    100,000 groups registering once each, 100 ms apart, leave only those
    of the last hour remembered, and none an hour later.
    """
    clock = Clock()
    limit = RegistrationLimit(clock)
    most = 0
    for n in range(100_000):
        assert limit.allow(ipv4(n)) is None
        most = max(most, len(limit))
        clock.advance(0.1)
    assert most <= 36_001
    clock.advance(3600)
    limit.allow("g")
    assert len(limit) == 1
