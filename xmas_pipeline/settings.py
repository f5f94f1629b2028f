"""Configuration, read once from the environment: the pipeline and the intake alike.

Every variable is optional; unset (or empty) means the embedded default, so `make dev`
needs none. Secrets are `SecretStr`: no repr, log or error message shows them. A bad
value is reported with every other bad value at once, by the variable's name.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from xmas_pipeline.core.campaign import (
    CAMPAIGN_FILE_NAME,
    DEFAULT_CAMPAIGN_SLUG,
    SHIPPED_CAMPAIGNS_DIR,
    Campaign,
    load_campaign,
)
from xmas_pipeline.core.campaign_folders import (
    check_slug,
    discover_campaigns,
    load_campaign_folder,
)
from xmas_pipeline.core.campaign_set import CampaignSet, campaign_set
from xmas_pipeline.core.captcha import VERIFY_URLS
from xmas_pipeline.core.client_address import LOOPBACK, Network, parse_networks
from xmas_pipeline.core.links import check_host_entry, host_of
from xmas_pipeline.core.origins import parse_origins
from xmas_pipeline.core.rate_limit import Rate, parse_rate
from xmas_pipeline.core.reputation import ReputationLimits
from xmas_pipeline.core.safe_text import first_unsafe

DEFAULT_INTAKE_PORT = 8000
MAX_BODY_BYTES = 64 * 1024

# A mapping to read instead of the process environment (`Settings.from_env(mapping)`).
_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("xmas_env", default=None)


class SettingsError(ValueError):
    """One or more variables are wrong; the message names each one, never its value."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        lines = [f"  {name}: {reason}" for name, reason in problems.items()]
        super().__init__("invalid configuration:\n" + "\n".join(lines))


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping when there is one."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRONMENT.get()
        if given is None:
            return super()._load_env_vars()
        return {
            (k if self.case_sensitive else k.lower()): v
            for k, v in given.items()
            if not (self.env_ignore_empty and v.strip() == "")
        }


# One mailbox: `address` or `Display Name <address>` (the name may be quoted). A list ("a@x,
# b@x", a group) must not pass: `parseaddr` reads only its first address, and the provider
# then refuses every email of the run for it.
_ADDRESS = r"[^\s@<>,;:\"()\[\]\\]+@[^\s@<>,;:\"()\[\]\\]+"
_NAME = r'(?:"(?:[^"\\]|\\.)*"\s*|[^"<>,;:@\\]*)'  # quoted, or without specials
_MAILBOX = re.compile(rf"^(?:{_ADDRESS}|{_NAME}<{_ADDRESS}>)$")


def check_from_email(value: str) -> str:
    """A sender or reply-to header: exactly one address, on one line (it goes straight into
    a header). Errors never echo the value."""
    if first_unsafe(value) is not None:
        raise ValueError("must be a single line, without control or invisible characters")
    if not _MAILBOX.match(value):
        count = len([address for _, address in getaddresses([value]) if address])
        if count > 1:
            raise ValueError(f"holds {count} addresses: give exactly one")
        raise ValueError("is not one email address (e.g. BusOS <hello@example.com>)")
    return value


def check_svix_secret(secret: str) -> None:
    """Fail at start-up, not on the first webhook, when the Resend secret is malformed."""
    raw = secret.removeprefix("whsec_")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise ValueError("is not a Svix signing secret (base64, as Resend shows it)")


