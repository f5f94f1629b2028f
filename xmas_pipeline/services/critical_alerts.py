"""CRITICAL-signup alerts, once per signup: a ledger remembers who was announced.

The ledger is a folder of empty marker files, one per contact (named by a hash of the
key, so no address sits in a file name). A marker is written only after the webhook
accepted the alert, so a failed alert is tried again the next time that day's signups
are ingested, and a re-ingested day announces nobody twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xmas_pipeline.adapters.chat_webhook import AlertError, format_critical_alert, post_alert
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.core.signup import SignupEvent


@dataclass
class AlertReport:
    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (contact key, reason)


class AlertLedger:
    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _marker(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".sent")

    def seen(self, key: str) -> bool:
        return self._marker(key).exists()

    def mark(self, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._marker(key).touch(exist_ok=True)


def send_critical_alerts(
    events: Iterable[SignupEvent],
    *,
    campaign_name: str,
    url: str,
    ledger: AlertLedger,
    post: Callable[[str, dict[str, object]], None] = post_alert,
) -> AlertReport:
    report = AlertReport()
    for event in events:
        if event.signup.segment is not Segment.CRITICAL:
            continue
        key = event.contact_key
        if ledger.seen(key) or key in report.sent:
            report.already.append(key)
            continue
        try:
            post(url, format_critical_alert(event.signup, campaign_name))
        except AlertError as exc:
            report.failed.append((key, str(exc)))
            continue
        ledger.mark(key)
        report.sent.append(key)
    return report
