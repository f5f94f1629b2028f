"""The send log: sent messages by due day, read from the pages' sent dates; with the
optional Email Analytics DB, one page per message sent or failed (provider id and all)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.adapters.notion.pages import NotionSequencePages
from xmas_pipeline.adapters.notion.props import iso_datetime, page_values, parse_datetime
from xmas_pipeline.adapters.notion.workspace import ANALYTICS, SENT_LOG_COLUMNS, log
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord


class NotionSendLog(NotionSequencePages):
    def log_message(self, campaign: Campaign, record: SentRecord | OutcomeRecord) -> None:
        """One analytics page per message sent or failed, when the Email Analytics DB is
        configured; best effort: a failure is logged and counted, not raised."""
        if ANALYTICS not in self.database_ids:
            return
        if isinstance(record, SentRecord):
            status, at, error = "sent", record.sent_at, ""
            provider_id, key = record.provider_id, record.idempotency_key
        else:
            status, at, error, provider_id, key = record.status, record.at, record.reason, "", ""
        message = record.message_id
        a = self.schema.analytics
        source = self.source(ANALYTICS)
        values: dict[str, Any] = {
            a.message_id: message,
            a.email: record.contact_key,
            a.campaign: campaign.notion_select,
            a.step: record.step_id,
            a.status: status,
            a.provider_id: provider_id,
            a.error: error,
            a.segment: record.segment,
            a.due_at: record.due_at,
            a.at: at,
            a.idempotency_key: key,
        }
        if source.title and source.title not in values:
            values[source.title] = message

        def recover() -> dict[str, Any] | None:
            query = {
                "and": [
                    self.condition(ANALYTICS, a.message_id, "equals", message),
                    self.condition(ANALYTICS, a.status, "equals", status),
                    self.condition(ANALYTICS, a.at, "equals", iso_datetime(at)),
                ]
            }
            pages = self.api.query(source.id, query)
            return pages[0] if pages else None

        try:
            self.api.create_page(source.id, self.encode_values(ANALYTICS, values), recover)
        except NotionCallError as exc:
            with self._lock:
                self.analytics_failures += 1
            log.warning("send log entry not written to Notion: %s", exc)

    def sent_log(self, campaign: Campaign, start_day: str, end_day: str) -> pd.DataFrame:
        """Sent messages due in [start_day, end_day], from the pages' sent dates; provider
        ids come from the analytics DB when it is on."""
        self.prepare(campaign)
        p = self.schema.sequences
        records: list[dict[str, Any]] = []
        for row in self.all_rows(campaign).values():
            v = row.values
            signup_at = parse_datetime(v.get(p.signup_date) or row.created_time or None)
            segment = v.get(p.segment) or ""
            base = {"contact_key": row.contact_key, "segment": segment, "provider_id": ""}
            for step in campaign.steps:
                sent_at = parse_datetime(v.get(p.sent(step.number)))
                if sent_at is None or signup_at is None:
                    continue
                mid = message_id(campaign.slug, row.contact_key, step.step_id)
                records.append(
                    {
                        **base,
                        "message_id": mid,
                        "kind": "nurture",
                        "step_id": step.step_id,
                        "step_number": step.number,
                        "booking_uid": "",
                        "due_at": signup_at + step.delay,
                        "sent_at": sent_at,
                        "idempotency_key": mid,
                    }
                )
            uid = str(v.get(p.booking_uid) or "")
            meeting = parse_datetime(v.get(p.meeting_time))
            for reminder in campaign.reminders:
                sent_at = parse_datetime(v.get(p.reminder(reminder.number)))
                if sent_at is None or meeting is None or not uid:
                    continue
                mid = message_id(campaign.slug, row.contact_key, reminder.step_id, uid)
                records.append(
                    {
                        **base,
                        "message_id": mid,
                        "kind": "reminder",
                        "step_id": reminder.step_id,
                        "step_number": reminder.number,
                        "booking_uid": uid,
                        "due_at": meeting - reminder.before,
                        "sent_at": sent_at,
                        "idempotency_key": mid,
                    }
                )
        frame = pd.DataFrame.from_records(records, columns=SENT_LOG_COLUMNS)
        frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
        frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
        frame["step_number"] = frame["step_number"].astype("int64")
        due_day = frame["due_at"].dt.strftime("%Y-%m-%d")
        frame = frame.loc[(due_day >= start_day) & (due_day <= end_day)]
        if ANALYTICS in self.database_ids and not frame.empty:
            frame = self._with_provider_ids(campaign, frame)
        return frame.sort_values(["due_at", "message_id"]).reset_index(drop=True)

    def _with_provider_ids(self, campaign: Campaign, frame: pd.DataFrame) -> pd.DataFrame:
        a = self.schema.analytics
        query = {
            "and": [
                self.condition(ANALYTICS, a.campaign, "equals", campaign.notion_select),
                self.condition(ANALYTICS, a.status, "equals", "sent"),
            ]
        }
        latest: dict[str, tuple[str, str, str]] = {}  # message -> (at, provider id, key)
        for page in self.api.query(self.source(ANALYTICS).id, query):
            v = page_values(page)
            mid = str(v.get(a.message_id) or "")
            entry = (
                str(v.get(a.at) or ""),
                str(v.get(a.provider_id) or ""),
                str(v.get(a.idempotency_key) or ""),
            )
            if mid and (mid not in latest or entry[0] >= latest[mid][0]):
                latest[mid] = entry
        frame = frame.copy()
        ids = frame["message_id"].map(lambda m: latest.get(m, ("", "", ""))[1])
        keys = frame["message_id"].map(lambda m: latest.get(m, ("", "", ""))[2])
        frame["provider_id"] = ids
        frame["idempotency_key"] = keys.where(keys != "", frame["idempotency_key"])
        return frame
