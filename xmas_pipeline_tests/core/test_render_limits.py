"""A runaway template fails its own check, in process, named with the limit it hit, and
every other template still renders; nothing a real email does comes near a limit.

Each runaway here hung the render (or the run worker's memory) before the limits: the
tests bound their own time, so on the old code they fail instead of hanging.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.render import Renderer, TemplateError, TemplateSource, load_template_dir
from xmas_pipeline.core.render_limits import DEFAULT_LIMITS, Budget, LimitExceeded, RenderLimits
from xmas_pipeline.core.samples import sample_context
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.core.template_check import check_templates
from xmas_pipeline.services.rendering import DEFAULT_PROCESS_LIMITS

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = datetime(2025, 12, 1, 15, 0, tzinfo=UTC)

# What someone could leave in a template in Notion, and the limit that stops it.
RUNAWAYS = {
    "nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        "the loop limit",
    ),
    "a long string looped over, nested": (
        "{% set s = 'ab' * 30000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "the loop limit",
    ),
    "string repetition": ("{{ 'x' * 10**10 }}", "the size limit"),
    "a huge power": ("{{ 9**9**9 }}", "the number limit"),
    "a huge output": ("{% for i in range(50000) %}{{ 'x' * 100 }}{% endfor %}", "the output limit"),
}


def with_email_3(extra: str) -> dict[str, TemplateSource]:
    """The shipped templates, `extra` added to email-3's body (as edited in Notion)."""
    shipped = load_template_dir()
    good = shipped["email-3"]
    body = good.html.replace("</body>", extra + "\n</body>")
    edited = TemplateSource("email-3", good.subject, body, "notion", good.preheader)
    return {**shipped, "email-3": edited}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", RUNAWAYS)
def test_a_runaway_template_fails_its_check_within_the_limit(case: str, campaign: Campaign) -> None:
    body, limit = RUNAWAYS[case]
    started = time.thread_time()
    problems = check_templates(Renderer(with_email_3(body)), campaign, NOW)
    assert time.thread_time() - started < 3 * DEFAULT_LIMITS.seconds
    # email-3 fails for each segment, named, with the limit it hit; nothing else fails.
    assert len(problems) == 3, problems
    for problem in problems:
        assert problem.startswith("email-3 [") and "email-3: stopped: it " in problem
        assert limit in problem


@pytest.mark.timeout(60)
def test_the_time_limit_stops_what_no_other_limit_does(campaign: Campaign) -> None:
    # Two calls per level: 2**40 calls, each small. Only the clock stops it.
    body = (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    )
    renderer = Renderer(with_email_3(body), RenderLimits(seconds=0.5))
    context = sample_context("email-3", Segment.URGENT, campaign, NOW)
    started = time.thread_time()
    with pytest.raises(
        TemplateError, match=r"email-3: stopped: it took more than 0.5 s of CPU time"
    ):
        renderer.render("email-3", "URGENT", context)
    assert time.thread_time() - started < 5
    # The renderer is fine afterwards: the next email has a budget of its own.
    assert renderer.render("email-2", "URGENT", context).template == "email-2.urgent"


