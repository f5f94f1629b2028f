"""Chat alerts: each CRITICAL signup (and each ops alert), posted to the alert webhook.

The webhook URL tells which chat reads it: a Discord webhook gets an embed, a Slack
incoming webhook gets Block Kit blocks with a `text` fallback, and any other URL gets the
facts as plain JSON keys. Every value that comes from a signup is user input: it is cut to
a size that keeps each chat's documented limits, stripped of line breaks and other control
characters, and escaped for that chat's markup, so nobody can ping a channel, hide a link
or break the layout through a name. The webhook URL is itself the credential, so it never
appears in an error message.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote, urlsplit

import httpx

from xmas_pipeline.core.signup import Signup

ChatFlavour = Literal["discord", "slack", "json"]

EVENT = "critical_signup"

_DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
_DISCORD_PATH = re.compile(r"/api(?:/v\d+)?/webhooks/\d+/[^/]+/?")
_SLACK_HOSTS = frozenset({"hooks.slack.com"})
_SLACK_PATH = re.compile(r"/services/T[^/]+/B[^/]+/[^/]+/?")
# Slack Workflow Builder webhooks take arbitrary JSON variables, not a message.
_SLACK_WORKFLOW = re.compile(r"/(?:triggers|workflows)/")

# Discord's embed colour is a 24-bit integer: a strong red for a CRITICAL signup.
RED = 0xD83C3E

# How much of each user value is shown: the signup model does not cap a business name, and
# a signup may reach the formatter another way. Each cap keeps its value, once escaped
# (Discord's backslashes at most double it, Slack's `&amp;` at most quintuple it), inside
# the smallest limit it lands in.
_NAME_CHARS = 100
_EMAIL_CHARS = 254  # the longest address SMTP allows
_LINK_CHARS = 1000  # a longer contact link falls back to the mailto: link
_TITLE_NAME_CHARS = 50  # name and business each, in a title or header (Discord's: 256)

# Backticks would close the code span; angle brackets make Slack mentions and links
# (`<!channel>`); control characters could break the layout. Used by the ops alert.
_UNSAFE = re.compile(r"[`<>\x00-\x1f\x7f\u2028\u2029]")
# Line breaks and other controls (C0, DEL, C1), line/paragraph separators, and the bidi
# overrides and isolates that could make a name render backwards over its neighbours.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
# Discord markdown, escaped with a backslash wherever it appears: emphasis, code, spoilers,
# quotes, masked links `[text](url)`, mentions `<@id>` and `@everyone`, and `:` so that
# `https://...` in a name is not turned into a link.
_DISCORD_INLINE = re.compile(r"([\\*_~`|<>\[\]()@:])")
# A numbered list item, which only means something at the start of a line.
_DISCORD_NUMBERED = re.compile(r"^(\d+)\.")
# What would end a link's target in Discord or Slack markup: percent-encoded in a link.
_LINK_UNSAFE = re.compile(r"[\s<>|()\[\]\"`]")
# Words that ping a whole channel when Slack parses plain text (`@channel`, `@here`).
_BROADCAST = re.compile(r"@(?=(?:everyone|here|channel)\b)", re.IGNORECASE)
# The start of a mention in either chat's syntax: `<!channel>`, `<@U123>`, `<#C1>`, `<@&1>`.
_MENTION_OPEN = re.compile(r"<(?=[!@#])")


class AlertError(RuntimeError):
    """The alert was not delivered; the message says why, without the URL. `status` is the
    webhook's answer (None: no answer), `retry_after` its Retry-After in seconds."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def chat_unavailable(self) -> bool:
        """The chat (or the way to it) failed, not this alert: 429, 5xx, no answer."""
        return self.status is None or self.status == 429 or self.status >= 500


def chat_flavour(url: str) -> ChatFlavour:
    """Which chat a webhook URL belongs to, from its host or its path."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return "json"
    if host in _DISCORD_HOSTS or _DISCORD_PATH.fullmatch(parts.path):
        return "discord"
    if _SLACK_PATH.fullmatch(parts.path) or (
        host in _SLACK_HOSTS and not _SLACK_WORKFLOW.match(parts.path)
    ):
        return "slack"
    return "json"


def mailto(email: str) -> str:
    """The default contact link: a mailto: URL, with the address percent-encoded."""
    return "mailto:" + quote(_clean(email, _EMAIL_CHARS), safe="@.+-_")


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut shows as an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def _clean(value: object, limit: int) -> str:
    """User text on one line: controls become spaces, runs of space collapse, then cut."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).strip()
    return _clip(text, limit)


