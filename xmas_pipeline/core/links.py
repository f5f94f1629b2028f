"""Where a rendered email may point: links, images and stylesheets, host by host.

An email that loads `<img src="https://elsewhere/?e={{ email|urlencode }}">` hands every
reader's address (and whatever else the template adds) to a third party the moment it is
opened. So every URL a rendered email holds must be one of:

- an `http(s)` URL whose host is allowed: the campaign's booking page host, the hosts its
  file lists (`allowed_hosts`), and the deployment's own (`XMAS_PUBLIC_URL`, where
  unsubscribe links point, and `XMAS_ALLOWED_LINK_HOSTS`); `*.example.com` allows every
  subdomain of example.com;
- exactly the value of one of the campaign's own link variables (`LINK_VARIABLES`: the
  booking page, the reader's meeting, the unsubscribe link);
- a `mailto:` link, or a link within the email (`#section`).

URLs are found the way a mail app would find them: in every URL-carrying attribute
(`href`, `src`, `srcset`, `background`, ...), entities decoded, in CSS (`url(...)`,
`@import`, `image-set(...)`) in style attributes and style sheets alike, in a meta
refresh, and inside comments too (Outlook reads its conditional comments). Anything that
cannot be read with certainty (a backslash escape in CSS) fails as well.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

# Template variables holding the campaign's own links: their exact values are allowed.
LINK_VARIABLES: tuple[str, ...] = ("booking_url", "meeting_url", "unsubscribe_url", "confirm_url")

_URL_ATTRIBUTES = (
    "href|src|srcset|background|action|formaction|poster|data|cite|longdesc|lowsrc|"
    "dynsrc|codebase|archive|usemap|profile|manifest|icon|content"
)
# The patterns run on the email with its ASCII letters lower-cased (`_lower`: same length,
# so places carry over), which is much faster than matching without case.
# `name =` for the attributes above, anywhere in the document (a `prefix:` such as `xlink:`
# or `v:` may come before the name; `data-src` is another attribute), sought in the email
# read backwards: the search then starts from each `=`, many times faster than trying
# every name at every place.
_ATTRIBUTE_BACKWARDS = re.compile(
    rf"=\s*({'|'.join(name[::-1] for name in _URL_ATTRIBUTES.split('|'))})(?![\w-])"
)
_VALUE = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)")
# Style attributes matter only when they hold an escape or an entity (CSS otherwise is
# read in the raw text, below).
_STYLE = re.compile(r"(?<![\w-])style\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)")
_STYLE_TO_DECODE = re.compile(r"style\s*=\s*(?:\"[^\"]*&|'[^']*&|[^\s>\"']*&)")
# CSS reads a URL up to its closing quote or bracket, or to the end of the style sheet
# (no closing bracket is needed there); an unquoted one stops at a quote or a bracket, so
# a body of a thousand `url(` costs linear time.
_CSS_URL = re.compile(r"url\(\s*(\"[^\"]*\"?|'[^']*'?|[^()\s\"']*)")
_CSS_IMPORT = re.compile(r"@import\s*(\"[^\"]*\"?|'[^']*'?)")
_CSS_IMAGE_SET = re.compile(r"image-set\(([^()]*)\)")
_CSS_MARKS = ("url(", "@import", "image-set(")
_QUOTED = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_STYLE_SHEET = re.compile(r"<style\b[^>]*>(.*?)(?:</style|$)", re.DOTALL)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_REFRESH_URL = re.compile(r"url\s*=\s*(.*)", re.IGNORECASE | re.DOTALL)  # on one value
_DESCRIPTOR = re.compile(r"^\d+(\.\d+)?[wx]$", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST_ENTRY = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$|^\[[0-9a-f:.]+\]$")


# What `urls_in` reports for CSS with a backslash escape: it cannot be read with certainty.
ESCAPED_CSS = "css-escape:"


@dataclass(frozen=True)
class Found:
    """One URL in a rendered email: its value (entities decoded), where it starts in the
    email, and the text of the attribute or CSS it came from (to find it in the source)."""

    url: str
    offset: int
    written: str


def check_host_entry(entry: str) -> str:
    """An allow-list entry: a host name (`cal.com`, `localhost`), an IP address, or
    `*.example.com`."""
    host = entry.strip().lower().rstrip(".")
    if not _HOST_ENTRY.match(host):
        raise ValueError(f"{entry!r} is not a host name (e.g. cal.com or *.example.com)")
    return host


def host_of(url: str) -> str:
    """The host an http(s) URL (or a `//host` one) points at, as a browser reads it
    (slashes or backslashes after the scheme, user info and port dropped, %-escapes
    decoded, lower case); "" for anything else."""
    text = _clean(url)
    scheme = _SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() not in ("http", "https"):
            return ""
        text = text[scheme.end() :]
    elif not text.startswith("//"):
        return ""
    authority = re.split(r"[/?#]", text.lstrip("/"), maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
    return unquote(host).strip().lower().rstrip(".")


_ENDS = "".join(map(chr, range(0x21)))  # control characters and the space


def _clean(url: str) -> str:
    # Browsers drop tabs and line breaks anywhere in a URL, trim control characters and
    # spaces at its ends, and read a backslash as a slash.
    return re.sub(r"[\t\n\r]", "", url).strip(_ENDS).replace("\\", "/")


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        if entry.startswith("*."):
            if host == entry[2:] or host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def link_problem(url: str, allowed: Iterable[str], trusted: Iterable[str] = ()) -> str:
    """Why this URL may not be in an email ("" when it may). Never echoes the URL: at
    send time it holds the reader's address or unsubscribe link."""
    text = _clean(url)
    if not text or text.startswith("#") or url.strip() in set(trusted):
        return ""
    scheme = _SCHEME.match(text)
    if scheme and scheme.group(1).lower() == "mailto":
        return ""
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        return f"a {scheme.group(1).lower()}: URL (only http(s) links to allowed hosts)"
    host = host_of(text)
    if not host:
        return "a URL without a host (only http(s) links to allowed hosts)"
    if host_allowed(host, allowed):
        return ""
    return f"points at {host}, which is not an allowed host"


