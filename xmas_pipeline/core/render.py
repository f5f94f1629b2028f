"""Template rendering with Jinja2: strict about variables, HTML-escaped by default.

A template has a subject, a preheader and an HTML body. A campaign's templates are files in
its folder's `templates/` (`Campaign.templates_dir`), `<name>.html.j2`, with the subject
and the preheader (the line mail apps show after the subject; hidden in the email itself)
in front-matter lines::

    subject: Your results are in, {{ name }}
    preheader: Three systems to look at before December
    ---
    <p>Hi {{ name }}, ...</p>

A segment variant is `<name>.<segment>.html.j2` (`email-2.critical.html.j2`); a missing
variant falls back to the universal `<name>`. Templates kept elsewhere (Notion) arrive as
the same `TemplateSource` objects and override the shipped ones by name.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE
from xmas_pipeline.core.links import link_problems, trusted_links
from xmas_pipeline.core.render_limits import (
    DEFAULT_LIMITS,
    LimitedEnvironment,
    LimitExceeded,
    RenderLimits,
    budget_for,
    render_streamed,
)
from xmas_pipeline.core.safe_text import fold_unsafe
from xmas_pipeline.core.segments import ALL_SEGMENTS

# The default campaign's own templates (`Campaign.templates_dir` of the shipped default).
BUILTIN_TEMPLATE_DIR = DEFAULT_CAMPAIGN_FILE.parent / "templates"


@dataclass(frozen=True)
class TemplateSource:
    name: str  # "email-2" or "email-2.critical"
    subject: str
    html: str
    origin: str = "builtin"  # "builtin" | "notion" | a file path
    preheader: str = ""


@dataclass(frozen=True)
class RenderedEmail:
    template: str
    subject: str
    html: str
    text: str
    preheader: str = ""


class TemplateError(ValueError):
    """A template that cannot render: unknown variable, syntax error, missing template, a
    limit hit (`core.render_limits`), a link to a host not allowed (`core.links`)."""


def parse_template_file(name: str, raw: str, origin: str) -> TemplateSource:
    head, sep, body = raw.partition("\n---\n")
    if not sep:
        raise TemplateError(f"{origin}: expected 'subject: ...' then a '---' line")
    fields: dict[str, str] = {}
    for line in head.splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
    if not fields.get("subject"):
        raise TemplateError(f"{origin}: the front matter has no subject")
    return TemplateSource(
        name=name,
        subject=fields["subject"],
        html=body,
        origin=origin,
        preheader=fields.get("preheader", ""),
    )


def load_template_dir(folder: Path = BUILTIN_TEMPLATE_DIR) -> dict[str, TemplateSource]:
    templates: dict[str, TemplateSource] = {}
    for path in sorted(folder.glob("*.html.j2")):
        name = path.name.removesuffix(".html.j2")
        templates[name] = parse_template_file(name, path.read_text(encoding="utf-8"), str(path))
    return templates


def variant_name(base: str, segment: str) -> str:
    return f"{base}.{segment.lower()}"


def resolve(templates: Mapping[str, TemplateSource], base: str, segment: str) -> TemplateSource:
    """The segment's variant when there is one, else the universal template."""
    found = templates.get(variant_name(base, segment)) or templates.get(base)
    if found is None:
        raise TemplateError(f"no template named {base!r} (nor a {segment} variant)")
    return found


