"""The shipped email templates and the template preview."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.context import nurture_context, reminder_context
from xmas_pipeline.core.render import (
    BUILTIN_TEMPLATE_DIR,
    Renderer,
    TemplateError,
    TemplateSource,
    load_template_dir,
)
from xmas_pipeline.core.samples import segment_sample
from xmas_pipeline.core.segments import ALL_SEGMENTS
from xmas_pipeline.services.previews import render_preview, template_bases

UNSUB = "https://intake.example.com/unsubscribe?token=abc.def"
MEETING_URL = "https://app.cal.com/video/booking-123"
# 15:00 UTC is 10:00 AM in Toronto (EST, UTC-5) on this date.
MEETING_START = datetime(2025, 12, 3, 15, 0, tzinfo=UTC)
NURTURE = [f"email-{n}" for n in range(1, 8)]
REMINDERS = ["reminder-1", "reminder-2", "reminder-3"]


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign()


@pytest.fixture(scope="module")
def templates() -> dict[str, TemplateSource]:
    return load_template_dir()


@pytest.fixture(scope="module")
def renderer(templates: dict[str, TemplateSource]) -> Renderer:
    return Renderer(templates)


def nurture_ctx(
    campaign: Campaign, segment: str, unsubscribe_url: str = UNSUB, **overrides: Any
) -> dict[str, Any]:
    return nurture_context({**segment_sample(segment), **overrides}, campaign, unsubscribe_url)


def reminder_ctx(
    campaign: Campaign, segment: str, time_zone: str = "America/Toronto", **overrides: Any
) -> dict[str, Any]:
    return reminder_context(
        {**segment_sample(segment), **overrides},
        campaign,
        start=MEETING_START,
        time_zone=time_zone,
        meeting_url=MEETING_URL,
        booking_uid="booking-123",
        unsubscribe_url=UNSUB,
    )


def context_for(campaign: Campaign, base: str, segment: str) -> dict[str, Any]:
    if base in REMINDERS:
        return reminder_ctx(campaign, segment)
    return nurture_ctx(campaign, segment)


# ---------------------------------------------------------------- the set of templates


def test_campaign_steps_and_reminders_all_have_templates(
    campaign: Campaign, templates: dict[str, TemplateSource]
) -> None:
    used = [s.template for s in campaign.steps] + [r.template for r in campaign.reminders]
    assert used == NURTURE + REMINDERS
    # And double opt-in's confirmation email (`core.optin`).
    assert template_bases(templates) == sorted([*NURTURE, *REMINDERS, campaign.confirm_template])


def test_every_file_is_a_base_or_a_known_segment_variant(
    templates: dict[str, TemplateSource],
) -> None:
    segments = {s.value.lower() for s in ALL_SEGMENTS}
    for name in templates:
        base, _, variant = name.partition(".")
        assert base in [*NURTURE, *REMINDERS, "confirm"], name
        assert variant in segments | {""}, f"{name}: not a segment variant"
        assert base in templates, f"{name} has no universal fallback"
    assert {n for n in templates if "." in n} == {
        f"{base}.{seg}" for base in ("email-2", "email-7") for seg in segments
    }


def test_templates_use_name_and_business_and_never_mark_variables_safe() -> None:
    for path in sorted(BUILTIN_TEMPLATE_DIR.glob("*.html.j2")):
        raw = path.read_text(encoding="utf-8")
        assert not re.search(r"\|\s*safe\b", raw), path.name
        assert "first_name" not in raw and "business_name" not in raw, path.name
        if path.name == "confirm.html.j2":
            # Sent before the address's owner said anything: nothing the poster typed.
            assert "{{ name }}" not in raw and "{{ business }}" not in raw
        else:
            assert "Hi {{ name }}," in raw, path.name
        # Email-friendly: no external stylesheets, scripts or images.
        assert not re.search(r"<(script|link|img|style)\b", raw, re.IGNORECASE), path.name


# ---------------------------------------------------------------- rendering for every segment


def test_every_template_renders_for_every_segment(campaign: Campaign, renderer: Renderer) -> None:
    nurture = {seg.value: nurture_ctx(campaign, seg) for seg in ALL_SEGMENTS}
    reminders = {seg.value: reminder_ctx(campaign, seg) for seg in ALL_SEGMENTS}
    assert renderer.check(NURTURE, nurture) == []
    assert renderer.check(REMINDERS, reminders) == []


@pytest.mark.parametrize("segment", [s.value for s in ALL_SEGMENTS])
def test_output_has_no_template_markup_and_has_footer(
    campaign: Campaign, renderer: Renderer, segment: str
) -> None:
    for base in NURTURE + REMINDERS:
        email = renderer.render(base, segment, context_for(campaign, base, segment))
        for part in (email.subject, email.html, email.text):
            assert "{{" not in part and "{%" not in part and "}}" not in part, base
        assert email.subject and "\n" not in email.subject and len(email.subject) < 90, base
        assert "Hi Jamie," in email.html, base
        assert "The BusOS team" in email.html and "The BusOS team" in email.text, base
        assert f'href="{UNSUB.replace("&", "&amp;")}"' in email.html, base
        assert email.html.lstrip().startswith("<!DOCTYPE html>"), base


def test_missing_optional_fields_still_read_well(campaign: Campaign, renderer: Renderer) -> None:
    # A contact with only the required fields (or a booking without a signup).
    bare = {"email": "x@example.com", "first_name": "", "assessment_score": 0}
    for base in NURTURE + REMINDERS:
        if base in REMINDERS:
            ctx = reminder_context(
                bare,
                campaign,
                start=MEETING_START,
                time_zone="UTC",
                meeting_url="",
                booking_uid="b",
            )
        else:
            ctx = nurture_context(bare, campaign)
        email = renderer.render(base, "OPTIMIZE", ctx)
        assert "Hi there," in email.html, base
        assert "$0" not in email.text, base  # no leak figure when the assessment gave none


# ---------------------------------------------------------------- variants


def test_variant_resolution(campaign: Campaign, renderer: Renderer) -> None:
    ctx = nurture_ctx(campaign, "CRITICAL")
    assert renderer.render("email-2", "CRITICAL", ctx).template == "email-2.critical"
    assert renderer.render("email-7", "URGENT", ctx).template == "email-7.urgent"
    assert renderer.render("email-3", "CRITICAL", ctx).template == "email-3"
    # Without the variant the universal template is the fallback.
    only_universal = Renderer({k: v for k, v in renderer.templates.items() if "." not in k})
    assert only_universal.render("email-2", "CRITICAL", ctx).template == "email-2"


@pytest.mark.parametrize("base", ["email-2", "email-7"])
def test_each_segment_gets_different_content(
    campaign: Campaign, renderer: Renderer, base: str
) -> None:
    # The same contact data for all three: any difference comes from the variant itself.
    ctx = nurture_ctx(campaign, "URGENT")
    rendered = {seg.value: renderer.render(base, seg.value, ctx) for seg in ALL_SEGMENTS}
    assert len({r.template for r in rendered.values()}) == 3
    assert len({r.subject for r in rendered.values()}) == 3
    assert len({r.text for r in rendered.values()}) == 3
    fallback = Renderer({base: renderer.templates[base]}).render(base, "URGENT", ctx)
    assert fallback.text not in {r.text for r in rendered.values()}


# ---------------------------------------------------------------- escaping and headers


@pytest.mark.parametrize(
    ("first_name", "escaped"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('"Tom & Jerry"', "&#34;Tom &amp; Jerry&#34;"),
    ],
)
def test_hostile_names_are_escaped_in_the_body(
    campaign: Campaign, renderer: Renderer, first_name: str, escaped: str
) -> None:
    ctx = nurture_ctx(campaign, "CRITICAL", first_name=first_name, business_name=first_name)
    for base in NURTURE:
        email = renderer.render(base, "CRITICAL", ctx)
        assert f"Hi {escaped}," in email.html, base
        assert first_name not in email.html, base
        assert "<script" not in email.html, base
        # The plain-text part shows the name as typed.
        assert f"Hi {first_name}," in email.text, base


def test_hostile_url_cannot_break_out_of_the_href(campaign: Campaign, renderer: Renderer) -> None:
    ctx = nurture_ctx(campaign, "URGENT", unsubscribe_url='https://x/u?a=1"><script>x</script>')
    html = renderer.render("email-4", "URGENT", ctx).html
    assert 'href="https://x/u?a=1&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    assert "<script" not in html


def test_line_breaks_in_a_subject_variable_are_folded(
    campaign: Campaign, renderer: Renderer
) -> None:
    ctx = nurture_ctx(campaign, "URGENT", first_name="Eve\r\nBcc: victim@example.com")
    for base in NURTURE:
        subject = renderer.render(base, "URGENT", ctx).subject
        assert "\r" not in subject and "\n" not in subject, base
    assert renderer.render("email-1", "URGENT", ctx).subject.startswith(
        "Eve Bcc: victim@example.com, your"
    )


# ---------------------------------------------------------------- content


def test_email_1_shows_results_leak_and_weakest_systems(
    campaign: Campaign, renderer: Renderer
) -> None:
    ctx = nurture_ctx(
        campaign,
        "CRITICAL",
        assessment_score=37,
        red_systems=4,
        orange_systems=3,
        yellow_systems=2,
        green_systems=1,
        revenue_leak_total=12500,
        weakest_system_1="Lead Capture",
        weakest_system_2="Scheduling",
    )
    email = renderer.render("email-1", "CRITICAL", ctx)
    assert "37/100" in email.subject
    text = email.text
    assert "37/100" in text
    for line in ("4 red", "3 orange", "2 yellow", "1 green"):
        assert line in text
    assert "$12,500 a month" in text
    assert "$150,000 a year" in text
    assert "1. Lead Capture" in text and "2. Scheduling" in text


def test_email_1_without_a_leak_figure(campaign: Campaign, renderer: Renderer) -> None:
    text = renderer.render(
        "email-1", "OPTIMIZE", nurture_ctx(campaign, "OPTIMIZE", revenue_leak_total=0)
    ).text
    assert "a month" not in text and "dollar figure" in text


def test_email_4_links_to_the_booking_page(campaign: Campaign, renderer: Renderer) -> None:
    """The link names the campaign, so a booking made through it is this campaign's."""
    html = renderer.render("email-4", "URGENT", nurture_ctx(campaign, "URGENT")).html
    tagged = f"{campaign.booking_url}?metadata%5Bcampaign%5D={campaign.slug}"
    assert f'href="{tagged}"' in html


