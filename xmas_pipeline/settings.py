"""Configuration from the environment (DESIGN.md, "Environment"). Unset means embedded."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def check_from_email(value: str) -> str:
    """The sender header: one address, no line breaks (it goes straight into a header)."""
    if re.search(r"[\r\n\x00]", value):
        raise ValueError("XMAS_FROM_EMAIL must be a single line")
    _, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"XMAS_FROM_EMAIL is not an address: {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    campaign_file: str | None
    testing_mode: bool
    from_email: str
    public_url: str | None
    unsubscribe_secret: str | None
    sensor_interval_seconds: int
    send_cron: str
    intake_port: int
    alert_webhook_url: str | None
    notion_token: str | None
    notion_base_url: str
    notion_contacts_db_id: str | None
    notion_sequences_db_id: str | None
    notion_templates_db_id: str | None
    notion_analytics_db_id: str | None
    resend_api_key: str | None
    resend_api_url: str | None
    calcom_api_key: str | None
    calcom_api_url: str
    calcom_webhook_secret: str | None
    resend_webhook_secret: str | None
    signup_token: str | None

    @property
    def inbox_root(self) -> Path:
        return self.home / "inbox"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def notion_enabled(self) -> bool:
        return bool(self.notion_token)

    @property
    def resend_enabled(self) -> bool:
        return bool(self.resend_api_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(_get(env, "XMAS_HOME") or ".xmas").expanduser().resolve()
        database_url = _get(env, "XMAS_DATABASE_URL") or f"sqlite:///{home / 'state.db'}"
        interval = int(_get(env, "XMAS_SENSOR_INTERVAL_SECONDS") or 30)
        if interval < 1:
            raise ValueError("XMAS_SENSOR_INTERVAL_SECONDS must be at least 1")
        return cls(
            home=home,
            database_url=database_url,
            campaign_file=_get(env, "XMAS_CAMPAIGN_FILE"),
            testing_mode=(_get(env, "XMAS_TESTING_MODE") or "").lower() in _TRUE,
            from_email=check_from_email(
                _get(env, "XMAS_FROM_EMAIL") or "BusOS <hello@example.com>"
            ),
            public_url=(_get(env, "XMAS_PUBLIC_URL") or "").rstrip("/") or None,
            unsubscribe_secret=_get(env, "XMAS_UNSUBSCRIBE_SECRET"),
            sensor_interval_seconds=interval,
            send_cron=_get(env, "XMAS_SEND_CRON") or "*/5 * * * *",
            intake_port=int(_get(env, "XMAS_INTAKE_PORT") or 8000),
            alert_webhook_url=_get(env, "XMAS_ALERT_WEBHOOK_URL"),
            notion_token=_get(env, "NOTION_TOKEN"),
            notion_base_url=_get(env, "NOTION_BASE_URL") or "https://api.notion.com",
            notion_contacts_db_id=_get(env, "NOTION_CONTACTS_DB_ID"),
            notion_sequences_db_id=_get(env, "NOTION_EMAIL_SEQUENCE_DB_ID"),
            notion_templates_db_id=_get(env, "NOTION_TEMPLATES_DB_ID"),
            notion_analytics_db_id=_get(env, "NOTION_EMAIL_ANALYTICS_DB_ID"),
            resend_api_key=_get(env, "RESEND_API_KEY"),
            resend_api_url=_get(env, "RESEND_API_URL"),
            calcom_api_key=_get(env, "CALCOM_API_KEY"),
            calcom_api_url=_get(env, "CALCOM_API_URL") or "https://api.cal.com",
            calcom_webhook_secret=_get(env, "CALCOM_WEBHOOK_SECRET"),
            resend_webhook_secret=_get(env, "RESEND_WEBHOOK_SECRET"),
            signup_token=_get(env, "XMAS_SIGNUP_TOKEN"),
        )
