"""A minimal IMDSv2 client on the standard library (the agent image stays small).

IMDSv2 only: PUT /latest/api/token with a TTL header, then GETs carrying the token. The token is
reused until shortly before it expires (NTH: TTL 3600 s, refresh 15 s early) and dropped on a 401,
which is what IMDS (and AEMM with --imdsv2) answers for a missing or expired token.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Final

TOKEN_PATH: Final = "/latest/api/token"
TOKEN_TTL_HEADER: Final = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER: Final = "X-aws-ec2-metadata-token"
DEFAULT_ENDPOINT: Final = "http://169.254.169.254"
DEFAULT_TOKEN_TTL_SECONDS: Final = 3600
TOKEN_REFRESH_MARGIN_SECONDS: Final = 15.0


class ImdsError(RuntimeError):
    """IMDS could not be reached or answered something other than 200/404."""


class ImdsClient:
    """GET metadata paths with an IMDSv2 session token; None means 404 (nothing published)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"--imds-endpoint / AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http(s) URL such "
                f"as {DEFAULT_ENDPOINT}, got {endpoint!r}"
            )
        if not 1 <= token_ttl_seconds <= 21600:
            raise ValueError(
                f"IMDS token TTL must be 1..21600 seconds (the IMDSv2 limits), got {token_ttl_seconds}"
            )
        self.endpoint = endpoint.rstrip("/")
        self.token_ttl_seconds = token_ttl_seconds
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self.tokens_fetched = 0  # observable for tests and logs: refreshes, not one per poll
        # IMDS is link-local: an HTTP(S)_PROXY from the node's environment must never be used.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _token_valid(self) -> bool:
        margin = min(TOKEN_REFRESH_MARGIN_SECONDS, self.token_ttl_seconds / 2)
        return self._token is not None and self._clock() < self._token_expires_at - margin

    def token(self) -> str:
        if self._token_valid():
            assert self._token is not None
            return self._token
        request = urllib.request.Request(
            self.endpoint + TOKEN_PATH,
            method="PUT",
            headers={TOKEN_TTL_HEADER: str(self.token_ttl_seconds)},
        )
        started = self._clock()
        try:
            with self._opener.open(request, timeout=self.timeout_seconds) as response:
                token = str(response.read().decode()).strip()
        except urllib.error.HTTPError as exc:
            raise ImdsError(f"PUT {TOKEN_PATH}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ImdsError(f"PUT {self.endpoint}{TOKEN_PATH}: {exc}") from exc
        if not token:
            raise ImdsError(f"PUT {TOKEN_PATH}: empty token")
        self._token = token
        self._token_expires_at = started + self.token_ttl_seconds
        self.tokens_fetched += 1
        return token

    def get(self, path: str) -> str | None:
        """The body at `path`, or None on 404. A 401 drops the token and retries once."""
        for attempt in (1, 2):
            request = urllib.request.Request(
                self.endpoint + path, method="GET", headers={TOKEN_HEADER: self.token()}
            )
            try:
                with self._opener.open(request, timeout=self.timeout_seconds) as response:
                    return str(response.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 1:
                    self._token = None
                    continue
                raise ImdsError(f"GET {path}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError) as exc:
                raise ImdsError(f"GET {self.endpoint}{path}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover
