"""Resources: each picks its backend from configuration (embedded defaults need none)."""

from functools import cached_property

import dagster as dg
from pydantic import PrivateAttr

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.adapters.outbox import OutboxSender
from xmas_pipeline.adapters.sender import EmailSender
from xmas_pipeline.adapters.sql_store import SqlStore
from xmas_pipeline.adapters.store import StateStore
from xmas_pipeline.alerting import AlertLedger
from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.render import TemplateSource, load_template_dir
from xmas_pipeline.journal import SendJournal


class CampaignResource(dg.ConfigurableResource):
    """The campaign file (XMAS_CAMPAIGN_FILE) and the testing preset (XMAS_TESTING_MODE)."""

    campaign_file: str | None = None
    testing_mode: bool = False

    @cached_property
    def campaign(self) -> Campaign:
        return load_campaign(self.campaign_file, testing_mode=self.testing_mode)


class InboxResource(dg.ConfigurableResource):
    """The inbox folder that the intake writes and the sensors read."""

    root: str

    def get(self) -> Inbox:
        return Inbox(self.root)


class StateStoreResource(dg.ConfigurableResource):
    """SQL by default; Notion when a token is configured."""

    database_url: str
    notion_token: str | None = None
    notion_base_url: str = "https://api.notion.com"
    notion_contacts_db_id: str | None = None
    notion_sequences_db_id: str | None = None
    notion_analytics_db_id: str | None = None
    notion_templates_db_id: str | None = None

    _store: StateStore | None = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return "notion" if self.notion_token else "sql"

    def get(self) -> StateStore:
        if self._store is None:
            self._store = self._build()
        return self._store

    def _build(self) -> StateStore:
        if not self.notion_token:
            return SqlStore(self.database_url)
        from xmas_pipeline.adapters.notion_store import NotionStore

        missing = [
            name
            for name, value in (
                ("NOTION_CONTACTS_DB_ID", self.notion_contacts_db_id),
                ("NOTION_EMAIL_SEQUENCE_DB_ID", self.notion_sequences_db_id),
            )
            if not value
        ]
        if missing:
            raise dg.Failure(f"NOTION_TOKEN is set but {', '.join(missing)} is not")
        return NotionStore(
            token=self.notion_token,
            contacts_db_id=self.notion_contacts_db_id or "",
            sequences_db_id=self.notion_sequences_db_id or "",
            base_url=self.notion_base_url,
            analytics_db_id=self.notion_analytics_db_id,
            # Bookings, reminder outcomes and email events: kept in the SQL store.
            ledger=SqlStore(self.database_url),
        )

    def templates(self) -> dict[str, TemplateSource]:
        """Shipped templates, overridden by name by the Notion templates DB when set."""
        templates = load_template_dir()
        if self.notion_token and self.notion_templates_db_id:
            from xmas_pipeline.adapters.notion_templates import load_notion_templates

            templates.update(load_notion_templates(self.get(), self.notion_templates_db_id))
        return templates


class EmailSenderResource(dg.ConfigurableResource):
    """The outbox folder by default; Resend when an API key is configured."""

    outbox_dir: str
    from_email: str
    resend_api_key: str | None = None
    resend_api_url: str | None = None
    public_url: str | None = None
    unsubscribe_secret: str | None = None
    journal_dir: str | None = None  # the send journal (see xmas_pipeline/journal.py)

    def journal(self) -> SendJournal | None:
        return SendJournal(self.journal_dir) if self.journal_dir else None

    @property
    def backend(self) -> str:
        return "resend" if self.resend_api_key else "outbox"

    def get(self) -> EmailSender:
        if not self.resend_api_key:
            return OutboxSender(self.outbox_dir)
        from xmas_pipeline.adapters.resend_sender import ResendSender

        return ResendSender(api_key=self.resend_api_key, base_url=self.resend_api_url)

    def unsubscribe_link(self, email: str) -> str | None:
        if not (self.public_url and self.unsubscribe_secret):
            return None
        from xmas_pipeline.core.unsubscribe import unsubscribe_url

        return unsubscribe_url(self.public_url, email, self.unsubscribe_secret)


class AlertResource(dg.ConfigurableResource):
    """The Discord/Slack webhook told about CRITICAL signups (off when no URL is set)."""

    webhook_url: str | None = None
    ledger_dir: str

    def ledger(self) -> AlertLedger:
        return AlertLedger(self.ledger_dir)
