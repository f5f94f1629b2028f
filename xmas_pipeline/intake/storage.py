"""Durable storage of accepted events: the inbox write, off the event loop."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from xmas_pipeline.adapters.inbox import Inbox, InboxFile
from xmas_pipeline.intake.http import Reject

logger = logging.getLogger("xmas_pipeline.intake")


class EventStore:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def put(self, kind: str, body: bytes, request: dict[str, str] | None = None) -> InboxFile:
        """Returns once the file is fsynced and renamed into its day folder. `request`:
        the client's details, kept beside the file (`Inbox.write`)."""
        try:
            # fsync blocks for milliseconds: keep it off the event loop.
            item = await run_in_threadpool(self.inbox.write, kind, body, None, request)
        except OSError:
            logger.exception("could not store a %s event", kind)
            raise Reject(503, "could not store the event; please retry") from None
        logger.info("accepted %s %s", kind, item.ref)
        return item
