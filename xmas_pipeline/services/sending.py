"""The send path: render each due message, send it, write its status back.

Plain Python over the store and sender interfaces (the Dagster asset is thin wiring
around `deliver`). Exactly once (docs/architecture.md, "Exactly once"): a message's
sent-status is written only after the sender accepted it; if the process dies in between,
the next run sends it again under the same idempotency key and the provider drops the
duplicate.

Every batch passes the gate (`Gate`, built by `services.planning.send_gate`) just before it
goes: the pause switch, then the exit rule on the person's flags as they are now and each
reminder's booking. A batch whose fate is unknown (the provider may have taken it) is the
one thing sent again without the rules: exactly as it was, so the provider recognises it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.exit_rules import EXIT, SEND, SKIP
from xmas_pipeline.core.ports import (
    Chunk,
    EmailSender,
    JournalEntry,
    OutcomeRecord,
    OutgoingEmail,
    SenderQuotaExceeded,
    SendJournal,
    SendResult,
    SentRecord,
    SequenceStore,
)
from xmas_pipeline.core.render import RenderedEmail, Renderer
from xmas_pipeline.services.rendering import RenderJob, render_rows

log = logging.getLogger(__name__)

# Builds the template context for one plan row (nurture: the sequence's signup fields;
# reminders: plus the meeting). Raises KeyError/ValueError when the data is missing.
ContextBuilder = Callable[[Mapping[str, Any]], dict[str, Any]]

# A journaled batch older than this is never replayed: the provider forgets idempotency
# keys after 24 h, so a replay could no longer be recognised. Its messages are planned
# again under the rules instead.
REPLAY_HORIZON = timedelta(hours=23)


@dataclass(frozen=True)
class GateDecision:
    """What the gate says of one batch just before it goes."""

    paused: str = ""  # sending is paused (why, and since when): nothing goes
    # message_id -> (action, reason) for rows that must not go: "exit" is final (recorded
    # once), "skip" is reconsidered by the next run.
    stopped: Mapping[str, tuple[str, str]] = field(default_factory=dict)


# Called with a batch's rows just before they are sent.
Gate = Callable[[list[dict[str, Any]]], GateDecision]


@dataclass
class DeliveryReport:
    due: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # permanent: reason recorded
    retry: list[dict[str, Any]] = field(default_factory=list)  # transient: stays due
    skipped: list[dict[str, Any]] = field(default_factory=list)  # exit rules, paused
    # In another run's hands (an overlap): that run sends it or a later one replays it.
    elsewhere: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""  # why the run stopped early (quota), empty when it ran through
    paused: str = ""  # sending is paused: what was not sent stays due
    replayed: int = 0  # messages of batches with an unknown fate, sent again as they were

    def problems(self) -> pd.DataFrame:
        rows = [
            {"outcome": outcome, **item}
            for outcome, items in (
                ("failed", self.failed),
                ("retry", self.retry),
                ("skipped", self.skipped),
                ("elsewhere", self.elsewhere),
            )
            for item in items
        ]
        columns = ["outcome", "message_id", "step_id", "segment", "reason"]
        return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)

    def counts_by_step(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.sent:
            counts[item["step_id"]] = counts.get(item["step_id"], 0) + 1
        return dict(sorted(counts.items()))


def template_for(campaign: Campaign, kind: str, step_number: int) -> str:
    if kind == "reminder":
        return campaign.reminders[step_number - 1].template
    if kind == "confirm":  # double opt-in (`core.optin`)
        return campaign.confirm_template
    return campaign.step(step_number).template


@dataclass(frozen=True)
class Envelope:
    from_email: str
    unsubscribe_url: Callable[[str], str] | None = None  # email -> one-click URL
    reply_to: str = ""

    def headers(self, email: str) -> dict[str, str]:
        if self.unsubscribe_url is None:
            return {}
        url = self.unsubscribe_url(email)
        return {
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }


def deliver(
    *,
    store: SequenceStore,
    sender: EmailSender,
    renderer: Renderer,
    campaign: Campaign,
    plan: pd.DataFrame,
    context_for: ContextBuilder,
    envelope: Envelope,
    now: datetime | None = None,
    idempotency_suffix: str = "",
    batch_size: int = 100,
    gate: Gate | None = None,
    journal: SendJournal | None = None,
    holder_alive: Callable[[str], bool] = lambda _holder: False,
) -> DeliveryReport:
    """Act on every row of `plan` (columns of `core.due.DUE_COLUMNS`).

    `idempotency_suffix` is set for a forced re-send: a key derived from the request (the
    backfill or the launch), recorded. `gate` is asked before each batch (and before a
    replay, for the pause only). `holder_alive` says whether the run that wrote an open
    journal batch is still running: such a batch is left to it; the open batches of
    ended runs are replayed first.
    """
    now = now or datetime.now(UTC)
    report = DeliveryReport(due=len(plan))
    if journal is not None:
        replayed = _replay(store, sender, campaign, journal, holder_alive, gate, now, report)
        if replayed is None:
            return report
        plan = plan[~plan["message_id"].isin(replayed)]
    rows = plan.to_dict("records")

    for row in rows:
        if row["action"] in (EXIT, SKIP):
            _record_skip(store, campaign, row, now, report, final=row["action"] == EXIT)

    outgoing: Chunk = []
    sendable = [r for r in rows if r["action"] == SEND]
    # Rendered in a watched child process: a runaway template fails its own messages,
    # named, and never hangs the run (services/rendering.py).
    renders = render_rows(
        renderer,
        campaign,
        sendable,
        lambda row: RenderJob(
            template_for(campaign, row["kind"], int(row["step_number"])),
            row["segment"],
            context_for(row),
        ),
    )
    for row, rendered in zip(sendable, renders, strict=True):
        if isinstance(rendered, Exception):
            # Fixable on our side (a template or data problem): the message stays due.
            reason = f"cannot render: {rendered}"
            _record_failure(store, campaign, row, reason, now, report, final=False)
            continue
        outgoing.append((row, _build(row, campaign, rendered, envelope, idempotency_suffix)))

    for start in range(0, len(outgoing), batch_size):
        chunk = outgoing[start : start + batch_size]
        if gate is not None:
            decision = gate([row for row, _ in chunk])
            if decision.paused:
                report.paused = decision.paused
                return report
            chunk = _let_through(store, campaign, chunk, decision, now, report)
            if not chunk:
                continue
        entry = None
        if journal is not None:
            claim = journal.begin(campaign, chunk)
            for row, _, reason in claim.left_out:
                report.elsewhere.append(_summary(row, reason))
            if claim.entry is None:
                continue
            entry, chunk = claim.entry, claim.entry.chunk
        rest = outgoing[start + batch_size :]
        if not _send_chunk(store, sender, campaign, chunk, rest, now, report, journal, entry):
            break
    return report


def _replay(
    store: SequenceStore,
    sender: EmailSender,
    campaign: Campaign,
    journal: SendJournal,
    holder_alive: Callable[[str], bool],
    gate: Gate | None,
    now: datetime,
    report: DeliveryReport,
) -> set[str] | None:
    """Send again, exactly as they were, the batches ended runs left with an unknown fate
    (the provider may have taken them: only the same batch under the same key is
    recognised). The message ids replayed; None when the run must stop (paused, quota)."""
    replayed: set[str] = set()
    for open_entry in journal.pending(campaign):
        if open_entry.holder != journal.holder and holder_alive(open_entry.holder):
            continue  # another run is sending it now: its claims keep us off
        entry = journal.adopt(open_entry)
        if entry is None:
            continue  # settled meanwhile, or another run adopted it
        if now - entry.created_at > REPLAY_HORIZON:
            # Too old for the provider to recognise: planned again, under the rules.
            journal.finish(entry)
            continue
        if gate is not None:
            paused = gate([]).paused
            if paused:
                report.paused = paused
                return None
        ids = {row["message_id"] for row, _ in entry.chunk}
        replayed.update(ids)
        report.replayed += len(ids)
        if not _send_chunk(store, sender, campaign, entry.chunk, [], now, report, journal, entry):
            return None
    return replayed


def _send_chunk(
    store: SequenceStore,
    sender: EmailSender,
    campaign: Campaign,
    chunk: Chunk,
    rest: Chunk,
    now: datetime,
    report: DeliveryReport,
    journal: SendJournal | None,
    entry: JournalEntry | None,
) -> bool:
    """Send one chunk and record it; False when the run must stop (quota)."""
    try:
        results = sender.send([email for _, email in chunk])
    except SenderQuotaExceeded as exc:
        results = exc.results
        recorded = _apply(store, campaign, chunk[: len(results)], results, now, report)
        report.stopped = str(exc)
        for row, _ in chunk[len(results) :] + rest:
            report.retry.append(_summary(row, "not sent: the provider's quota is used up"))
        # What the quota refused was not accepted: safe to chunk anew later.
        _finish(journal, entry, results, recorded)
        return False
    recorded = _apply(store, campaign, chunk, results, now, report)
    _finish(journal, entry, results, recorded)
    return True


def _finish(
    journal: SendJournal | None,
    entry: JournalEntry | None,
    results: list[SendResult],
    recorded: bool,
) -> None:
    # A "retry" whose fate is unknown may have been accepted (a timeout after the provider
    # took it), and an accepted email whose status could not be written is not settled
    # either: keep the entry so the next run replays the chunk under the same keys. A
    # definite refusal (a 429, a quota) settles it: its messages stay due and are planned
    # again, under the rules, by the next run.
    settled = recorded and not any(r.status == "retry" and r.fate_unknown for r in results)
    if journal is not None and entry is not None and settled:
        journal.finish(entry)


def _build(
    row: Mapping[str, Any],
    campaign: Campaign,
    rendered: RenderedEmail,
    envelope: Envelope,
    suffix: str,
) -> OutgoingEmail:
    key = row["message_id"] + suffix
    return OutgoingEmail(
        message_id=row["message_id"],
        idempotency_key=key,
        to=row["email"],
        from_email=envelope.from_email,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        tags={"campaign": campaign.slug, "step": row["step_id"], "segment": row["segment"]},
        headers=envelope.headers(row["email"]),
        reply_to=envelope.reply_to,
    )


def _apply(
    store: SequenceStore,
    campaign: Campaign,
    chunk: Chunk,
    results: list[SendResult],
    now: datetime,
    report: DeliveryReport,
) -> bool:
    """Write each result back; False when an accepted email's status could not be written."""
    recorded = True
    for (row, email), result in zip(chunk, results, strict=True):
        if result.status == "sent":
            record = SentRecord(
                message_id=row["message_id"],
                idempotency_key=email.idempotency_key,
                contact_key=row["contact_key"],
                kind=row["kind"],
                step_id=row["step_id"],
                step_number=int(row["step_number"]),
                due_at=row["due_at"],
                sent_at=datetime.now(UTC),
                provider_id=result.provider_id,
                segment=row["segment"],
                booking_uid=str(row.get("booking_uid") or ""),
                completes_sequence=row["kind"] == "nurture"
                and int(row["step_number"]) == campaign.last_step,
                forced=email.idempotency_key != email.message_id,
            )
            try:
                store.record_sent(campaign, record)
            except Exception as exc:  # noqa: BLE001 - reported; the next run heals it
                # Accepted but not recorded: the next run re-sends under the same key and
                # the provider deduplicates it.
                report.retry.append(_summary(row, f"sent, status not written yet: {exc}"))
                recorded = False
                continue
            report.sent.append({**_summary(row, ""), "provider_id": result.provider_id})
        elif result.status == "failed":
            reason = result.error or "rejected by the provider"
            _record_failure(store, campaign, row, reason, now, report, final=True)
        else:
            report.retry.append(_summary(row, result.error or "will retry next run"))
    return recorded


