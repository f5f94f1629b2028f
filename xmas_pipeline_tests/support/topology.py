"""The production topology as processes: one command per process, and the environment
variables each one reads. The topology tests start exactly these commands, and the tests of
the files under `deploy/` (Docker, compose, systemd, Helm, Kubernetes) check that every
file runs the same commands with the same variable names, so the two cannot drift.
"""

from __future__ import annotations

CODE_SERVER_PORT = 4000
WEBSERVER_PORT = 3000
INTAKE_PORT = 8000
CODE_LOCATION = "xmas_pipeline"
DEFINITIONS_MODULE = "xmas_pipeline.definitions"


def migrate_command() -> list[str]:
    """Creates (or upgrades) Dagster's tables in PostgreSQL. Run once before the webserver
    and the daemon start: both would otherwise race to create them on a fresh database."""
    return ["dagster", "instance", "migrate"]


def code_server_command(host: str = "0.0.0.0", port: int = CODE_SERVER_PORT) -> list[str]:
    """The code location as a gRPC server (runs are launched from here)."""
    return [
        "dagster",
        "api",
        "grpc",
        "--host",
        host,
        "--port",
        str(port),
        "--module-name",
        DEFINITIONS_MODULE,
        "--attribute",
        "defs",
        "--location-name",
        CODE_LOCATION,
    ]


def webserver_command(
    workspace: str, host: str = "0.0.0.0", port: int = WEBSERVER_PORT
) -> list[str]:
    """The UI, pointed at the code server through the workspace file."""
    return ["dagster-webserver", "--host", host, "--port", str(port), "--workspace", workspace]


def daemon_command(workspace: str) -> list[str]:
    """Schedules, sensors, the run queue, run monitoring and run retries."""
    return ["dagster-daemon", "run", "--workspace", workspace]


def intake_command(host: str = "0.0.0.0", port: int = INTAKE_PORT, workers: int = 2) -> list[str]:
    """The HTTP intake, several worker processes."""
    return [
        "xmas-pipeline",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


# What the Dagster processes read: the instance (deploy/dagster.yaml) takes its PostgreSQL
# URL from DAGSTER_POSTGRES_URL; run workers launched by the code server read it too. That
# URL names the psycopg2 driver (DAGSTER_POSTGRES_SCHEME): with SQLAlchemy 2.1 a URL without
# a driver picks psycopg 3, and dagster-postgres then fails at run time.
DAGSTER_ENV = ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL")
DAGSTER_POSTGRES_SCHEME = "postgresql+psycopg2"
# What the pipeline's own code reads, in the code server and the intake alike. Secrets are
# among them: a deployment passes them as environment variables, never in a file.
PIPELINE_ENV = (
    "XMAS_HOME",
    "XMAS_DATABASE_URL",
    "XMAS_INBOX_URL",
    "XMAS_PUBLIC_URL",
    "XMAS_UNSUBSCRIBE_SECRET",
    "XMAS_FROM_EMAIL",
    "XMAS_REPLY_TO",
    "XMAS_POSTAL_ADDRESS",
    "XMAS_SIGNUP_TOKEN",
    "XMAS_ALERT_WEBHOOK_URL",
    "RESEND_API_KEY",
    "RESEND_WEBHOOK_SECRET",
    "CALCOM_WEBHOOK_SECRET",
    "CALCOM_API_KEY",
)
# What a production deployment cannot run without: the send run refuses Resend without a
# postal address and an https public URL, and an intake behind a proxy refuses unsigned
# Cal.com webhooks. The rest is optional (XMAS_UNSUBSCRIBE_SECRET: generated and kept in
# the store when unset).
REQUIRED_PIPELINE_ENV = (
    "XMAS_DATABASE_URL",
    "XMAS_PUBLIC_URL",
    "XMAS_FROM_EMAIL",
    "XMAS_POSTAL_ADDRESS",
    "RESEND_API_KEY",
    "RESEND_WEBHOOK_SECRET",
    "CALCOM_WEBHOOK_SECRET",
)
# The Notion sync runs in the code server's runs only (the intake never talks to Notion).
# All optional: without NOTION_TOKEN there is no sync.
NOTION_ENV = (
    "NOTION_TOKEN",
    "NOTION_CONTACTS_DB_ID",
    "NOTION_EMAIL_SEQUENCE_DB_ID",
    "NOTION_TEMPLATES_DB_ID",
    "NOTION_EMAIL_ANALYTICS_DB_ID",
)
# The public signup's abuse protections: read by the intake alone (the captcha secret
# never reaches the code server). All optional.
INTAKE_ENV = (
    "XMAS_SIGNUP_ALLOWED_ORIGINS",
    "XMAS_SIGNUP_RATE_PER_IP",
    "XMAS_SIGNUP_RATE_PER_EMAIL",
    "XMAS_TRUSTED_PROXIES",
    "XMAS_CAPTCHA_SECRET",
    "XMAS_CAPTCHA_PROVIDER",
)
# Which process gets which variables.
PROCESS_ENV: dict[str, tuple[str, ...]] = {
    "migrate": DAGSTER_ENV,
    "code-server": (*DAGSTER_ENV, *PIPELINE_ENV, *NOTION_ENV),
    "webserver": DAGSTER_ENV,
    "daemon": DAGSTER_ENV,
    "intake": (*PIPELINE_ENV, *INTAKE_ENV),
}
# What waits for migrate_command() to have succeeded: every process that opens the Dagster
# instance when it starts (the code server does too, to serve runs).
AFTER_MIGRATE = ("code-server", "webserver", "daemon")
# The intake's paths the proxy exposes to the internet; everything else stays internal.
PUBLIC_PATHS = ("/webhook/", "/unsubscribe", "/api/deployments/", "/health", "/healthz")
