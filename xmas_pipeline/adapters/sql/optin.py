"""Double opt-in and the retake rule in the SQL store: consent records, held profile
changes, and confirmations applied (`core.optin`, `core.retake`).

Every function here writes inside the caller's transaction, so a signup, its consent
record and its held change are stored together or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.notion_queue import mark_dirty
from xmas_pipeline.adapters.sql.tables import consent_records, profile_changes, sequences
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.optin import Confirmation, confirmation_open, signup_subject
from xmas_pipeline.core.ports import UpsertReport
from xmas_pipeline.core.retake import decide_retake
from xmas_pipeline.core.signup import SignupEvent


@dataclass
class ConfirmReport:
    started: list[str] = field(default_factory=list)  # sequences that start now
    changed: list[str] = field(default_factory=list)  # held changes applied now
    repeated: list[str] = field(default_factory=list)  # confirmed before: nothing to do
    unknown: list[str] = field(default_factory=list)  # nothing asked for under that link


def _record_request(
    conn: sa.Connection, campaign: Campaign, event: SignupEvent, subject: str
) -> None:
    request = event.request or {}
    conn.execute(
        upsert(conn, consent_records)
        .values(
            campaign=campaign.slug,
            contact_key=event.contact_key,
            subject=subject,
            requested_at=utc(event.received_at),
            request_ip=str(request.get("ip", ""))[:64],
            request_user_agent=str(request.get("user_agent", ""))[:500],
            request_forwarded_for=str(request.get("forwarded_for", ""))[:200],
            request_source=event.source,
        )
        .on_conflict_do_nothing()
    )


def ask_confirmation(conn: sa.Connection, campaign: Campaign, event: SignupEvent) -> dict[str, Any]:
    """A new signup under double opt-in: its consent record, and the sequence columns
    that hold it until confirmed."""
    subject = signup_subject(event.source)
    _record_request(conn, campaign, event, subject)
    return {
        "awaiting_confirmation": True,
        "confirm_subject": subject,
        "confirm_requested_at": utc(event.received_at),
        "confirm_sent_at": None,
    }


def _where(campaign: Campaign, key: str) -> Any:
    return sa.and_(sequences.c.campaign == campaign.slug, sequences.c.contact_key == key)


def retake_signup(
    conn: sa.Connection,
    campaign: Campaign,
    event: SignupEvent,
    existing: dict[str, Any],
    profile: dict[str, Any],
    now: datetime,
    report: UpsertReport,
) -> None:
    """A signup for a contact who has a sequence: the retake rule (`core.retake`)."""
    key = event.contact_key
    if event.source and event.source == existing.get("source"):
        report.unchanged.append(key)  # the sequence's own signup, ingested again
        return
    awaiting = bool(existing.get("awaiting_confirmation"))
    requested = existing.get("confirm_requested_at")
    if awaiting and requested is not None and utc(event.received_at) < utc(requested):
        report.unchanged.append(key)  # older than the open round (a day ingested again)
        return
    asked_open = (
        bool(existing.get("confirm_subject"))
        and requested is not None
        and (confirmation_open(utc(requested), campaign.confirm_ttl, utc(event.received_at)))
    )
    decision = decide_retake(existing, profile, running=not awaiting)
    values: dict[str, Any] = dict(decision.apply)
    if awaiting and not asked_open and campaign.double_opt_in:
        # The first link expired unclicked: this signup asks once more (one email).
        values.update(ask_confirmation(conn, campaign, event))
        report.awaiting.append(key)
    elif decision.unchanged:
        report.unchanged.append(key)
        return
    if decision.held:
        change_id = signup_subject(event.source).split(":", 1)[1]
        changes = json.dumps(decision.held, ensure_ascii=False, sort_keys=True)
        # This signup seen before, or the same change already waiting: nothing new.
        known = conn.execute(
            sa.select(profile_changes.c.change_id).where(
                sa.or_(
                    profile_changes.c.change_id == change_id,
                    sa.and_(
                        profile_changes.c.campaign == campaign.slug,
                        profile_changes.c.contact_key == key,
                        profile_changes.c.changes == changes,
                        profile_changes.c.status.in_(["pending", "held"]),
                    ),
                )
            )
        ).first()
        if known is None:
            # One confirmation open at a time: a change arriving while one is open is held.
            pending = campaign.double_opt_in and not asked_open
            conn.execute(
                profile_changes.insert().values(
                    change_id=change_id,
                    campaign=campaign.slug,
                    contact_key=key,
                    changes=changes,
                    status="pending" if pending else "held",
                    source=event.source,
                    created_at=utc(event.received_at),
                )
            )
            if pending:
                subject = f"change:{change_id}"
                _record_request(conn, campaign, event, subject)
                values.update(
                    confirm_subject=subject,
                    confirm_requested_at=utc(event.received_at),
                    confirm_sent_at=None,
                )
                report.asked.append(key)
            report.held.append(key)
    if not values:
        report.unchanged.append(key)
        return
    conn.execute(sequences.update().where(_where(campaign, key)).values(**values, updated_at=now))
    report.updated.append(key)


def _apply_change(
    conn: sa.Connection,
    campaign: Campaign,
    change_id: str,
    statuses: tuple[str, ...],
    at: datetime,
    contact: str | None = None,
) -> str | None:
    """Apply one held change in one of `statuses` (and of `contact`, when given) to its
    sequence: its contact, or None when there is no such change."""
    query = sa.select(profile_changes).where(
        profile_changes.c.change_id == change_id,
        profile_changes.c.campaign == campaign.slug,
        profile_changes.c.status.in_(list(statuses)),
    )
    if contact is not None:
        query = query.where(profile_changes.c.contact_key == contact)
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    key = str(row["contact_key"])
    conn.execute(
        sequences.update()
        .where(_where(campaign, key))
        .values(**json.loads(row["changes"]), updated_at=datetime.now(UTC))
    )
    conn.execute(  # its confirmation, if one is open, has nothing left to confirm
        sequences.update()
        .where(_where(campaign, key), sequences.c.confirm_subject == f"change:{change_id}")
        .values(confirm_subject="")
    )
    conn.execute(
        profile_changes.update()
        .where(profile_changes.c.change_id == change_id)
        .values(status="applied", decided_at=at)
    )
    return key


def apply_confirmations(
    conn: sa.Connection, campaign: Campaign, confirmations: list[Confirmation]
) -> ConfirmReport:
    """Each genuine click: its consent record completed (once), then the sequence started
    (its clock from the click) or the held change applied. A repeat does nothing."""
    report = ConfirmReport()
    for item in sorted(confirmations, key=lambda c: (c.at, c.source)):
        key, subject = item.contact_key, item.claim.subject
        if item.claim.campaign != campaign.slug:
            report.unknown.append(key)
            continue
        record = conn.execute(
            sa.select(consent_records.c.confirmed_at).where(
                consent_records.c.campaign == campaign.slug,
                consent_records.c.contact_key == key,
                consent_records.c.subject == subject,
            )
        ).first()
        if record is None:
            report.unknown.append(key)
            continue
        if record.confirmed_at is not None:
            report.repeated.append(key)
            continue
        conn.execute(
            consent_records.update()
            .where(
                consent_records.c.campaign == campaign.slug,
                consent_records.c.contact_key == key,
                consent_records.c.subject == subject,
            )
            .values(
                confirmed_at=utc(item.at),
                confirm_ip=item.ip,
                confirm_user_agent=item.user_agent,
                confirm_forwarded_for=item.forwarded_for,
                confirm_source=item.source,
            )
        )
        now = datetime.now(UTC)
        if item.claim.kind == "signup":
            started = conn.execute(
                sequences.update()
                .where(
                    _where(campaign, key),
                    sequences.c.awaiting_confirmation.is_(True),
                    sequences.c.confirm_subject == subject,
                )
                # The cadence counts from the confirmation: email 1 goes at once.
                .values(
                    awaiting_confirmation=False,
                    confirm_subject="",
                    signup_at=utc(item.at),
                    updated_at=now,
                )
            )
            (report.started if started.rowcount else report.repeated).append(key)
        else:
            at = utc(item.at)
            if _apply_change(conn, campaign, item.claim.subject_id, ("pending",), at, key) is None:
                report.repeated.append(key)
                continue
            report.changed.append(key)
    mark_dirty(conn, campaign.slug, report.started + report.changed, datetime.now(UTC))
    return report


class SqlOptIn(SqlDatabase):
    """Reading and applying double opt-in state."""

    def apply_confirmations(
        self, campaign: Campaign, confirmations: list[Confirmation]
    ) -> ConfirmReport:
        self.prepare(campaign)
        with self.engine.begin() as conn:
            return apply_confirmations(conn, campaign, confirmations)

    def apply_held_change(self, campaign: Campaign, change_id: str) -> str | None:
        """The team applies a held (or pending) change by hand, having checked with the
        person: its contact, or None when there is no such change waiting."""
        self.prepare(campaign)
        with self.engine.begin() as conn:
            key = _apply_change(conn, campaign, change_id, ("held", "pending"), datetime.now(UTC))
            if key is not None:
                mark_dirty(conn, campaign.slug, [key], datetime.now(UTC))
            return key

    def consent_records(self, campaign: Campaign) -> pd.DataFrame:
        query = sa.select(consent_records).where(consent_records.c.campaign == campaign.slug)
        return self.read_frame(query, times=("requested_at", "confirmed_at"))

    def profile_changes(self, campaign: Campaign) -> pd.DataFrame:
        query = (
            sa.select(profile_changes)
            .where(profile_changes.c.campaign == campaign.slug)
            .order_by(profile_changes.c.created_at)
        )
        return self.read_frame(query, times=("created_at", "decided_at"))