def _let_through(
    store: SequenceStore,
    campaign: Campaign,
    chunk: Chunk,
    decision: GateDecision,
    now: datetime,
    report: DeliveryReport,
) -> Chunk:
    """The chunk without the rows the gate stops; those are recorded with the reason (an
    exit for good, a skip to be reconsidered)."""
    kept: Chunk = []
    for row, email in chunk:
        action, reason = decision.stopped.get(row["message_id"], (SEND, ""))
        if action == SEND:
            kept.append((row, email))
            continue
        stopped = {**row, "reason": reason}
        _record_skip(store, campaign, stopped, now, report, final=action == EXIT)
    return kept


def _summary(row: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {
        "message_id": row["message_id"],
        "contact_key": row["contact_key"],
        "step_id": row["step_id"],
        "segment": row["segment"],
        "due_day": row["due_day"],
        "reason": reason,
    }


def _record_skip(
    store: SequenceStore,
    campaign: Campaign,
    row: Mapping[str, Any],
    now: datetime,
    report: DeliveryReport,
    *,
    final: bool,
) -> None:
    store.record_outcome(campaign, _outcome(row, "skipped", row["reason"], now))
    if final and row["kind"] == "nurture":
        store.record_exit(campaign, row["contact_key"], row["reason"])
    report.skipped.append(_summary(row, row["reason"]))


def _record_failure(
    store: SequenceStore,
    campaign: Campaign,
    row: Mapping[str, Any],
    reason: str,
    now: datetime,
    report: DeliveryReport,
    *,
    final: bool,
) -> None:
    store.record_outcome(campaign, _outcome(row, "failed", reason, now))
    if final and row["kind"] == "nurture":
        # A permanent failure (a bad address, a broken template) would fail every later
        # step too: the sequence stops here, with the reason, instead of retrying forever.
        store.record_exit(campaign, row["contact_key"], f"failed: {reason}"[:100])
    report.failed.append(_summary(row, reason))


def _outcome(row: Mapping[str, Any], status: str, reason: str, now: datetime) -> OutcomeRecord:
    return OutcomeRecord(
        message_id=row["message_id"],
        contact_key=row["contact_key"],
        kind=row["kind"],
        step_id=row["step_id"],
        step_number=int(row["step_number"]),
        due_at=row["due_at"],
        status=status,
        reason=reason,
        at=now,
        segment=row["segment"],
        booking_uid=str(row.get("booking_uid") or ""),
    )