@pytest.mark.parametrize("base", REMINDERS)
def test_reminders_show_local_time_and_link(
    campaign: Campaign, renderer: Renderer, base: str
) -> None:
    toronto = renderer.render(base, "URGENT", reminder_ctx(campaign, "URGENT"))
    assert "Wednesday, December 3, 2025 at 10:00 AM (America/Toronto)" in toronto.text
    assert "3:00 PM" not in toronto.text
    assert f'href="{MEETING_URL}"' in toronto.html
    assert MEETING_URL in toronto.text
    tokyo = renderer.render(base, "URGENT", reminder_ctx(campaign, "URGENT", "Asia/Tokyo"))
    assert "Thursday, December 4, 2025 at 12:00 AM (Asia/Tokyo)" in tokyo.text


def test_reminder_1_says_what_to_prepare(campaign: Campaign, renderer: Renderer) -> None:
    text = renderer.render("reminder-1", "CRITICAL", reminder_ctx(campaign, "CRITICAL")).text
    assert "How to prepare" in text
    assert "you scored 48/100" in text and "about Bookings" in text


# ---------------------------------------------------------------- checks and footer


def test_an_unknown_variable_fails_the_check(
    campaign: Campaign, templates: dict[str, TemplateSource]
) -> None:
    good = templates["email-3"]
    bad = TemplateSource(
        name="email-3", subject=good.subject, html=good.html + "<p>{{ coupon_code }}</p>"
    )
    contexts = {seg.value: nurture_ctx(campaign, seg) for seg in ALL_SEGMENTS}
    problems = Renderer({**templates, "email-3": bad}).check(["email-3"], contexts)
    assert len(problems) == 3
    assert all("coupon_code" in p for p in problems)
    with pytest.raises(TemplateError, match="coupon_code"):
        Renderer({"email-3": bad}).render("email-3", "URGENT", contexts["URGENT"])


