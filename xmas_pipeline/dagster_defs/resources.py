"""Resources: each picks its backend from configuration (the embedded defaults need none).

The resources that hold a secret or decide where one is sent (store, inbox, sender, alerts,
Notion, Cal.com) are built here from the settings and handed to Dagster `sealed`: with no
launch-time config. So no UI page, launchpad default or run config holds their values, and
a run config that tries to set one is refused by Dagster before the run exists.
"""

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from xmas_pipeline.adapters.calcom import DEFAULT_API_URL, CalcomClient
from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.outbox import OutboxSender
from xmas_pipeline.adapters.resend_sender import ResendSender
from xmas_pipeline.adapters.sql.alerts import SqlAlertOutbox
from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.reputation import SqlReputation
from xmas_pipeline.adapters.sql.secrets import unsubscribe_keys
from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch, SqlTemplateSnapshots
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_SLUG, Campaign
from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.core.context import message_context
from xmas_pipeline.core.optin import confirm_url, make_confirm_token
from xmas_pipeline.core.ports import EmailSender, SendJournal, StateStore
from xmas_pipeline.core.render import Renderer, TemplateSource, load_template_dir
from xmas_pipeline.core.unsubscribe import SigningKeys, public_url_problem, unsubscribe_url
from xmas_pipeline.services.sending import DeliveryReport, Envelope, deliver
from xmas_pipeline.settings import Settings, SettingsError


class InboxResource(dg.ConfigurableResource):
    """The inbox that the intake writes and the sensors read (a folder or `s3://...`)."""

    root: str = Field(repr=False)  # an object-store URL may carry credentials

    def get(self) -> Inbox:
        return Inbox(self.root)


class StateStoreResource(dg.ConfigurableResource):
    """The SQL store: the pipeline's whole state (SQLite by default, PostgreSQL by URL).
    With Notion configured, `notion_email_sequence` keeps Notion in step with it."""

    database_url: str = Field(repr=False)  # may carry the database password
    # The deployment's default campaign: Notion templates naming no campaign are its only.
    default_campaign: str = DEFAULT_CAMPAIGN_SLUG

    _store: SqlStore | None = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return "sql"

    def get(self) -> SqlStore:
        if self._store is None:
            self._store = SqlStore(self.database_url)
        return self._store

    def database(self) -> SqlStore:
        return self.get()

    def journal(self, holder: str) -> SendJournal:
        """The send journal, shared by every run: `holder` names the run writing to it."""
        database = self.database()
        return SqlSendJournal(database.url, engine=database.engine, holder=holder)

    def alert_outbox(self, campaign: Campaign) -> SqlAlertOutbox:
        """The alerts waiting for (or already taken by) the ops chat, shared by every run."""
        database = self.database()
        return SqlAlertOutbox(database.url, campaign, engine=database.engine)

    def send_switch(self) -> SqlSendSwitch:
        """The campaigns' pause switch."""
        database = self.database()
        return SqlSendSwitch(database.url, engine=database.engine)

    def reputation(self) -> SqlReputation:
        """What the reputation guard counts: messages sent, their bounces and complaints."""
        database = self.database()
        return SqlReputation(database.url, engine=database.engine)

    def template_snapshots(self) -> SqlTemplateSnapshots:
        database = self.database()
        return SqlTemplateSnapshots(database.url, engine=database.engine)

    def notion_queue(self) -> SqlNotionQueue:
        database = self.database()
        return SqlNotionQueue(database.url, engine=database.engine)

    def notion_pages(self) -> SqlNotionPages:
        database = self.database()
        return SqlNotionPages(database.url, engine=database.engine)

    def prepared(self, campaign: Campaign) -> StateStore:
        """The store, its schema created for this campaign."""
        store = self.get()
        store.prepare(campaign)
        return store

    def templates(self, campaign: Campaign | None = None) -> dict[str, TemplateSource]:
        """The campaign's own template files (the default campaign's when none is given),
        overridden by name by those kept in the Notion Templates DB (as
        `notion_edits_sensor` last read them: sending never waits for Notion)."""
        templates = load_template_dir(campaign.templates_dir) if campaign else load_template_dir()
        kept_in_notion = self.notion_pages().notion_templates(
            campaign, is_default=campaign is None or campaign.slug == self.default_campaign
        )
        for kept in kept_in_notion:
            source = TemplateSource(
                name=kept.name, subject=kept.subject, html=kept.html, origin="notion"
            )
            # Notion keeps no preheader: a template edited there keeps the shipped one.
            shipped = templates.get(kept.name) or templates.get(kept.name.split(".", 1)[0])
            if shipped is not None:
                source = replace(source, preheader=shipped.preheader)
            templates[kept.name] = source
        return templates


