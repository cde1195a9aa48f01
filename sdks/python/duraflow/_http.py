"""The HTTP/JSON transport: one request at a time, standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Optional


class DuraflowError(Exception):
    """An error answer of `duraflow serve`: its HTTP status, stable code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message


class Http:
    """Sends JSON requests to a server, with its bearer token."""

    def __init__(self, url: str, token: Optional[str] = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 30.0
    ) -> Any:
        """Sends a request; the answer's JSON body, or `DuraflowError` for an error answer.
        Connection failures raise `OSError` (`urllib.error.URLError`)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                error = json.loads(raw)["error"]
                raise DuraflowError(e.code, error["code"], error["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise DuraflowError(e.code, "http_error", raw.decode(errors="replace")) from None
        return json.loads(raw) if raw else None