def _discord(value: object, limit: int = _NAME_CHARS) -> str:
    """User text for Discord markdown: cut first (so no escape is cut in half), then
    escaped."""
    text = _DISCORD_INLINE.sub(r"\\\1", _clean(value, limit))
    # Headings and lists only count at the start of a line, and a value is one line.
    if text[:1] in ("#", "-", "+"):
        text = "\\" + text
    return _DISCORD_NUMBERED.sub(r"\1\\.", text)


def _slack(value: object, limit: int = _NAME_CHARS) -> str:
    """User text for Slack mrkdwn: `&`, `<`, `>` as entities (no mention or link can
    form), and a zero-width space after the @ of `@channel`/`@here`/`@everyone`."""
    text = _clean(value, limit)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u200b", text)


def _plain(value: object, limit: int = _NAME_CHARS) -> str:
    """User text where no markup applies (a Slack `plain_text` object, a plain JSON value):
    kept on one line and short, with mentions and broadcast words defused all the same,
    for a receiver that pastes it into a chat."""
    text = _MENTION_OPEN.sub("<\u200b", _clean(value, limit))
    return _BROADCAST.sub("@\u200b", text)


def _link(contact_url: str | None, email: str) -> str:
    """The contact link to show: the caller's (http, https or mailto), unless it is
    missing, too long or of another scheme; then the mailto: link for the address."""
    if contact_url:
        link = _CONTROL.sub("", contact_url).strip()
        link = _LINK_UNSAFE.sub(lambda m: quote(m.group(0)), link)
        if len(link) <= _LINK_CHARS and (_is_web(link) or link.lower().startswith("mailto:")):
            return link
    return mailto(email)


def _is_web(link: str) -> bool:
    return link.lower().startswith(("https://", "http://"))


def _leak(amount: int) -> str:
    # A negative leak is nonsense from the form: it reads as none, never as a gain.
    return f"${amount:,}" if amount > 0 else "none"


def _who(name: str, business: str) -> str:
    """Who signed up, for a title: the first name may be empty, as the form allows."""
    if name and business:
        return f"{name} ({business})"
    return name or business or "no name given"


def _facts(signup: Signup) -> tuple[list[str], str]:
    weakest = [w for w in (signup.weakest_system_1, signup.weakest_system_2) if w]
    counts = (
        f"{signup.red_systems} red, {signup.orange_systems} orange, "
        f"{signup.yellow_systems} yellow, {signup.green_systems} green"
    )
    return weakest, counts


def format_critical_alert(
    signup: Signup,
    campaign_name: str,
    *,
    flavour: ChatFlavour,
    contact_url: str | None = None,
) -> dict[str, object]:
    """The alert for one CRITICAL signup, shaped for `flavour` (see `chat_flavour`).

    `contact_url` is where the team opens the contact (a CRM page, say); without one it
    is a mailto: link for the address.
    """
    email = str(signup.email)
    link = _link(contact_url, email)
    if flavour == "discord":
        return _discord_alert(signup, campaign_name, link)
    if flavour == "slack":
        return _slack_alert(signup, campaign_name, link)
    weakest, _ = _facts(signup)
    leak = int(signup.revenue_leak_total)
    who = _who(_plain(signup.first_name), _plain(signup.business_name))
    return {
        # A one-line summary too: Mattermost-style hooks show `text` and need it.
        "text": f"CRITICAL signup: {who}, score {int(signup.assessment_score)}/100",
        "event": EVENT,
        "campaign": _plain(campaign_name),
        "name": _plain(signup.first_name),
        "business": _plain(signup.business_name),
        "email": _clean(email, _EMAIL_CHARS),
        "score": int(signup.assessment_score),
        "segment": signup.segment.value,
        # A negative leak is nonsense from the form: null, where the chats show "none".
        "revenue_leak_monthly": leak if leak >= 0 else None,
        "weakest_systems": [_plain(w) for w in weakest],
        "contact_url": link,
    }