def money(value: Any) -> str:
    """12500 -> "$12,500"."""
    try:
        return f"${int(round(float(value))):,}"
    except (TypeError, ValueError):
        return str(value)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class Renderer:
    """Compiles each template once; renders many contexts, each within `limits`."""

    def __init__(
        self, templates: Mapping[str, TemplateSource], limits: RenderLimits = DEFAULT_LIMITS
    ) -> None:
        self.templates = dict(templates)
        self.limits = limits
        # Sandboxed and limited: templates may come from Notion, edited by people, not code
        # reviewers, and must neither reach Python's internals nor run away.
        filters = {"money": money}
        self._html_env = LimitedEnvironment(
            limits,
            filters,
            undefined=jinja2.StrictUndefined,
            autoescape=True,
            keep_trailing_newline=True,
        )
        self._text_env = LimitedEnvironment(
            limits, filters, undefined=jinja2.StrictUndefined, autoescape=False
        )
        self._compiled: dict[tuple[str, str], jinja2.Template] = {}

    def _compile(self, env: LimitedEnvironment, source: TemplateSource, part: str) -> Any:
        key = (source.name, part)
        if key not in self._compiled:
            text = {"subject": source.subject, "preheader": source.preheader}.get(part, source.html)
            try:
                self._compiled[key] = env.compile_limited(text)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"{source.name} {part}: {exc.message} (line {exc.lineno})"
                ) from exc
            except LimitExceeded as exc:
                raise TemplateError(f"{source.name} {part}: {exc}") from None
            except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
                raise TemplateError(
                    f"{source.name} {part}: cannot be read ({_short(exc)})"
                ) from None
        return self._compiled[key]

    def render(self, base: str, segment: str, context: Mapping[str, Any]) -> RenderedEmail:
        source = resolve(self.templates, base, segment)
        with budget_for(self.limits):
            try:
                subject = render_streamed(self._compile(self._text_env, source, "subject"), context)
                preheader = render_streamed(
                    self._compile(self._text_env, source, "preheader"), context
                )
                body = render_streamed(self._compile(self._html_env, source, "html"), context)
            except TemplateError:
                raise
            except LimitExceeded as exc:
                raise TemplateError(f"{source.name}: stopped: it {exc}") from None
            except jinja2.UndefinedError as exc:
                raise TemplateError(f"{source.name}: {exc.message}") from exc
            except jinja2.TemplateError as exc:
                raise TemplateError(f"{source.name}: {exc}") from exc
            except MemoryError:
                raise TemplateError(f"{source.name}: stopped: it ran out of memory") from None
            except RecursionError:
                raise TemplateError(f"{source.name}: stopped: calls nested too deep") from None
            except Exception as exc:  # noqa: BLE001 - a template's own error (1/0, a bad type)
                raise TemplateError(f"{source.name}: {_short(exc)}") from None
        # A subject is one header line: fold anything that could break it or make it read
        # other than it is (every control, line break and invisible format character),
        # whatever a template or a stored row holds, so the sender can always write it.
        subject = fold_unsafe(subject).strip()
        preheader = fold_unsafe(preheader).strip()
        return RenderedEmail(
            template=source.name,
            subject=subject,
            html=with_preheader(body, preheader),
            text=html_to_text(body),  # the plain part reads the body, not the hidden line
            preheader=preheader,
        )

    def render_linked(
        self,
        base: str,
        segment: str,
        context: Mapping[str, Any],
        allowed_hosts: Iterable[str],
    ) -> RenderedEmail:
        """`render`, refusing an email that points anywhere but the allowed hosts and the
        campaign's own links (`core.links`): what the send path renders with."""
        rendered = self.render(base, segment, context)
        found = self.link_problems(base, segment, rendered, context, allowed_hosts)
        if found:
            raise TemplateError("; ".join(found))
        return rendered

    def link_problems(
        self,
        base: str,
        segment: str,
        rendered: RenderedEmail,
        context: Mapping[str, Any],
        allowed_hosts: Iterable[str],
    ) -> list[str]:
        """Each URL of the rendered email that may not be there, with its source line."""
        source = resolve(self.templates, base, segment)
        problems = link_problems(rendered.html, source.html, allowed_hosts, trusted_links(context))
        return [p.describe(rendered.template) for p in problems]

    def check_one(
        self,
        base: str,
        segment: str,
        context: Mapping[str, Any],
        allowed_hosts: Iterable[str] = (),
    ) -> tuple[list[str], RenderedEmail | None]:
        """One template for one segment's sample context: its problems (a template that
        cannot render, one that lacks what every bulk email needs: a preheader, the
        one-click unsubscribe link, the sender's postal address; a URL to a host not
        allowed), and what it rendered."""
        where = f"{base} [{segment}]"
        try:
            rendered = self.render(base, segment, context)
        except TemplateError as exc:
            return [f"{where}: {exc}"], None
        problems: list[str] = []
        if "{{" in rendered.html or "{%" in rendered.html or "{{" in rendered.subject:
            problems.append(f"{where}: unrendered template markup in output")
        if not rendered.preheader:
            problems.append(f"{where}: no preheader")
        for name, what in (
            ("unsubscribe_url", "the unsubscribe link"),
            ("postal_address", "the sender's postal address"),
        ):
            value = str(context.get(name) or "")
            if value and html_lib.escape(value) not in rendered.html:
                problems.append(f"{where}: {what} is not in the email")
        for problem in self.link_problems(base, segment, rendered, context, allowed_hosts):
            problems.append(f"{where}: {problem}")
        return problems, rendered

    def check(
        self,
        bases: Iterable[str],
        contexts: Mapping[str, Mapping[str, Any]],
        allowed_hosts: Iterable[str] = (),
    ) -> list[str]:
        """`check_one` for every base template and every segment's context."""
        hosts = list(allowed_hosts)
        problems: list[str] = []
        for base in bases:
            for segment in ALL_SEGMENTS:
                problems += self.check_one(base, segment, contexts[segment], hosts)[0]
        return problems


# The patterns below never look past the next `<` for what they need, so a body made to
# trip them (thousands of unclosed tags) costs linear time, not quadratic.
_BODY_OPEN = re.compile(r"<body\b[^<>]*>", re.IGNORECASE)
# Filler after the preheader, so mail apps show no body text after it in the preview line.
_PREHEADER_FILLER = "&#847;&zwnj;&nbsp;" * 40


def with_preheader(body: str, preheader: str) -> str:
    """The body with the preheader as its first, hidden element (the escaped text)."""
    if not preheader:
        return body
    hidden = (
        '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;'
        'opacity:0;overflow:hidden;mso-hide:all;">'
        f"{html_lib.escape(preheader)}{_PREHEADER_FILLER}</div>"
    )
    match = _BODY_OPEN.search(body)
    if match is None:
        return hidden + body
    return body[: match.end()] + hidden + body[match.end() :]


_TAG = re.compile(r"<[^<>]+>")
_BLOCK_END = re.compile(r"</(p|div|h[1-6]|li|tr|table|ul|ol)>|<br\s*/?>", re.IGNORECASE)
_LINK = re.compile(
    r"<a\s[^<>]*?href=\"([^\"<>]+)\"[^<>]*>((?:[^<]|<(?!a\s|/a>))*+)</a>", re.IGNORECASE
)
_HIDDEN = re.compile(r"<(style|head)\b[^<>]*>(?:[^<]|<(?!/?\1\b))*+</\1>", re.IGNORECASE)


def html_to_text(body: str) -> str:
    """A readable plain-text part: links kept as `text (url)`, tags dropped."""
    text = _HIDDEN.sub("", body)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _BLOCK_END.sub("\n", text)
    text = html_lib.unescape(_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