class NotionResource(dg.ConfigurableResource):
    """The Notion workspace the team reads (`NOTION_*`): synced from the store."""

    token: str = Field(repr=False)
    base_url: str = "https://api.notion.com"
    contacts_db_id: str
    sequences_db_id: str
    analytics_db_id: str | None = None
    templates_db_id: str | None = None
    rate_per_s: float = 3.0
    # Few attempts per call: a sync that gives up is simply run again by the next tick,
    # and nothing else waits for it (a 429's Retry-After is still honoured).
    max_attempts: int = 4

    def client(self) -> NotionSync:
        return NotionSync(
            token=self.token,
            contacts_db_id=self.contacts_db_id,
            sequences_db_id=self.sequences_db_id,
            base_url=self.base_url,
            analytics_db_id=self.analytics_db_id,
            rate_per_s=self.rate_per_s,
            max_attempts=self.max_attempts,
        )


class EmailSenderResource(dg.ConfigurableResource):
    """The outbox folder by default; Resend when an API key is configured.

    Every email carries a working one-click unsubscribe link: on `public_url`
    (XMAS_PUBLIC_URL), else the intake's own local address, signed with the configured
    key or the one this deployment generated and keeps in the store.
    """

    outbox_dir: str
    from_email: str
    database_url: str = Field(repr=False)  # where a generated unsubscribe key is kept
    local_url: str  # the intake's own address, when no public URL is set
    resend_api_key: str | None = Field(default=None, repr=False)
    resend_api_url: str | None = None
    public_url: str | None = None
    unsubscribe_secret: str | None = Field(default=None, repr=False)
    reply_to: str | None = None
    postal_address: str | None = None

    _secret: SigningKeys | None = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return "resend" if self.resend_api_key else "outbox"

    def get(self) -> EmailSender:
        if not self.resend_api_key:
            return OutboxSender(self.outbox_dir)
        return ResendSender(api_key=self.resend_api_key, base_url=self.resend_api_url)

    def signing_key(self) -> SigningKeys:
        if self._secret is None:
            self._secret = unsubscribe_keys(self.unsubscribe_secret, self.database_url)
        return self._secret

    def unsubscribe_link(self, email: str) -> str:
        return unsubscribe_url(self.public_url or self.local_url, email, self.signing_key())

    def confirm_link(self, row: Mapping[str, Any], campaign_slug: str) -> str:
        """A double opt-in confirmation row's link (`core.optin`), signed with the same
        keys as the unsubscribe links, valid until the row's expiry."""
        token = make_confirm_token(
            str(row["email"]),
            campaign_slug,
            str(row["confirm_subject"]),
            pd.Timestamp(row["confirm_expires_at"]).to_pydatetime(),
            self.signing_key(),
        )
        return confirm_url(self.public_url or self.local_url, token)

    def envelope(self) -> Envelope:
        return Envelope(
            from_email=self.from_email,
            unsubscribe_url=self.unsubscribe_link,
            reply_to=self.reply_to or "",
        )

    def problem(self) -> str:
        """Why this sender must not send bulk mail now ("" when it may)."""
        if self.backend != "resend":
            return ""  # the outbox sends nothing to anyone
        url = public_url_problem(self.public_url)
        if url:
            return (
                f"{url}: with Resend on, every email needs a working one-click unsubscribe "
                "link. Set XMAS_PUBLIC_URL to the intake's https address (a loopback http "
                "address is allowed for local tests)."
            )
        if not self.postal_address:
            return (
                "XMAS_POSTAL_ADDRESS is not set: with Resend on, every email must carry the "
                "sender's postal address."
            )
        return ""

    def deliver(
        self,
        store: StateStore,
        campaign: Campaign,
        templates: Mapping[str, TemplateSource],
        plan: pd.DataFrame,
        **options: Any,
    ) -> DeliveryReport:
        """The send path (`services.sending.deliver`) with this sender, its envelope and
        unsubscribe links; `options` go to `deliver` (suffix, gate, journal, now). Refuses,
        before anything is sent, when the sender is not fit for bulk mail (`problem`)."""
        problem = self.problem()
        if problem:
            raise dg.Failure(description=f"Nothing sent: {problem}")
        postal = self.postal_address or ""
        return deliver(
            store=store,
            sender=self.get(),
            renderer=Renderer(templates),
            campaign=campaign,
            plan=plan,
            context_for=lambda row: message_context(
                row,
                campaign,
                self.unsubscribe_link(row["email"]),
                postal,
                self.confirm_link(row, campaign.slug) if row.get("kind") == "confirm" else "",
            ),
            envelope=self.envelope(),
            **options,
        )


class AlertResource(dg.ConfigurableResource):
    """The Discord/Slack webhook told about CRITICAL signups, failed runs, stuck messages
    and Notion falling behind (off when no URL is set)."""

    webhook_url: str | None = Field(default=None, repr=False)  # the URL is the credential


