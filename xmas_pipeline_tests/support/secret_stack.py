"""Every integration on, each with a marked secret: the fakes of Resend, Notion, Cal.com and
the chat webhook, started with the markers as their keys, and a fresh PostgreSQL database
reached with a marked password (the machines' PostgreSQL trusts 127.0.0.1 and ignores it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from xmas_pipeline.adapters.sql.migrate import migrate_store
from xmas_pipeline_tests.fakes.calcom_api import FakeCalcomApi
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, busos_workspace
from xmas_pipeline_tests.fakes.resend_api import FakeResendAPI, running_fake
from xmas_pipeline_tests.support.stores import postgres_database
from xmas_pipeline_tests.support.ui_secrets import SecretMarkers

POSTAL_ADDRESS = "BusOS Ltd, 1 King St W, Toronto ON M5H 1A1"


@dataclass
class SecretStack:
    markers: SecretMarkers
    env: dict[str, str]
    resend: FakeResendAPI
    notion: FakeNotion
    workspace: Workspace
    calcom: FakeCalcomApi
    chat: ChatWebhookServer


@contextmanager
def secret_stack(home: Path, **extra: str) -> Iterator[SecretStack]:
    """The fakes and the database, and the environment pointing the pipeline at them."""
    markers = SecretMarkers()
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        migrate_store(database)  # as a deployment does before its processes start
        resend = stack.enter_context(running_fake(api_key=markers.resend_key, rate_limit=None))
        notion = stack.enter_context(FakeNotion(token=markers.notion_token))
        calcom = stack.enter_context(FakeCalcomApi(api_key=markers.calcom_key))
        chat = stack.enter_context(ChatWebhookServer(flavour="json", token=markers.alert_token))
        workspace = busos_workspace(notion)
        env = markers.env(
            alert_url=chat.url,
            XMAS_HOME=str(home),
            XMAS_DATABASE_URL=markers.with_password(database),
            XMAS_TESTING_MODE="true",
            RESEND_API_URL=resend.base_url,
            XMAS_POSTAL_ADDRESS=POSTAL_ADDRESS,
            XMAS_PUBLIC_URL="https://campaign.example.com",
            NOTION_BASE_URL=notion.base_url,
            NOTION_CONTACTS_DB_ID=workspace.contacts,
            NOTION_EMAIL_SEQUENCE_DB_ID=workspace.sequences,
            CALCOM_API_URL=calcom.url,
            **extra,
        )
        yield SecretStack(markers, env, resend, notion, workspace, calcom, chat)
