"""HTTP for configured fetches (mirrors, upstream wheels): timeouts, retries, caps, atomic files.

Every request has a timeout; transient failures (timeouts, dropped connections,
HTTP 429 and 5xx) are retried with exponential backoff; a 4xx is final. A download
streams into a unique ``.*.incomplete`` file beside its destination, is hashed as it
arrives, and is renamed into place only when whole, so a reader never sees half a
file, whatever happens to the process.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .errors import ChecksumMismatch, ConfigError, DownloadTooLarge, FetchError, FetchTimeout, HTTPStatusError
from .log import event, get_logger
from .settings import env_name

__all__ = ["client", "check_url", "get_text", "download", "Downloaded", "RETRYABLE_STATUS"]

log = get_logger("net")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
PROGRESS_EVERY_S = 5.0
BACKOFF_BASE_S = 0.5


def client(timeout_s: float) -> httpx.Client:
    # ``timeout_s`` bounds each connect and each read, so a stalled server is noticed
    # within it; total time is bounded by the size cap over the slowest accepted rate.
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        follow_redirects=True,
        headers={"User-Agent": "f5-worker"},
    )


def check_url(url: str, allow_http: bool) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise ConfigError(f"{url} uses plain http; use https, or set {env_name('allow_http')}=true for a trusted local mirror")
    raise ConfigError(f"{url} has unsupported scheme {scheme!r}; use https")


def _mapped(url: str, exc: Exception) -> FetchError:
    if isinstance(exc, httpx.TimeoutException):
        return FetchTimeout(url, f"timed out ({type(exc).__name__})")
    return FetchError(url, f"{type(exc).__name__}: {exc}")


def _check_redirects(response: httpx.Response, allow_http: bool) -> None:
    # A redirect may not downgrade to http (GitHub release assets redirect to a CDN host over https).
    for hop in (*response.history, response):
        check_url(str(hop.url), allow_http)


def _with_retries(url: str, retries: int, attempt: Callable[[], object]):
    for n in range(retries + 1):
        try:
            return attempt()
        except HTTPStatusError as exc:
            if exc.status not in RETRYABLE_STATUS or n == retries:
                raise
            error: Exception = exc
        except (httpx.TransportError, FetchTimeout) as exc:
            if n == retries:
                raise _mapped(url, exc) if isinstance(exc, httpx.TransportError) else exc from exc
            error = exc
        delay = BACKOFF_BASE_S * 2**n
        event(log, "retrying", url=url, attempt=n + 1, delay_s=delay, error=f"{type(error).__name__}: {error}")
        time.sleep(delay)
    raise AssertionError("unreachable")


def get_text(http: httpx.Client, url: str, max_bytes: int, retries: int = 2, allow_http: bool = False) -> str:
    def attempt() -> str:
        with http.stream("GET", url) as response:
            _check_redirects(response, allow_http)
            if response.status_code >= 400:
                raise HTTPStatusError(url, response.status_code)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise DownloadTooLarge(url, max_bytes)
            return body.decode(response.encoding or "utf-8", errors="replace")

    return _with_retries(url, retries, attempt)


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    seconds: float


def download(
    http: httpx.Client,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    sha256: str | None = None,
    retries: int = 3,
    allow_http: bool = False,
    validate: Callable[[Path], None] | None = None,
    on_progress: Callable[[], None] | None = None,
    deadline_s: float | None = None,
) -> Downloaded:
    """Fetch ``url`` to ``dest`` atomically; ``validate(tmp_path)`` may reject the body before it is published.

    The client's timeout bounds each read; ``deadline_s`` bounds each whole attempt, so a server that
    drips bytes just inside the read timeout cannot hold a cold start for hours.
    """
    check_url(url, allow_http)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def attempt() -> Downloaded:
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.incomplete"
        try:
            digest, size = hashlib.sha256(), 0
            with http.stream("GET", url) as response:
                _check_redirects(response, allow_http)
                if response.status_code >= 400:
                    raise HTTPStatusError(url, response.status_code)
                total = int(response.headers.get("content-length") or 0) or None
                if total and total > max_bytes:
                    raise DownloadTooLarge(url, max_bytes)
                last_report = began = time.monotonic()
                with open(tmp, "wb") as out:
                    for chunk in response.iter_bytes():  # as it arrives, so the deadline is checked while it drips
                        if deadline_s is not None and time.monotonic() - began > deadline_s:
                            raise FetchTimeout(url, f"download took longer than {deadline_s:.0f} s "
                                                    f"({size} bytes so far; {env_name('download_deadline_s')})")
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadTooLarge(url, max_bytes)
                        digest.update(chunk)
                        out.write(chunk)
                        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                            last_report = time.monotonic()
                            event(log, "download progress", url=url, bytes=size, total=total,
                                  percent=round(100 * size / total, 1) if total else None)
                            if on_progress:
                                on_progress()
                    out.flush()
                    os.fsync(out.fileno())
            actual = digest.hexdigest()
            if sha256 and actual != sha256.lower():
                raise ChecksumMismatch(url, sha256.lower(), actual)
            if validate:
                validate(tmp)
            os.replace(tmp, dest)
            return Downloaded(dest, actual, size, time.monotonic() - start)
        except httpx.TimeoutException as exc:
            raise FetchTimeout(url, f"timed out ({type(exc).__name__})") from exc
        finally:
            tmp.unlink(missing_ok=True)

    result = _with_retries(url, retries, attempt)
    event(log, "downloaded", url=url, bytes=result.size, seconds=round(result.seconds, 2), sha256=result.sha256)
    return result
