"""A short chat message for each CRITICAL signup, posted to a Discord or Slack webhook.

One JSON body serves both: Discord reads `content`, Slack reads `text`, and each
ignores the other's keys. The webhook URL is itself the credential, so it never appears
in an error message.
"""

from __future__ import annotations

import re

import httpx

from xmas_pipeline.core.signup import Signup

# Backticks would close the code span; angle brackets make Slack mentions and links
# (`<!channel>`); control characters could break the layout.
_UNSAFE = re.compile(r"[`<>\x00-\x1f\x7f\u2028\u2029]")


class AlertError(RuntimeError):
    """The alert was not delivered; the message says why, without the URL."""


def _code(value: str, limit: int = 100) -> str:
    """User text as an inline code span: no markdown, links or mentions render in it."""
    cleaned = _UNSAFE.sub("", value).strip()[:limit]
    return f"`{cleaned}`" if cleaned else "-"


def format_critical_alert(signup: Signup, campaign_name: str) -> dict[str, object]:
    weakest = [w for w in (signup.weakest_system_1, signup.weakest_system_2) if w]
    lines = [
        f"\N{POLICE CARS REVOLVING LIGHT} CRITICAL signup, {_UNSAFE.sub('', campaign_name)}",
        f"Who: {_code(signup.first_name)} at {_code(signup.business_name)}",
        f"Email: {_code(str(signup.email))}",
        (
            f"Score: {signup.assessment_score}/100, red systems {signup.red_systems}, "
            f"orange {signup.orange_systems}, yellow {signup.yellow_systems}, "
            f"green {signup.green_systems}"
        ),
        f"Weakest: {', '.join(_code(w) for w in weakest) or '-'}",
        f"Monthly revenue leak: ${signup.revenue_leak_total:,}",
    ]
    text = "\n".join(lines)
    # `allowed_mentions` stops Discord from pinging anyone whatever the text says.
    return {"content": text, "text": text, "allowed_mentions": {"parse": []}}


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
        hint = f", retry after {retry}s" if retry and retry.replace(".", "").isdigit() else ""
        raise AlertError(f"alert webhook answered {response.status_code}{hint}: {detail}")