def _env(name: str, default: Any = None, **kwargs: Any) -> Any:
    return Field(default, validation_alias=name, **kwargs)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        populate_by_name=True, env_ignore_empty=True, extra="ignore", str_strip_whitespace=True
    )

    home: Path = _env("XMAS_HOME", Path(".xmas"))
    database_url: str = _env("XMAS_DATABASE_URL", "")
    inbox_url: str = _env("XMAS_INBOX_URL", "")
    campaign_file: str | None = _env("XMAS_CAMPAIGN_FILE")
    # Campaign folders (`core.campaign_folders`): the code location runs every one of them,
    # unless XMAS_CAMPAIGN_FILE names one campaign file, which is then the only campaign.
    campaigns_dir: Path = _env("XMAS_CAMPAIGNS_DIR", SHIPPED_CAMPAIGNS_DIR)
    default_campaign: str = _env("XMAS_DEFAULT_CAMPAIGN", DEFAULT_CAMPAIGN_SLUG)
    testing_mode: bool = _env("XMAS_TESTING_MODE", False)
    # Inbox day folders older than this, once ingested, are removed by `inbox_retention`.
    inbox_retention_days: int = _env("XMAS_INBOX_RETENTION_DAYS", 90, ge=1)
    from_email: str = _env("XMAS_FROM_EMAIL", "BusOS <hello@example.com>")
    reply_to: str | None = _env("XMAS_REPLY_TO")
    # Bulk-mail law asks for the sender's postal address in every email (required with
    # Resend on: a send run refuses to start without it).
    postal_address: str | None = _env("XMAS_POSTAL_ADDRESS")
    public_url: str | None = _env("XMAS_PUBLIC_URL")
    # Hosts an email may link to or load from besides the campaign's own (comma-separated;
    # `*.example.com` for every subdomain).
    allowed_link_hosts: str = _env("XMAS_ALLOWED_LINK_HOSTS", "")
    unsubscribe_secret: SecretStr | None = _env("XMAS_UNSUBSCRIBE_SECRET")
    sensor_interval_seconds: int = _env("XMAS_SENSOR_INTERVAL_SECONDS", 30, ge=1)
    # Unset: every 5 minutes, or every minute in testing mode (the steps are a minute apart).
    send_cron: str = _env("XMAS_SEND_CRON", "")
    intake_port: int = _env("XMAS_INTAKE_PORT", DEFAULT_INTAKE_PORT, ge=1, le=65535)
    intake_max_body_bytes: int = _env("XMAS_INTAKE_MAX_BODY_BYTES", MAX_BODY_BYTES, ge=1)
    # A run refreshes its heartbeat this often; one silent for `run_dead_after_seconds` is
    # marked failed (its worker died) so it holds nothing back.
    run_heartbeat_seconds: float = _env("XMAS_RUN_HEARTBEAT_SECONDS", 15.0, gt=0)
    run_dead_after_seconds: float = _env("XMAS_RUN_DEAD_AFTER_SECONDS", 120.0, gt=0)
    # The reputation guard (core/reputation.py): rates over the emails sent in the last
    # window (at least `min_sent` of them); percents. Warn alerts ops, pause stops sending.
    reputation_window_days: float = _env("XMAS_REPUTATION_WINDOW_DAYS", 7.0, gt=0, le=90)
    reputation_min_sent: int = _env("XMAS_REPUTATION_MIN_SENT", 200, ge=1)
    bounce_warn_percent: float = _env("XMAS_BOUNCE_WARN_PERCENT", 4.0, gt=0, le=100)
    bounce_pause_percent: float = _env("XMAS_BOUNCE_PAUSE_PERCENT", 8.0, gt=0, le=100)
    complaint_warn_percent: float = _env("XMAS_COMPLAINT_WARN_PERCENT", 0.08, gt=0, le=100)
    complaint_pause_percent: float = _env("XMAS_COMPLAINT_PAUSE_PERCENT", 0.3, gt=0, le=100)
    signup_token: SecretStr | None = _env("XMAS_SIGNUP_TOKEN")
    # Abuse limits of the public signup (intake/abuse.py): "<count>/<period>", 0/off for none.
    signup_rate_per_ip: str = _env("XMAS_SIGNUP_RATE_PER_IP", "30/hour")
    signup_rate_per_email: str = _env("XMAS_SIGNUP_RATE_PER_EMAIL", "5/hour")
    # Peers whose X-Forwarded-For is believed (CIDR list; "none" for no proxy). Caddy runs
    # on the same host by default; in Docker Compose it is another container.
    trusted_proxies: str = _env("XMAS_TRUSTED_PROXIES", LOOPBACK)
    # Web origins whose pages may post signups from a browser ("*" for any; none by default).
    signup_allowed_origins: str = _env("XMAS_SIGNUP_ALLOWED_ORIGINS", "")
    # A bot check on signups when the secret is set (Turnstile or hCaptcha).
    captcha_secret: SecretStr | None = _env("XMAS_CAPTCHA_SECRET")
    captcha_provider: Literal["turnstile", "hcaptcha"] = _env("XMAS_CAPTCHA_PROVIDER", "turnstile")
    captcha_verify_url: str | None = _env("XMAS_CAPTCHA_VERIFY_URL")  # tests only
    alert_webhook_url: SecretStr | None = _env("XMAS_ALERT_WEBHOOK_URL")
    notion_token: SecretStr | None = _env("NOTION_TOKEN")
    notion_base_url: str = _env("NOTION_BASE_URL", "https://api.notion.com")
    notion_contacts_db_id: str | None = _env("NOTION_CONTACTS_DB_ID")
    notion_sequences_db_id: str | None = _env("NOTION_EMAIL_SEQUENCE_DB_ID")
    notion_templates_db_id: str | None = _env("NOTION_TEMPLATES_DB_ID")
    notion_analytics_db_id: str | None = _env("NOTION_EMAIL_ANALYTICS_DB_ID")
    # The sync waits this long after a contact's first unsynced change, so that changes
    # close together cost one write; a backlog of 100 contacts starts it at once.
    notion_sync_delay_seconds: float = _env("XMAS_NOTION_SYNC_DELAY_SECONDS", 30.0, ge=0)
    # `notion_in_sync` turns red when a change has waited longer than this for Notion.
    notion_max_lag_seconds: float = _env("XMAS_NOTION_MAX_LAG_SECONDS", 900.0, gt=0)
    notion_rate_per_s: float = _env("XMAS_NOTION_RATE_PER_S", 3.0, gt=0, le=10)
    resend_api_key: SecretStr | None = _env("RESEND_API_KEY")
    resend_api_url: str | None = _env("RESEND_API_URL")
    resend_webhook_secret: SecretStr | None = _env("RESEND_WEBHOOK_SECRET")
    calcom_api_key: SecretStr | None = _env("CALCOM_API_KEY")
    calcom_api_url: str = _env("CALCOM_API_URL", "https://api.cal.com")
    calcom_webhook_secret: SecretStr | None = _env("CALCOM_WEBHOOK_SECRET")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values given in code win; then the environment. No .env or secrets files: a
        # deployment passes its secrets as environment variables.
        return (init_settings, _MappingEnvSource(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from the process environment, or from `env` alone."""
        token = _ENVIRONMENT.set(None if env is None else dict(env))
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_problems(exc)) from None
        finally:
            _ENVIRONMENT.reset(token)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from these values (by field name) alone, the environment unread: for
        tests and tools that must not pick up a developer's shell variables."""
        token = _ENVIRONMENT.set({})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(_problems(exc)) from None
        finally:
            _ENVIRONMENT.reset(token)

    @field_validator("from_email", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return check_from_email(value) if value is not None else None

    @field_validator("postal_address")
    @classmethod
    def _postal(cls, value: str | None) -> str | None:
        if value is not None and re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError("must be one line (separate the parts with commas)")
        return value

    @field_validator("default_campaign")
    @classmethod
    def _default_campaign(cls, value: str) -> str:
        return check_slug(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL, e.g. https://campaign.example.com")
        return value.rstrip("/") if value else None

    @field_validator("allowed_link_hosts")
    @classmethod
    def _link_hosts(cls, value: str) -> str:
        hosts = [check_host_entry(host) for host in value.split(",") if host.strip()]
        return ",".join(hosts)

    @field_validator("signup_rate_per_ip", "signup_rate_per_email")
    @classmethod
    def _rate(cls, value: str) -> str:
        rate = parse_rate(value)
        return str(rate) if rate else "off"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        if value.strip().lower() == "none":
            return ""
        return ",".join(str(net) for net in parse_networks(value))

    @field_validator("signup_allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        return ",".join(parse_origins(value))

    @field_validator("captcha_provider", mode="before")
    @classmethod
    def _provider(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("captcha_verify_url")
    @classmethod
    def _verify_url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("send_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value and len(value.split()) != 5:
            raise ValueError("must be a cron expression of 5 fields, e.g. */5 * * * *")
        return value

    @field_validator("resend_webhook_secret")
    @classmethod
    def _svix(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_svix_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if self.run_dead_after_seconds < 3 * self.run_heartbeat_seconds:
            raise ValueError(
                "XMAS_RUN_DEAD_AFTER_SECONDS must be at least 3 x XMAS_RUN_HEARTBEAT_SECONDS"
            )
        for kind in ("BOUNCE", "COMPLAINT"):
            warn = getattr(self, f"{kind.lower()}_warn_percent")
            if warn >= getattr(self, f"{kind.lower()}_pause_percent"):
                raise ValueError(
                    f"XMAS_{kind}_WARN_PERCENT must be below XMAS_{kind}_PAUSE_PERCENT"
                )
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'state.db'}"
        return self

    # -- derived ------------------------------------------------------------------------

    @property
    def inbox_root(self) -> str:
        """The inbox: a folder, or an object-store URL (`s3://bucket/prefix`)."""
        return self.inbox_url or str(self.home / "inbox")

    @property
    def effective_send_cron(self) -> str:
        """XMAS_SEND_CRON, else every 5 minutes (every minute in testing mode)."""
        if self.send_cron:
            return self.send_cron
        return "* * * * *" if self.testing_mode else "*/5 * * * *"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def intake_public_url(self) -> str:
        """Where the intake is reached from outside (unsubscribe links point here)."""
        return self.public_url or f"http://localhost:{self.intake_port}"

    @property
    def reputation_limits(self) -> ReputationLimits:
        return ReputationLimits(
            window=timedelta(days=self.reputation_window_days),
            min_sent=self.reputation_min_sent,
            warn_bounce=self.bounce_warn_percent / 100,
            warn_complaint=self.complaint_warn_percent / 100,
            pause_bounce=self.bounce_pause_percent / 100,
            pause_complaint=self.complaint_pause_percent / 100,
        )

    @property
    def link_hosts(self) -> list[str]:
        """The deployment's hosts an email may point at: the intake's (unsubscribe links
        go there) and XMAS_ALLOWED_LINK_HOSTS; the campaign adds its own."""
        own = host_of(self.intake_public_url)
        extra = [host for host in self.allowed_link_hosts.split(",") if host]
        return sorted({*extra, *([own] if own else [])})

    @property
    def rate_per_ip(self) -> Rate | None:
        return parse_rate(self.signup_rate_per_ip)

    @property
    def rate_per_email(self) -> Rate | None:
        return parse_rate(self.signup_rate_per_email)

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return parse_origins(self.signup_allowed_origins)

    @property
    def captcha_url(self) -> str:
        """The provider's verify endpoint (XMAS_CAPTCHA_VERIFY_URL only for tests)."""
        return self.captcha_verify_url or VERIFY_URLS[self.captcha_provider]

    @property
    def notion_enabled(self) -> bool:
        return self.notion_token is not None

    @property
    def resend_enabled(self) -> bool:
        return self.resend_api_key is not None

    @property
    def campaign_path(self) -> Path:
        """The running campaign's file: XMAS_CAMPAIGN_FILE, else the default campaign's
        folder in XMAS_CAMPAIGNS_DIR."""
        if self.campaign_file:
            return Path(self.campaign_file)
        return self.campaigns_dir / self.default_campaign / CAMPAIGN_FILE_NAME

    def campaign(self) -> Campaign:
        if self.campaign_file:
            campaign = load_campaign(self.campaign_file, testing_mode=self.testing_mode)
        else:
            # A folder's slug must be its name: checked here as in `campaign list`.
            folder = self.campaigns_dir / self.default_campaign
            campaign = load_campaign_folder(folder, testing_mode=self.testing_mode)
        return campaign.with_link_hosts(self.link_hosts)

    def campaigns(self) -> CampaignSet:
        """The campaigns to run: every folder of XMAS_CAMPAIGNS_DIR (a broken one is kept
        with its reason, the others load), or XMAS_CAMPAIGN_FILE's campaign alone. Each
        with the testing preset and the link hosts, as `campaign()` gives them."""
        if self.campaign_file:
            return CampaignSet.of_one(self.campaign())
        results = discover_campaigns(self.campaigns_dir, testing_mode=self.testing_mode)
        hosts = self.link_hosts
        return campaign_set(results, self.default_campaign, lambda c: c.with_link_hosts(hosts))

    @staticmethod
    def env_name(field: str) -> str:
        """The variable a field is read from (`notion_token` -> `NOTION_TOKEN`)."""
        alias = Settings.model_fields[field].validation_alias
        return str(alias) if alias else field.upper()

    def reveal(self, field: str) -> str | None:
        """A secret's value, for the one place that must hand it to a client."""
        value = getattr(self, field)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


def _problems(error: ValidationError) -> dict[str, str]:
    names = {name: Settings.env_name(name) for name in Settings.model_fields}
    aliases = set(names.values())
    problems: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        where = str(item["loc"][0]) if item["loc"] else "configuration"
        name = where if where in aliases else names.get(where, where)
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.setdefault(name, message)
    return problems