class CalcomResource(dg.ConfigurableResource):
    """Cal.com API v2, for the polling sensor (`CALCOM_API_KEY`, `CALCOM_API_URL`)."""

    api_key: str = Field(repr=False)
    api_url: str = DEFAULT_API_URL

    def client(self) -> CalcomClient:
        return CalcomClient(self.api_key, self.api_url)


def sealed(resource: dg.ConfigurableResource, variables: Sequence[str]) -> dg.ResourceDefinition:
    """`resource`, as built from the settings when the code location loads, for Dagster with
    no launch-time config: the UI sees its description (naming `variables`), never a value,
    and a run config that sets anything on it fails Dagster's config check before the run
    is created, on every path (launchpad, backfill, re-execution, `execute_in_process`)."""

    def build(_context: dg.InitResourceContext) -> dg.ConfigurableResource:
        # A fresh copy for each run or tick, as Dagster makes of a configured resource:
        # nothing cached on one (an engine, a signing key) is shared with another.
        return resource.model_copy()

    # The UI shows the resource function's name as the resource's type.
    build.__name__ = build.__qualname__ = type(resource).__name__
    return dg.ResourceDefinition(
        resource_fn=build,
        config_schema={},
        description=(
            f"{inspect.getdoc(type(resource))}\n\n"
            f"Set from {', '.join(variables)} when the code location loads. It takes no "
            "launch-time config: a run whose config sets any of it is refused before it "
            "starts, so no launch can read a secret or send one elsewhere."
        ),
    )


def _names(*fields: str) -> list[str]:
    return [Settings.env_name(field) for field in fields]


def store_resource(settings: Settings) -> StateStoreResource:
    default = settings.campaign_file and settings.campaign().slug
    return StateStoreResource(
        database_url=settings.database_url,
        default_campaign=default or settings.default_campaign,
    )


def build_store(settings: Settings) -> SqlStore:
    """The store outside Dagster (CLI commands)."""
    return store_resource(settings).get()


def notion_resource(settings: Settings) -> NotionResource | None:
    """None when Notion is off (no NOTION_TOKEN); a clear error when it is half set."""
    if not settings.notion_enabled:
        return None
    missing = [
        name
        for name, value in (
            ("NOTION_CONTACTS_DB_ID", settings.notion_contacts_db_id),
            ("NOTION_EMAIL_SEQUENCE_DB_ID", settings.notion_sequences_db_id),
        )
        if not value
    ]
    if missing:
        raise SettingsError({name: "must be set when NOTION_TOKEN is set" for name in missing})
    return NotionResource(
        token=settings.reveal("notion_token") or "",
        base_url=settings.notion_base_url,
        contacts_db_id=settings.notion_contacts_db_id or "",
        sequences_db_id=settings.notion_sequences_db_id or "",
        analytics_db_id=settings.notion_analytics_db_id,
        templates_db_id=settings.notion_templates_db_id,
        rate_per_s=settings.notion_rate_per_s,
    )


def sender_resource(settings: Settings) -> EmailSenderResource:
    return EmailSenderResource(
        outbox_dir=str(settings.outbox_dir),
        from_email=settings.from_email,
        resend_api_key=settings.reveal("resend_api_key"),
        resend_api_url=settings.resend_api_url,
        public_url=settings.public_url,
        local_url=settings.intake_public_url,
        database_url=settings.database_url,
        unsubscribe_secret=settings.reveal("unsubscribe_secret"),
        reply_to=settings.reply_to,
        postal_address=settings.postal_address,
    )


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    resources: dict[str, Any] = {
        # Nothing passes between steps through a disk: every asset keeps its state in the
        # store or the inbox, and the few op values stay in the run worker's memory.
        "io_manager": dg.mem_io_manager,
        "inbox": sealed(InboxResource(root=settings.inbox_root), _names("inbox_url", "home")),
        "alerts": sealed(
            AlertResource(webhook_url=settings.reveal("alert_webhook_url")),
            _names("alert_webhook_url"),
        ),
        "store": sealed(store_resource(settings), _names("database_url", "home")),
        "sender": sealed(
            sender_resource(settings),
            _names(
                "resend_api_key",
                "resend_api_url",
                "from_email",
                "reply_to",
                "postal_address",
                "public_url",
                "unsubscribe_secret",
                "database_url",
                "home",
            ),
        ),
    }
    notion = notion_resource(settings)
    if notion is not None:
        resources["notion"] = sealed(
            notion,
            _names(
                "notion_token",
                "notion_base_url",
                "notion_contacts_db_id",
                "notion_sequences_db_id",
                "notion_analytics_db_id",
                "notion_templates_db_id",
                "notion_rate_per_s",
            ),
        )
    if settings.calcom_api_key is not None:
        resources["calcom"] = sealed(
            CalcomResource(
                api_key=settings.reveal("calcom_api_key") or "", api_url=settings.calcom_api_url
            ),
            _names("calcom_api_key", "calcom_api_url"),
        )
    return dg.Definitions(resources=resources)
