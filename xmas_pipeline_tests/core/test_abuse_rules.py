"""The signup's abuse rules, pure: rates, sliding windows and Retry-After, client
addresses behind proxies, origins, and what a captcha provider's answer means."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from xmas_pipeline.core.captcha import Outcome, judge, take_token, token_problem
from xmas_pipeline.core.client_address import (
    LOOPBACK,
    client_address,
    parse_networks,
    rate_key,
)
from xmas_pipeline.core.origins import origin_allowed, parse_origins
from xmas_pipeline.core.rate_limit import (
    Rate,
    allowed,
    email_key,
    parse_rate,
    retry_after,
    room,
    window_at,
)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/hour", Rate(20, 3600)),
        ("5/hours", Rate(5, 3600)),
        (" 5 / 10min ", Rate(5, 600)),
        ("100/day", Rate(100, 86400)),
        ("3/30s", Rate(3, 30)),
        ("7/H", Rate(7, 3600)),
        ("1/minute", Rate(1, 60)),
        ("0", None),
        ("0/hour", None),
        ("off", None),
        ("OFF", None),
    ],
)
def test_rates_are_parsed(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["20", "20/fortnight", "-1/hour", "x/hour", "5/0h", "5/8d", "1.5/h"]
)
def test_malformed_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_a_rate_reads_back_as_written() -> None:
    assert [str(parse_rate(t)) for t in ("20/hour", "5/10min", "3/30s", "2/day")] == [
        "20/hour",
        "5/10minute",
        "3/30second",
        "2/day",
    ]
    assert all(parse_rate(str(parse_rate(t))) == parse_rate(t) for t in ("5/10min", "3/30s"))


def test_the_sliding_window_weighs_the_previous_window_by_its_overlap() -> None:
    rate = Rate(10, 100)
    # At a quarter into the window, the previous window's 8 hits count as 6: room for 4.
    window = window_at(rate, 1025.0)
    assert (window.start, window.elapsed, window.previous_start) == (1000, 0.25, 900)
    assert room(rate, 8, window) == 4
    assert allowed(rate, 8, 3, window) and not allowed(rate, 8, 4, window)
    # Without history the whole limit is there, and never more.
    assert room(rate, 0, window) == 10


def simulate(rate: Rate, previous: int, current: int, now: float, later: float) -> bool:
    """Whether one hit is allowed at `later` after no hits since `now`."""
    here, there = window_at(rate, now), window_at(rate, later)
    if there.start == here.start:
        return allowed(rate, previous, current, there)
    if there.start == here.start + rate.period_s:
        return allowed(rate, current, 0, there)
    return allowed(rate, 0, 0, there)


@pytest.mark.parametrize("limit", [1, 2, 5, 20])
def test_retry_after_is_the_first_whole_second_that_lets_a_hit_in(limit: int) -> None:
    rate = Rate(limit, 60)
    for previous, current, offset in itertools.product(
        range(0, limit + 2), range(0, limit + 2), (0.0, 0.5, 13.2, 30.0, 59.9)
    ):
        now = 6000.0 + offset
        if allowed(rate, previous, current, window_at(rate, now)):
            continue
        wait = retry_after(rate, previous, current, now)
        assert 1 <= wait <= 2 * rate.period_s + 1
        assert simulate(rate, previous, current, now, now + wait)
        if wait > 1:  # and a second earlier was still too early
            assert not simulate(rate, previous, current, now, now + wait - 1)


def test_a_full_window_waits_until_its_hits_weigh_less_than_one_place() -> None:
    rate = Rate(5, 3600)
    # 5 hits 10 minutes into the window: the window ends in 50 minutes, and then its 5
    # hits must weigh at most 4, a fifth of the next window later (12 minutes).
    assert retry_after(rate, 0, 5, 3600 * 10 + 600.0) == 3000 + 720


LOOP = parse_networks(LOOPBACK)
PROXIES = parse_networks("127.0.0.1, 10.0.0.0/8, fd00::/8")


def test_the_peer_is_the_client_unless_it_is_a_trusted_proxy() -> None:
    assert client_address("203.0.113.9", ["198.51.100.1"], LOOP) == "203.0.113.9"
    assert client_address("127.0.0.1", ["198.51.100.1"], LOOP) == "198.51.100.1"
    assert client_address("127.0.0.1", [], LOOP) == "127.0.0.1"
    assert client_address("::ffff:127.0.0.1", ["198.51.100.1"], LOOP) == "198.51.100.1"
    assert client_address("::1", ["2001:db8::7"], LOOP) == "2001:db8::7"
    assert client_address(None, ["198.51.100.1"], LOOP) == "unknown"
    assert client_address("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_forwarded_for_is_read_from_the_right() -> None:
    # The client wrote the first two entries itself; proxies appended the rest.
    spoofed = ["1.1.1.1, 2.2.2.2", "198.51.100.7, 10.1.2.3"]
    assert client_address("127.0.0.1", spoofed, PROXIES) == "198.51.100.7"
    assert client_address("127.0.0.1", ["10.0.0.5, 10.0.0.6"], PROXIES) == "10.0.0.5"
    assert client_address("127.0.0.1", ["junk, 10.0.0.6"], PROXIES) == "10.0.0.6"
    assert client_address("127.0.0.1", ["198.51.100.7:4431"], PROXIES) == "198.51.100.7"
    assert client_address("127.0.0.1", ["[2001:db8::1]:443"], PROXIES) == "2001:db8::1"


def test_networks_are_checked() -> None:
    assert parse_networks(" 10.0.0.1 ,172.16.0.0/12,,::1") == (
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("172.16.0.0/12"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError) as caught:
        parse_networks("10.0.0.0/8, not-an-ip")
    assert "not-an-ip" not in str(caught.value)


def test_origins() -> None:
    listed = parse_origins("https://www.Example.com/, http://localhost:3000")
    assert listed == ("https://www.example.com", "http://localhost:3000")
    assert origin_allowed("https://www.example.com", listed)
    assert origin_allowed("HTTPS://WWW.EXAMPLE.COM", listed)
    assert not origin_allowed("https://example.com", listed)
    assert not origin_allowed("https://www.example.com.evil.test", listed)
    assert not origin_allowed("null", listed)
    assert not origin_allowed("https://www.example.com", ())
    assert origin_allowed("https://anywhere.test", parse_origins("*"))
    for bad in ("www.example.com", "https://x.com/path", "ftp://x.com", "*, https://x.com"):
        with pytest.raises(ValueError):
            parse_origins(bad)


def test_provider_answers() -> None:
    assert judge({"success": True, "error-codes": []}).outcome is Outcome.PASSED
    for codes in (["invalid-input-response"], ["timeout-or-duplicate"], ["expired-input-response"]):
        assert judge({"success": False, "error-codes": codes}).outcome is Outcome.REJECTED
    # Our secret, the provider's own trouble, a malformed answer: not the visitor's fault.
    for answer in (
        {"success": False, "error-codes": ["invalid-input-secret"]},
        {"success": False, "error-codes": ["internal-error"]},
        {"success": False, "error-codes": ["invalid-input-response", "invalid-input-secret"]},
        {"success": False},
        {"success": "yes"},
        [],
        None,
    ):
        assert judge(answer).outcome is Outcome.UNAVAILABLE


def test_tokens_are_taken_out_of_the_signup() -> None:
    data = {"email": "a@example.com", "captcha_token": "tok", "h-captcha-response": ""}
    rest, token = take_token(data)
    assert rest == {"email": "a@example.com"} and token == "tok"
    plain = {"email": "a@example.com"}
    assert take_token(plain) == (plain, None) and take_token(plain)[0] is plain
    assert take_token({"cf-turnstile-response": "t2"})[1] == "t2"
    assert (
        token_problem(None) and token_problem(5) and token_problem("") and token_problem("x" * 5000)
    )
    assert token_problem("bad\ntoken") and token_problem("0.abc") is None


def test_rate_keys() -> None:
    assert rate_key("203.0.113.9") == "203.0.113.9"
    # One IPv6 subscriber holds a whole /64: it counts as one client.
    assert rate_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("unknown") == "unknown"
    assert email_key(" Jane.Doe+promo@Example.COM ") == "jane.doe@example.com"
    assert email_key("jane@example.com") == email_key("JANE+x+y@example.com")
    assert email_key("+only@example.com") == "+only@example.com"