@pytest.mark.parametrize("base", NURTURE + REMINDERS)
def test_unsubscribe_footer_exactly_when_url_is_set(
    campaign: Campaign, renderer: Renderer, base: str
) -> None:
    for url in (UNSUB, ""):
        if base in REMINDERS:
            ctx = reminder_ctx(campaign, "OPTIMIZE")
            ctx["unsubscribe_url"] = url
        else:
            ctx = nurture_ctx(campaign, "OPTIMIZE", unsubscribe_url=url)
        email = renderer.render(base, "OPTIMIZE", ctx)
        assert ("Unsubscribe" in email.html) is bool(url), (base, url)
        assert ("unsubscribe" in email.text.lower()) is bool(url), (base, url)
        if url:
            assert f"Unsubscribe ({url})" in email.text


# ---------------------------------------------------------------- preview


def test_preview_formats(campaign: Campaign) -> None:
    html = render_preview("email-2", "CRITICAL", campaign=campaign)
    text = render_preview("email-2", "critical", campaign=campaign, fmt="text")
    subject = render_preview("email-2", "CRITICAL", campaign=campaign, fmt="subject")
    assert html.lstrip().startswith("<!DOCTYPE html>") and "Hi Jamie," in html
    assert "<" not in text and "Hi Jamie," in text
    assert subject == "Jamie, stop the leak in Bookings this week"
    assert "Unsubscribe" in html


