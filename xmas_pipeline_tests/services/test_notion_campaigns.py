"""Several campaigns in one Notion workspace, against the fake Notion API and the SQL
store (SQLite and PostgreSQL): one Email Sequence page per person and campaign, one
shared CRM page with a status property per campaign and the booking fields written by
one campaign only, templates per campaign, one sync of every campaign under one rate
budget, and `notion setup` / `notion import` per campaign and for all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.adapters.notion.setup import setup_notion
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.cli import main
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR, Campaign
from xmas_pipeline.core.campaign_folders import load_campaign_folder, shift_campaign_text
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline.services.forget import forget_person
from xmas_pipeline.services.notion_edits import apply_notion_edits_all
from xmas_pipeline.services.notion_import_all import import_all_campaigns
from xmas_pipeline.services.notion_sync import (
    SyncReport,
    check_distinct,
    sequences_state,
    sync_all_campaigns,
    sync_to_notion,
)
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    TEMPLATE_PROPERTIES,
    VirtualClock,
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)

C25 = load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / "christmas-2025")
C26 = load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / "christmas-2026")
BOTH = [C25, C26]
STATUS_25, STATUS_26 = "Christmas Campaign Status", "Christmas 2026 Campaign Status"
AT_25 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
AT_26 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 3, 10, 0, 20, tzinfo=UTC)  # Notion's clock, as the fake keeps it
KEY = "person1@example.com"


@dataclass
class Rig:
    store: SqlStore
    fake: FakeNotion
    ws: Workspace

    @property
    def queue(self) -> SqlNotionQueue:
        return SqlNotionQueue(self.store.url, engine=self.store.engine)

    @property
    def pages(self) -> SqlNotionPages:
        return SqlNotionPages(self.store.url, engine=self.store.engine)

    def signup(self, n: int, *campaigns: Campaign) -> None:
        for campaign in campaigns or BOTH:
            at = (AT_25 if campaign is C25 else AT_26) + timedelta(minutes=n)
            self.store.upsert_signups(campaign, [signup_event(n, at=at)])

    def sync_all(
        self,
        campaigns: list[Campaign] | None = None,
        client: NotionSync | None = None,
        **options: Any,
    ) -> dict[str, SyncReport]:
        notion = client or self.ws.client()
        try:
            return sync_all_campaigns(
                campaigns=campaigns or BOTH,
                snapshots=self.store.contact_snapshots,
                queue=self.queue,
                pages=self.pages,
                notion=notion,
                holder="run-test",
                **options,
            )
        finally:
            notion.close()

    def sequence_rows(self) -> list[dict[str, Any]]:
        return self.fake.rows(self.ws.sequences)

    def crm(self) -> dict[str, Any]:
        [contact] = self.fake.rows(self.ws.contacts)
        return contact


@pytest.fixture
def rig(sql_store: SqlStore) -> Iterator[Rig]:
    """On SQLite and PostgreSQL."""
    with FakeNotion() as fake:
        yield Rig(sql_store, fake, busos_workspace(fake))


def _booking(uid: str, start: datetime) -> BookingEvent:
    return BookingEvent.model_validate(
        {
            "uid": uid,
            "kind": "created",
            "contact_key": KEY,
            "email": KEY,
            "name": "Person One",
            "start": start,
            "end": start + timedelta(minutes=30),
            "event_at": start - timedelta(days=5),
            "source": "webhook",
        }
    )


# -- pages per person and campaign; the shared CRM page ---------------------------------------


def test_one_person_in_two_campaigns_gets_two_pages_and_one_crm_page(rig: Rig) -> None:
    add_contact(rig.fake, rig.ws, KEY)
    rig.signup(1)
    reports = rig.sync_all()
    assert {slug: r.created for slug, r in reports.items()} == {C25.slug: 1, C26.slug: 1}
    rows = rig.sequence_rows()
    assert sorted((r["Email"], r["Campaign"]) for r in rows) == [
        (KEY, "Christmas 2025"),
        (KEY, "Christmas 2026"),
    ]
    contact = rig.crm()  # one CRM page, each campaign's status in its own property
    assert contact[STATUS_25] == "Nurture Sequence" and contact[STATUS_26] == "Nurture Sequence"

    # A change in one campaign touches that campaign's page only.
    mid = f"{C26.slug}/{KEY}/email-1"
    rig.store.record_sent(
        C26, SentRecord(mid, mid, KEY, "nurture", "email-1", 1, AT_26, AT_26, "re_1")
    )
    reports = rig.sync_all()
    assert reports[C26.slug].sequence_updates == 1 and reports[C25.slug].contacts == 0
    by_campaign = {r["Campaign"]: r for r in rig.sequence_rows()}
    assert by_campaign["Christmas 2026"]["Email 1 Sent"]
    assert not by_campaign["Christmas 2025"]["Email 1 Sent"]
    assert len(rig.sequence_rows()) == 2


def test_a_create_never_adopts_the_other_campaigns_page(rig: Rig) -> None:
    # A page the first tool made for Christmas 2025; no import ran, so a create looks first.
    first = rig.fake.add_row(
        rig.ws.sequences, {"Name": KEY, "Email": KEY, "Campaign": "Christmas 2025"}
    )
    rig.signup(1, C26)
    reports = rig.sync_all([C26])
    assert (reports[C26.slug].created, reports[C26.slug].found) == (1, 0)
    mine = rig.pages.sequence_pages(C26, [KEY])[KEY].page_id
    assert mine != first and rig.pages.sequence_pages(C25, [KEY]) == {}
    assert {r["_id"]: r["Campaign"] for r in rig.sequence_rows()}[first] == "Christmas 2025"
    # The 2025 campaign's own sync then finds (adopts) its page: no second 2025 page.
    rig.signup(1, C25)
    reports = rig.sync_all([C25])
    assert (reports[C25.slug].created, reports[C25.slug].found) == (0, 1)
    assert rig.pages.sequence_pages(C25, [KEY])[KEY].page_id == first
    assert len(rig.sequence_rows()) == 2


def test_booking_fields_are_written_by_the_booking_owner_only(rig: Rig) -> None:
    add_contact(rig.fake, rig.ws, KEY)
    rig.signup(1)
    call_25, call_26 = AT_26 + timedelta(days=3), AT_26 + timedelta(days=6)
    # The same person booked through both campaigns; the 2026 booking is the latest news.
    rig.store.upsert_booking_events(C25, [_booking("bk-25", call_25)])
    rig.store.upsert_booking_events(C26, [_booking("bk-26", call_26)])
    assert rig.pages.booking_owners([KEY]) == {KEY: C26.slug}
    # The owner first, the other campaign last: were it to write the booking, its call
    # date would be what the CRM shows.
    rig.sync_all([C26, C25])
    contact = rig.crm()
    assert contact["Booking Status"] == "Booked"
    assert str(contact["Diagnostic Call Date"]).startswith(call_26.date().isoformat())
    assert contact[STATUS_25] == "Pre-Call Prep" and contact[STATUS_26] == "Pre-Call Prep"
    # Each campaign's own page keeps its own booking.
    by_campaign = {r["Campaign"]: r for r in rig.sequence_rows()}
    assert by_campaign["Christmas 2025"]["Booking UID"] == "bk-25"
    assert by_campaign["Christmas 2026"]["Booking UID"] == "bk-26"
    # Both queued again: nothing flip-flops on the shared page.
    for campaign in BOTH:
        rig.store.set_contact_flags(campaign, KEY, paused=False)
    reports = rig.sync_all([C26, C25])
    assert [r.contact_updates for r in reports.values()] == [0, 0]


def test_a_hand_edit_of_one_campaigns_status_queues_that_campaign_only(rig: Rig) -> None:
    rig.fake.freeze(T0)
    contact = add_contact(rig.fake, rig.ws, KEY)
    rig.signup(1)
    rig.sync_all()

    def edits() -> None:
        notion = rig.ws.client()
        try:
            apply_notion_edits_all(
                store=rig.store, pages=rig.pages, notion=notion, campaigns=BOTH, now=rig.fake.now
            )
        finally:
            notion.close()

    edits()  # the first look: everything as the sync left it
    assert [rig.queue.stats(c).depth for c in BOTH] == [0, 0]
    rig.fake.advance(timedelta(minutes=1))
    rig.fake.edit_row(contact, {STATUS_26: None})  # the 2026 campaign's value, cleared
    edits()
    assert [rig.queue.stats(c).depth for c in BOTH] == [0, 1]
    reports = rig.sync_all()
    assert reports[C26.slug].contact_updates == 1 and reports[C25.slug].contacts == 0
    assert rig.crm()[STATUS_26] == "Nurture Sequence"  # put back


# -- one sync, one rate budget ------------------------------------------------------------


def test_every_campaign_drains_under_the_fakes_rate_limit(tmp_path: Path) -> None:
    clock = VirtualClock()
    with FakeNotion(rate_limit=3.0, burst=3, clock=clock.now) as fake:
        rig = Rig(SqlStore(f"sqlite:///{tmp_path / 'state.db'}"), fake, busos_workspace(fake))
        for n in range(1, 6):
            rig.signup(n)
        # Unpaced: Notion's 429 and its Retry-After are what slow the pass down.
        eager = rig.ws.client(sleep=clock.sleep, clock=clock.now)
        reports = rig.sync_all(client=eager, clock=clock.now)
        assert fake.statuses[429] > 0
        assert all(not r.stopped and r.created == 5 for r in reports.values())
        assert all(rig.queue.stats(c).depth == 0 for c in BOTH)
        assert len(rig.sequence_rows()) == 10
        assert sum(r.requests for r in reports.values()) == fake.total  # retries included

        # Paced at Notion's rate by the one client: no 429 at all, for both campaigns.
        before = fake.statuses[429]
        for n in range(6, 11):
            rig.signup(n)
        paced = rig.ws.client(rate_per_s=3.0, sleep=clock.sleep, clock=clock.now)
        reports = rig.sync_all(client=paced, clock=clock.now)
        assert fake.statuses[429] == before
        assert [r.created for r in reports.values()] == [5, 5]


def test_a_long_queue_in_one_campaign_does_not_starve_the_other(tmp_path: Path) -> None:
    clock = VirtualClock()
    with FakeNotion() as fake:
        rig = Rig(SqlStore(f"sqlite:///{tmp_path / 'state.db'}"), fake, busos_workspace(fake))
        for n in range(1, 51):
            rig.signup(n, C25)
        for n in range(1, 6):
            rig.signup(n, C26)
        paced = rig.ws.client(rate_per_s=3.0, sleep=clock.sleep, clock=clock.now)
        # Enough time for a few batches of 10, not for all of Christmas 2025's 50.
        reports = rig.sync_all(client=paced, clock=clock.now, batch=10, time_budget_s=15)
        assert rig.queue.stats(C26).depth == 0 and reports[C26.slug].created == 5
        assert 0 < rig.queue.stats(C25).depth < 50


def test_a_new_campaign_gets_its_own_select_and_status_property() -> None:
    text = (SHIPPED_CAMPAIGNS_DIR / "christmas-2025" / "campaign.yaml").read_text()
    made = yaml.safe_load(shift_campaign_text(text, "winter-2027", "Winter 2027", None))
    assert made["notion_select"] == "Winter 2027"
    assert made["notion_status_property"] == "Winter 2027 Campaign Status"


def test_a_schema_kept_from_before_setup_does_not_refuse_the_new_campaign(rig: Rig) -> None:
    rig.fake.edit_properties(rig.ws.contacts, {STATUS_26: None})  # as before the upgrade
    rig.signup(1, C25)
    rig.sync_all([C25])  # the schema checked and kept in the store, without 2026's status
    notion = rig.ws.client()
    try:
        assert STATUS_26 in setup_notion(notion, BOTH).added["Contacts DB"]
    finally:
        notion.close()
    rig.signup(1, C26)
    reports = rig.sync_all()  # the kept schema lacks it: Notion is asked again, once
    assert reports[C26.slug].created == 1 and not reports[C26.slug].stopped


def test_campaigns_sharing_a_select_or_status_property_are_refused(rig: Rig) -> None:
    twin = C26.model_copy(update={"notion_status_property": STATUS_25})
    with pytest.raises(ValueError, match="share notion_status_property"):
        check_distinct([C25, twin], rig.ws.client().schema)
    with pytest.raises(ValueError, match="share notion_select"):
        rig.sync_all([C25, C26.model_copy(update={"notion_select": "Christmas 2025"})])


def test_the_single_campaign_sync_still_works_beside_the_other(rig: Rig) -> None:
    rig.signup(1)
    notion = rig.ws.client()
    try:
        report = sync_to_notion(
            snapshots=rig.store.contact_snapshots,
            queue=rig.queue,
            pages=rig.pages,
            notion=notion,
            campaign=C26,
            holder="run-test",
        )
    finally:
        notion.close()
    assert report.created == 1 and rig.queue.stats(C25).depth == 1  # 2025 left queued


# -- templates per campaign ----------------------------------------------------------------


def _templates_db(fake: FakeNotion) -> str:
    return fake.add_database(
        "Email Templates",
        {**TEMPLATE_PROPERTIES, "Campaign": {"select": {"options": []}}},
    )


def _template(fake: FakeNotion, db: str, name: str, subject: str, campaign: str = "") -> str:
    values: dict[str, Any] = {
        "Template Name": name,
        "Subject Line": subject,
        "Email Body HTML": f"<p>{subject}</p>",
    }
    if campaign:
        values["Campaign"] = campaign
    return fake.add_row(db, values)


def test_templates_are_read_back_for_their_own_campaign(rig: Rig) -> None:
    rig.fake.freeze(T0)
    db = _templates_db(rig.fake)
    _template(rig.fake, db, "email-1", "Blank: the default campaign's")
    _template(rig.fake, db, "email-1", "For 2026", "Christmas 2026")
    moving = _template(rig.fake, db, "email-2", "Quick wins 2026", "Christmas 2026")

    def edits() -> None:
        notion = rig.ws.client()
        try:
            apply_notion_edits_all(
                store=rig.store,
                pages=rig.pages,
                notion=notion,
                campaigns=BOTH,
                templates_db_id=db,
                now=rig.fake.now,
            )
        finally:
            notion.close()

    def subjects(campaign: Campaign | None, is_default: bool = True) -> dict[str, str]:
        found = rig.pages.notion_templates(campaign, is_default=is_default)
        return {t.name: t.subject for t in found}

    edits()
    assert subjects(C25) == {"email-1": "Blank: the default campaign's"}
    assert subjects(C26, is_default=False) == {"email-1": "For 2026", "email-2": "Quick wins 2026"}
    # Christmas 2026 as the default: its own page wins over the blank one of that name.
    assert subjects(C26)["email-1"] == "For 2026"
    assert subjects(None) == {"email-1": "Blank: the default campaign's"}  # as before

    rig.fake.advance(timedelta(minutes=1))
    rig.fake.edit_row(moving, {"Campaign": "Christmas 2025"})  # moved to the other campaign
    edits()
    assert "email-2" not in subjects(C26, is_default=False)
    assert subjects(C25, is_default=False) == {"email-2": "Quick wins 2026"}


def test_an_older_stores_templates_stay_the_default_campaigns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as the release before campaigns made it
        conn.execute(
            sa.text(
                "CREATE TABLE notion_templates (name VARCHAR(200) PRIMARY KEY, "
                "page_id VARCHAR(64) NOT NULL, subject TEXT NOT NULL, html TEXT NOT NULL, "
                "edited_at DATETIME NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO notion_templates VALUES "
                "('email-1', 'p1', 'Kept', '<p>x</p>', '2025-11-01 10:00:00')"
            )
        )
    engine.dispose()
    pages = SqlNotionPages(url)
    assert [t.subject for t in pages.notion_templates(C25)] == ["Kept"]
    assert pages.notion_templates(C26, is_default=False) == []
    [old] = pages.all_notion_templates()
    pages.save_notion_templates([old.__class__(**{**old.__dict__, "campaign": "Christmas 2026"})])
    assert [t.subject for t in pages.notion_templates(C26, is_default=False)] == ["Kept"]
    assert len(pages.all_notion_templates()) == 2  # one per (campaign, name)
    pages.dispose()


# -- notion setup and import ------------------------------------------------------------------


def test_setup_adds_each_campaigns_option_and_status_property(rig: Rig) -> None:
    fake = rig.fake
    ws = busos_workspace(fake, with_setup=False)
    db = fake.add_database("Email Templates", TEMPLATE_PROPERTIES)
    notion = ws.client()
    try:
        report = setup_notion(notion, BOTH, templates_db_id=db)
        assert report.campaigns == [C25.slug, C26.slug]
        assert STATUS_26 in report.added["Contacts DB"]
        assert STATUS_25 not in report.added["Contacts DB"]  # the team's, already there
        assert "Campaign: Christmas 2026" in report.options["Email Sequence DB"]
        assert "Campaign" in report.added["Templates DB"]
        source = fake.data_sources[fake.data_source_id(ws.sequences).replace("-", "")]
        names = [o["name"] for o in source["properties"]["Campaign"]["select"]["options"]]
        assert names[:2] == ["Christmas 2025", "BusinessX Canada"] and "Christmas 2026" in names
        again = setup_notion(notion, BOTH, templates_db_id=db)
        assert not again.changed
    finally:
        notion.close()


def _configure(monkeypatch: pytest.MonkeyPatch, fake: FakeNotion, ws: Workspace, home: Path) -> str:
    url = f"sqlite:///{home / 'state.db'}"
    for name, value in {
        "NOTION_TOKEN": fake.token,
        "NOTION_BASE_URL": fake.base_url,
        "NOTION_CONTACTS_DB_ID": ws.contacts,
        "NOTION_EMAIL_SEQUENCE_DB_ID": ws.sequences,
        "XMAS_HOME": str(home),
        "XMAS_DATABASE_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "NOTION_EMAIL_ANALYTICS_DB_ID",
        "NOTION_TEMPLATES_DB_ID",
        "XMAS_TESTING_MODE",
        "XMAS_CAMPAIGN_FILE",
        "XMAS_CAMPAIGNS_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    return url


def test_setup_command_per_campaign_and_for_all(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = busos_workspace(rig.fake, with_setup=False)
    _configure(monkeypatch, rig.fake, ws, tmp_path)
    assert main(["notion", "setup", "--campaign", "no-such-campaign"]) == 2
    assert "christmas-2026" in capsys.readouterr().err  # the campaigns there are named
    assert main(["notion", "setup", "--campaign", C25.slug]) == 0
    assert STATUS_26 not in rig.fake.property_types(ws.contacts)
    assert main(["notion", "setup"]) == 0  # every campaign folder
    out = capsys.readouterr().out
    assert f"campaigns: {C25.slug}, {C26.slug}" in out and STATUS_26 in out
    assert STATUS_26 in rig.fake.property_types(ws.contacts)


def _page(fake: FakeNotion, ws: Workspace, email: str, campaign: str, at: datetime) -> str:
    values: dict[str, Any] = {
        "Name": email,
        "Email": email,
        "First Name": "Sam",
        "Assessment Score": 47,
        "Segment": "OPTIMIZE",
        "Signup Date": at,
        "Assessment Completed": True,
        "Email 1 Sent": at,
    }
    if campaign:
        values["Campaign"] = campaign
    return fake.add_row(ws.sequences, values)


def test_import_routes_each_page_by_its_campaign_and_lists_the_rest(rig: Rig) -> None:
    p25 = _page(rig.fake, rig.ws, KEY, "Christmas 2025", AT_25)
    p26 = _page(rig.fake, rig.ws, KEY, "Christmas 2026", AT_26)
    other = _page(rig.fake, rig.ws, "someone@example.com", "BusinessX Canada", AT_25)
    bare = _page(rig.fake, rig.ws, "nobody@example.com", "", AT_25)
    notion = rig.ws.client()
    try:
        report = import_all_campaigns(store=rig.store, notion=notion, campaigns=BOTH)
        again = import_all_campaigns(store=rig.store, notion=notion, campaigns=BOTH)
    finally:
        notion.close()
    assert {slug: r.created for slug, r in report.campaigns.items()} == {
        C25.slug: 1,
        C26.slug: 1,
    }
    assert rig.pages.sequence_pages(C25, [KEY])[KEY].page_id == p25
    assert rig.pages.sequence_pages(C26, [KEY])[KEY].page_id == p26
    assert sorted(report.unknown) == sorted(
        [(other, "BusinessX Canada", "someone@example.com"), (bare, "", "nobody@example.com")]
    )
    summary = report.summary()
    assert "pages of no campaign loaded here (not imported, left in Notion): 2" in summary
    assert other in summary and "no Campaign" in summary
    for campaign in BOTH:
        assert rig.pages.state(sequences_state(campaign)) == "yes"
        snap = rig.store.contact_snapshots(campaign, [KEY])[KEY]
        assert set(snap.nurture_sent) == {1}  # each campaign's own sent date
    assert not any(r.changed for r in again.campaigns.values())


def test_import_command_per_campaign_and_for_all(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _configure(monkeypatch, rig.fake, rig.ws, tmp_path)
    _page(rig.fake, rig.ws, KEY, "Christmas 2025", AT_25)
    _page(rig.fake, rig.ws, KEY, "Christmas 2026", AT_26)
    _page(rig.fake, rig.ws, "someone@example.com", "BusinessX Canada", AT_25)
    assert main(["notion", "import", "--campaign", C26.slug]) == 0
    out = capsys.readouterr().out
    assert "sequences: 1 created" in out and "no campaign loaded" not in out
    store = SqlStore(url)
    try:
        assert store.contact_snapshots(C25, [KEY]) == {}
        assert KEY in store.contact_snapshots(C26, [KEY])
        assert main(["notion", "import"]) == 0  # every campaign folder
        out = capsys.readouterr().out
        assert f"== {C25.slug}" in out and f"== {C26.slug}" in out
        assert "pages of no campaign loaded here (not imported, left in Notion): 1" in out
        assert "someone@example.com" in out and rig.fake.token not in out
        assert KEY in store.contact_snapshots(C25, [KEY])
        # A deployment on one campaign file: that campaign is "every campaign loaded".
        monkeypatch.setenv("XMAS_CAMPAIGN_FILE", str(C26.folder / "campaign.yaml"))
        assert main(["notion", "import", "--campaign", C25.slug]) == 2
        assert "XMAS_CAMPAIGN_FILE runs campaign 'christmas-2026'" in capsys.readouterr().err
        assert main(["notion", "import"]) == 0
        out = capsys.readouterr().out
        assert f"== {C26.slug}" in out and f"== {C25.slug}" not in out
        assert "pages of no campaign loaded here (not imported, left in Notion): 2" in out
    finally:
        store.dispose()


# -- forgetting a person in every campaign ----------------------------------------------------


def test_forgetting_trashes_every_campaigns_page_and_clears_every_status(
    rig: Rig, tmp_path: Path
) -> None:
    add_contact(rig.fake, rig.ws, KEY)
    rig.signup(1)
    rig.signup(2)
    rig.sync_all()
    # A page of a campaign this deployment does not run, made in Notion by hand: theirs too.
    rig.fake.add_row(
        rig.ws.sequences,
        {"Name": "by hand", "Email": KEY, "Campaign": "BusinessX Canada"},
    )
    assert sorted(r["Campaign"] for r in rig.sequence_rows() if r["Email"] == KEY) == [
        "BusinessX Canada",
        "Christmas 2025",
        "Christmas 2026",
    ]
    [before] = [r for r in rig.fake.rows(rig.ws.contacts) if r["email"] == KEY]
    assert before[STATUS_25] and before[STATUS_26]
    forget = SqlForget(rig.store.url)
    notion = rig.ws.client()
    try:
        report = forget_person(
            KEY,
            store=forget,
            inbox=Inbox(tmp_path / "inbox"),
            outbox=None,
            campaigns=BOTH,
            notion=notion,
        )
    finally:
        notion.close()
        forget.dispose()
    assert report.notion_pages_trashed == 3 and report.notion_contacts_cleared == 1
    assert [r for r in rig.sequence_rows() if r["Email"] == KEY] == []
    others = sorted(r["Email"] for r in rig.sequence_rows())
    assert others and KEY not in others  # everyone else's pages stay
    contact = [r for r in rig.fake.rows(rig.ws.contacts) if r["email"] == KEY][0]
    assert not contact[STATUS_25] and not contact[STATUS_26]