def _lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _attributes(html: str, lower: str) -> list[tuple[str, int, str, str]]:
    """(name, where it starts, the value as written, the attribute as written) of every
    URL-carrying attribute."""
    found = []
    size = len(lower)
    for match in _ATTRIBUTE_BACKWARDS.finditer(lower[::-1]):
        equals = size - 1 - match.start()
        value = _VALUE.match(lower, equals + 1)
        if value is not None:
            start = size - match.end()
            raw = html[value.start(1) : value.end(1)]
            found.append((match.group(1)[::-1], start, raw, html[start : value.end(1)]))
    if "\\" in lower or _STYLE_TO_DECODE.search(lower):
        for match in _STYLE.finditer(lower):
            raw = html[match.start(1) : match.end(1)]
            found.append(("style", match.start(), raw, html[match.start() : match.end()]))
    return found


def urls_in(html: str) -> list[Found]:
    """Every URL the email would open or load, in order of place."""
    lower = _lower(html)
    found: list[Found] = []
    for name, start, raw, written in _attributes(html, lower):
        value = html_lib.unescape(_unquote(raw)) if "&" in raw else _unquote(raw)
        if name == "style":
            if "\\" in value:
                # CSS escapes (`u\72l(`, `\68ttps`) can spell a URL no pattern sees.
                found.append(Found(ESCAPED_CSS, start, written))
            if "&" in raw:  # the scan below reads the raw text: read the decoded CSS too
                found += _css_urls(value, start, written, decoded=True)
        elif name == "content":
            refresh = _REFRESH_URL.search(value)
            if refresh:
                found.append(Found(refresh.group(1).strip(" '\""), start, written))
        elif name in ("srcset", "archive"):
            for token in re.split(r"[\s,]+", value):
                if token and not _DESCRIPTOR.match(token):
                    found.append(Found(token, start, written))
        else:
            found.append(Found(value, start, written))
    if "<style" in lower and "\\" in lower:
        for sheet in _STYLE_SHEET.finditer(lower):
            if "\\" in sheet.group(1):
                text = html[sheet.start(1) : sheet.end(1)]
                found.append(Found(ESCAPED_CSS, sheet.start(1), text))
    # CSS anywhere, style sheets, style attributes, comments alike (prose hardly says
    # `url(`), read in the raw text.
    found += _css_urls(html, 0, "", decoded=False, lower=lower)
    unique: dict[tuple[str, int], Found] = {}
    for item in found:
        unique.setdefault((item.url, item.offset), item)
    return sorted(unique.values(), key=lambda f: f.offset)


def _unquote(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        return raw[1:-1] if len(raw) > 1 and raw[-1] == raw[0] else raw[1:]
    return raw


def _css_urls(
    css: str, offset: int, written: str, *, decoded: bool, lower: str | None = None
) -> list[Found]:
    lower = _lower(css) if lower is None else lower
    if not any(mark in lower for mark in _CSS_MARKS):
        return []
    found: list[Found] = []
    for pattern in (_CSS_URL, _CSS_IMPORT):
        for match in pattern.finditer(lower):
            value = _unquote(css[match.start(1) : match.end(1)])
            where = offset if decoded else offset + match.start()
            found.append(Found(value, where, written or css[match.start() : match.end()]))
    for match in _CSS_IMAGE_SET.finditer(lower):
        where = offset if decoded else offset + match.start()
        inner = css[match.start(1) : match.end(1)]
        for quoted in _QUOTED.finditer(inner):
            value = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            found.append(Found(value, where, written or css[match.start() : match.end()]))
    return found


def trusted_links(context: Mapping[str, Any]) -> list[str]:
    """The values of the campaign's own link variables in this context."""
    return [str(context[name]) for name in LINK_VARIABLES if context.get(name)]


def source_line(source: str, found: Found, rendered: str) -> int | None:
    """The line of the template source where this URL comes from: where its host, the
    URL as written, or its attribute appears; None when it is built from variables only."""
    host = host_of(found.url)
    tag_start = rendered.rfind("<", 0, found.offset + 1)
    lead = rendered[tag_start : found.offset].strip() if tag_start >= 0 else ""
    for needle in (found.url.strip(), host, found.written.strip(), lead):
        if needle and len(needle) >= 3:
            at = source.find(needle)
            if at >= 0:
                return source.count("\n", 0, at) + 1
    return None


@dataclass(frozen=True)
class LinkProblem:
    line: int | None  # of the template source; None when built from variables only
    problem: str

    def describe(self, template: str) -> str:
        where = (
            f"line {self.line} of {template}"
            if self.line
            else f"{template} (a URL built from variables)"
        )
        return f"{where}: {self.problem}"


def link_problems(
    rendered: str, source: str, allowed: Iterable[str], trusted: Iterable[str]
) -> list[LinkProblem]:
    """Each URL of `rendered` that may not be there, with the source line it comes from."""
    allowed = list(allowed)
    trusted = list(trusted)
    problems: list[LinkProblem] = []
    for found in urls_in(rendered):
        if found.url == ESCAPED_CSS:
            problem = "a backslash escape in CSS (it can hide a URL)"
        else:
            problem = link_problem(found.url, allowed, trusted)
        if problem:
            item = LinkProblem(source_line(source, found, rendered), problem)
            if item not in problems:
                problems.append(item)
    return problems
