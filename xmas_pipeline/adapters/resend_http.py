"""The resend SDK's HTTP client interface over httpx, with a timeout per sender."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import resend


class HttpxClient(resend.HTTPClient):
    """The SDK's HTTP client interface over one pooled `httpx.Client` with a timeout.

    The SDK's default client has no configurable timeout per sender; this one also
    returns response headers with lower-case names so `retry-after` and `ratelimit-*`
    are found whatever case the server used. Errors never carry request headers (the
    API key): the SDK turns the message into a ResendError("HttpClientError").
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.Client(timeout=timeout_s)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = self._client.request(
                method, url, headers=dict(headers), json=json, files=files, data=data
            )
        except httpx.TimeoutException as exc:
            raise RuntimeError(
                f"timed out after {self.timeout_s:g}s ({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise RuntimeError(f"connection failed ({type(exc).__name__})") from None
        return (
            response.content,
            response.status_code,
            {name.lower(): value for name, value in response.headers.items()},
        )

    def close(self) -> None:
        self._client.close()