def test_the_time_limit_counts_cpu_time_so_a_busy_machine_fails_no_email() -> None:
    # A render that waits for a core (the machine is busy) has used none of its limit.
    budget = Budget(RenderLimits(seconds=0.2))
    time.sleep(0.4)
    budget.tick()
    spin_until = time.thread_time() + 0.3
    while time.thread_time() < spin_until:
        pass
    with pytest.raises(LimitExceeded, match=r"more than 0.2 s of CPU time \(the time limit\)"):
        budget.tick()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ 'x'|center(1000000000) }}", "the size limit"),
        ("{{ 'x'.ljust(10**9) }}", "the size limit"),
        ("{{ '%0999999999d' % 1 }}", "the size limit"),
        ("{{ '%*d' % (999999999, 1) }}", "the size limit"),
        ("{{ '{:>999999999}'.format(1) }}", "the size limit"),
        ("{{ '%09999999d'|format(1) }}", "the size limit"),
        ("{{ range(100000)|join('x' * 100000) }}", "the size limit"),
        ("{{ ('y' * 60000)|replace('', 'y' * 60000) }}", "the size limit"),
        ("{{ [1]|batch(1000000000, 'x')|list }}", "the size limit"),
        ("{{ ('a\n' * 400000)|indent('b' * 1000) }}", "the size limit"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "the size limit",
        ),
        (
            "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}"
            "{% set ns.l = ns.l + ns.l %}{% endfor %}",
            "the size limit",
        ),
        ("{{ range(1000000)|list|length }}", "the loop limit"),
        ("{{ 10 ** 100 * 10 ** 100 }}", "the number limit"),
    ],
)
def test_every_way_to_make_something_huge_is_stopped_before_it_is_made(
    body: str, expected: str, campaign: Campaign
) -> None:
    renderer = Renderer(with_email_3(body))
    context = sample_context("email-3", Segment.URGENT, campaign, NOW)
    with pytest.raises(TemplateError, match=re.escape(expected)):
        renderer.render("email-3", "URGENT", context)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ lipsum(100000) }}", "'lipsum' is undefined"),  # writes what it is asked for
        ("{% set l = [1] %}{{ l.append(2) }}", "unsafe"),  # nothing grows in place
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls nested too deep"),
    ],
)
def test_a_template_error_of_any_kind_is_the_template_s_failure(
    body: str, expected: str, campaign: Campaign
) -> None:
    problems = check_templates(Renderer(with_email_3(body)), campaign, NOW)
    assert len(problems) == 3 and all(expected in p and "email-3" in p for p in problems)


def test_a_template_longer_than_the_source_limit_fails(campaign: Campaign) -> None:
    body = "<p>" + "a" * DEFAULT_LIMITS.source_chars + "</p>"
    problems = check_templates(Renderer(with_email_3(body)), campaign, NOW)
    assert problems and all("email-3 html" in p and "the source limit" in p for p in problems)


def test_what_real_emails_do_stays_well_within_the_limits(campaign: Campaign) -> None:
    body = """
{% set ns = namespace(total=0) %}
{% for system in ['Bookings', 'Follow-up', 'Billing'] %}<p>{{ loop.index }}/{{ loop.length }}
{{ system|upper|center(20) }}</p>{% set ns.total = ns.total + loop.index %}{% endfor %}
<p>{{ ns.total }} {{ annual_leak * 12 }} {{ '{:,}'.format(annual_leak * 1000000) }}
{{ '%05.1f'|format(3.14159) }} {{ '%d items' % 3 }} {{ 2 ** 10 }} {{ (1, 2) * 3 }}
{{ range(10)|join(', ') }} {{ business|replace('Bakery', 'Bread') }}
{{ ('word ' * 30)|wordwrap(40) }} {{ 'x' * 1000 }}</p>
{% macro pill(text) %}<b>{{ text }}</b>{% endmacro %}{{ pill(weakest_system) }}
"""
    renderer = Renderer(with_email_3(body))
    assert check_templates(renderer, campaign, NOW) == []
    context = sample_context("email-3", Segment.CRITICAL, campaign, NOW)
    html = renderer.render("email-3", "CRITICAL", context).html
    assert "6 604800 50,400,000,000" in html  # 1 + 2 + 3; 4200 × 12 × 12; × 1,000,000
    assert "003.1 3 items 1024 (1, 2, 1, 2, 1, 2)" in html
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 Northern Lights Bread" in html
    assert "<b>Bookings</b>" in html


def test_the_readme_states_the_limits_and_the_allow_list() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Templates\n", 1)[1].split("\n## ", 1)[0]
    limits = DEFAULT_LIMITS
    for figure in (
        f"{limits.seconds:g} s of CPU time",
        f"{limits.output_chars:,} characters",
        f"{limits.loop_steps:,}",
        f"{limits.number_bits} bits",
        f"{limits.source_chars:,} characters",
        f"{DEFAULT_PROCESS_LIMITS.seconds:g} s of CPU time",
        f"{DEFAULT_PROCESS_LIMITS.stuck_seconds:g} s",
        f"{DEFAULT_PROCESS_LIMITS.memory_bytes >> 30} GiB",
        "XMAS_ALLOWED_LINK_HOSTS",
        "XMAS_PUBLIC_URL",
        "allowed_hosts",
        "mailto:",
    ):
        assert figure in section, figure
    assert "`XMAS_ALLOWED_LINK_HOSTS`" in text.split("\n## Configuration\n", 1)[1]