def _discord_alert(signup: Signup, campaign_name: str, link: str) -> dict[str, object]:
    weakest, counts = _facts(signup)
    who = _who(
        _discord(signup.first_name, _TITLE_NAME_CHARS),
        _discord(signup.business_name, _TITLE_NAME_CHARS),
    )
    siren = "\N{POLICE CARS REVOLVING LIGHT}"
    fields: list[dict[str, object]] = [
        {"name": "Name", "value": _discord(signup.first_name) or "-", "inline": True},
        {"name": "Business", "value": _discord(signup.business_name) or "-", "inline": True},
        {"name": "Email", "value": _discord(signup.email, _EMAIL_CHARS), "inline": True},
        {"name": "Score", "value": f"{signup.assessment_score}/100", "inline": True},
        {"name": "Segment", "value": f"{signup.segment.value} ({counts})", "inline": True},
        {"name": "Monthly revenue leak", "value": _leak(signup.revenue_leak_total), "inline": True},
        {
            "name": "Weakest systems",
            "value": ", ".join(_discord(w) for w in weakest) or "none given",
            "inline": False,
        },
        {
            "name": "Contact",
            # Discord links only http(s) targets; anything else is shown as text.
            "value": f"[Open the contact]({link})" if _is_web(link) else _discord(link, 500),
            "inline": False,
        },
    ]
    embed: dict[str, object] = {
        "title": f"{siren} CRITICAL signup: {who}",
        "color": RED,
        "fields": fields,
        # The footer is never parsed as markdown: cleaned only.
        "footer": {"text": _clean(campaign_name, _NAME_CHARS) or "campaign"},
    }
    if _is_web(link):
        embed["url"] = link
    return {
        "content": f"{siren} CRITICAL signup: {who}",
        "embeds": [embed],
        # Nobody is pinged, whatever the text says.
        "allowed_mentions": {"parse": []},
    }


def _slack_alert(signup: Signup, campaign_name: str, link: str) -> dict[str, object]:
    weakest, counts = _facts(signup)
    who = _who(
        _clean(signup.first_name, _TITLE_NAME_CHARS),
        _clean(signup.business_name, _TITLE_NAME_CHARS),
    )
    siren = "\N{POLICE CARS REVOLVING LIGHT}"

    def field(label: str, value: str) -> dict[str, object]:
        # verbatim: Slack turns no URL, channel name or mention in the value into a link.
        return {"type": "mrkdwn", "text": f"*{label}*\n{value}", "verbatim": True}

    email = str(signup.email)
    # `&` in the target is escaped like any text; a target that grows past what the
    # context element holds (3,000 with the rest) falls back to the mailto: link.
    target = link.replace("&", "&amp;")
    if len(target) > 2000:
        target = mailto(email)
    label = "Email the contact" if target.startswith("mailto:") else "Open the contact"
    campaign = _slack(campaign_name)
    return {
        # What notifications and old clients show.
        "text": f"{siren} CRITICAL signup: {_slack(who, 2 * _TITLE_NAME_CHARS + 3)}, {campaign}",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _plain(f"{siren} CRITICAL signup: {who}", 150),
                },
            },
            {
                "type": "section",
                "fields": [
                    field("Name", _slack(signup.first_name) or "-"),
                    field("Business", _slack(signup.business_name) or "-"),
                    field("Email", _slack(email, _EMAIL_CHARS)),
                    field("Score", f"{signup.assessment_score}/100"),
                    field("Segment", f"{signup.segment.value} ({counts})"),
                    field("Monthly revenue leak", _leak(signup.revenue_leak_total)),
                    field("Weakest systems", ", ".join(_slack(w) for w in weakest) or "none given"),
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"<{target}|{label}> \N{MIDDLE DOT} {campaign}"}
                ],
            },
        ],
    }


def format_ops_alert(title: str, lines: list[str]) -> dict[str, object]:
    """An operations alert (a failed run, stuck messages) as plain text for either chat."""
    text = "\n".join([f"\N{WARNING SIGN} {_UNSAFE.sub('', title)}", *lines])[:1900]
    return {"content": text, "text": text, "allowed_mentions": {"parse": []}}


def post_alert(
    url: str,
    body: dict[str, object],
    client: httpx.Client | None = None,
    timeout: float = 5,
) -> None:
    """POST `body` as JSON; raises AlertError unless the webhook answers 2xx."""
    if not url.startswith(("https://", "http://")):
        raise AlertError("XMAS_ALERT_WEBHOOK_URL must be an http(s) URL")
    http = client or httpx.Client(follow_redirects=False)
    try:
        response = http.post(url, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        # httpx messages can quote the URL; keep only the kind of failure.
        raise AlertError(f"alert webhook unreachable ({type(exc).__name__})") from None
    finally:
        if client is None:
            http.close()
    if not 200 <= response.status_code < 300:
        detail = response.text[:4000]
        path = httpx.URL(url).path
        if len(path) > 1:  # a body that echoes the request must not leak the token in it
            detail = detail.replace(path, "[webhook]")
        detail = _UNSAFE.sub(" ", detail[:200]).strip()
        retry = response.headers.get("retry-after")
        seconds = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        hint = f", retry after {retry}s" if seconds is not None else ""
        raise AlertError(
            f"alert webhook answered {response.status_code}{hint}: {detail}",
            status=response.status_code,
            retry_after=seconds,
        )