def test_preview_overrides_and_segment_variant(campaign: Campaign) -> None:
    text = render_preview(
        "email-7",
        "OPTIMIZE",
        campaign=campaign,
        overrides={"first_name": "Ana", "business_name": "Ana's Salon", "unsubscribe_url": ""},
        fmt="text",
    )
    assert "Hi Ana," in text and "Ana's Salon" in text
    assert "tune-up" in render_preview("email-7", "OPTIMIZE", campaign=campaign, fmt="subject")
    assert "unsubscribe" not in text.lower()


def test_preview_reminder_has_a_sample_meeting_three_days_ahead(campaign: Campaign) -> None:
    now = datetime(2025, 11, 28, 12, 0, tzinfo=UTC)
    text = render_preview("reminder-2", "URGENT", campaign=campaign, fmt="text", now=now)
    assert "Monday, December 1, 2025 at 10:00 AM (America/Toronto)" in text
    assert "https://" in text
    subject = render_preview("reminder-2", "URGENT", campaign=campaign, fmt="subject", now=now)
    assert subject == "Your diagnostic call: Monday, December 1, 2025 at 10:00 AM"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": "email-9", "segment": "CRITICAL"}, "unknown template 'email-9'"),
        ({"template": "email-2.critical", "segment": "CRITICAL"}, "unknown template"),
        ({"template": "email-2", "segment": "PANIC"}, "unknown segment 'PANIC'"),
        ({"template": "email-2", "segment": "URGENT", "fmt": "pdf"}, "unknown format"),
        (
            {"template": "email-2", "segment": "URGENT", "overrides": {"coupon": "X"}},
            "unknown override",
        ),
    ],
)
def test_preview_rejects_bad_input(
    campaign: Campaign, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_preview(campaign=campaign, **kwargs)


# ---------------------------------------------------------------- what every bulk email carries

POSTAL = "BusOS Ltd, 1 King St W, Toronto ON M5H 1A1"


@pytest.mark.parametrize("base", NURTURE + REMINDERS)
def test_every_email_opens_with_its_hidden_preheader(
    campaign: Campaign, renderer: Renderer, templates: dict[str, TemplateSource], base: str
) -> None:
    assert templates[base].preheader, f"{base} has no preheader line"
    email = renderer.render(base, "CRITICAL", context_for(campaign, base, "CRITICAL"))
    assert email.preheader and "{{" not in email.preheader
    # First thing in the body, hidden: mail apps show it after the subject.
    after_body = email.html.split("<body", 1)[1].split(">", 1)[1].lstrip()
    assert after_body.startswith('<div style="display:none;')
    assert email.preheader.split(",")[0] in after_body[:400]
    assert email.preheader not in email.text  # the plain part reads the body only


def test_a_preheader_variable_is_escaped(templates: dict[str, TemplateSource]) -> None:
    source = TemplateSource(
        name="email-3",
        subject="Hi",
        preheader="For {{ name }}",
        html="<!DOCTYPE html><html><body><p>Hi {{ name }},</p></body></html>",
    )
    email = Renderer({"email-3": source}).render("email-3", "URGENT", {"name": "<b>Jo</b>\nX"})
    assert "<b>Jo</b>" not in email.html
    assert "For &lt;b&gt;Jo&lt;/b&gt; X" in email.html  # escaped, one line


@pytest.mark.parametrize("base", NURTURE + REMINDERS)
def test_the_postal_address_is_in_every_footer_when_set(
    campaign: Campaign, renderer: Renderer, base: str
) -> None:
    for postal in (POSTAL, "<i>Evil</i> & Co"):
        ctx = {**context_for(campaign, base, "URGENT"), "postal_address": postal}
        email = renderer.render(base, "URGENT", ctx)
        escaped = postal.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in email.html and postal in email.text, base
        assert "<i>Evil</i>" not in email.html
    bare = renderer.render(base, "URGENT", context_for(campaign, base, "URGENT"))
    assert "&middot;" not in bare.html.split("Unsubscribe")[-1], base


def test_the_check_wants_a_preheader_an_unsubscribe_link_and_the_address(
    campaign: Campaign, templates: dict[str, TemplateSource]
) -> None:
    contexts = {
        seg.value: {**nurture_ctx(campaign, seg), "postal_address": POSTAL} for seg in ALL_SEGMENTS
    }
    assert Renderer(templates).check(NURTURE, contexts) == []
    bare = TemplateSource(
        name="email-3", subject="Hi {{ name }}", html="<p>Hi {{ name }}, no footer here.</p>"
    )
    problems = Renderer({**templates, "email-3": bare}).check(["email-3"], contexts)
    joined = "\n".join(problems)
    assert len(problems) == 9  # three problems for each of the three segments
    assert "no preheader" in joined
    assert "the unsubscribe link is not in the email" in joined
    assert "the sender's postal address is not in the email" in joined
