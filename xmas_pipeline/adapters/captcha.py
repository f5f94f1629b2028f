"""Server-side verification of a bot-check token (Cloudflare Turnstile or hCaptcha).

Both providers take the same form post (`secret`, `response`, optional `remoteip`) at their
`siteverify` endpoint and answer JSON with `success` and `error-codes`. The secret goes
in the form body only: never in a URL, a log line or an error.
"""

from __future__ import annotations

import logging

import httpx

from xmas_pipeline.core.captcha import Outcome, Verdict, judge

logger = logging.getLogger("xmas_pipeline.captcha")

TIMEOUT_S = 5.0  # the visitor is waiting for the signup's answer


class CaptchaVerifier:
    def __init__(
        self,
        verify_url: str,
        secret: str,
        *,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.verify_url = verify_url
        self._secret = secret
        self.timeout_s = timeout_s
        self._transport = transport

    def __repr__(self) -> str:  # no secret in any repr
        return f"CaptchaVerifier({self.verify_url!r})"

    async def verify(self, token: str, remote_ip: str | None = None) -> Verdict:
        """The provider's verdict on `token`; UNAVAILABLE when it cannot be asked."""
        form = {"secret": self._secret, "response": token}
        if remote_ip:
            form["remoteip"] = remote_ip
        try:
            # A client per check: checks are rare (one per signup), and a client is bound
            # to the event loop it was first used on.
            async with httpx.AsyncClient(
                timeout=self.timeout_s, transport=self._transport, follow_redirects=False
            ) as client:
                answer = await client.post(self.verify_url, data=form)
        except httpx.HTTPError as exc:
            logger.warning("captcha: the provider could not be reached (%s)", type(exc).__name__)
            return Verdict(Outcome.UNAVAILABLE, ("unreachable",))
        if answer.status_code != 200:
            logger.warning("captcha: the provider answered HTTP %d", answer.status_code)
            return Verdict(Outcome.UNAVAILABLE, (f"http-{answer.status_code}",))
        try:
            body = answer.json()
        except ValueError:
            body = None
        verdict = judge(body)
        if verdict.outcome is Outcome.UNAVAILABLE:
            # A wrong secret shows here as invalid-input-secret: the deployment's fault.
            logger.error("captcha: verification failed on our side: %s", ", ".join(verdict.codes))
        return verdict
