"""What the wheel sources hold: the volume's wheel cache and the operator's mirrors.

A mirror is one string in ``F5_WORKER_FLASH_ATTN_MIRRORS``:

- a directory (``/opt/wheels`` or ``file:///opt/wheels``) with wheel files in it;
- a find-links page (``https://host/wheels/``): an HTML page whose links are wheels;
- a PEP 503 simple index (``https://host/simple/``): its ``flash-attn/`` page is read.

A page is read first as a find-links page; when it links no flash-attn wheel, as an
index root. Wheels may carry upstream's names. A ``#sha256=`` fragment on a link
(PEP 503) becomes the hash the download must match. Links to other hosts than the
mirror's own are ignored: the worker fetches only from hosts it was configured with.
"""

from __future__ import annotations

import html.parser
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .. import net
from ..errors import ConfigError, FetchError
from .resolver import CACHE_RANK, Decision, Offer

__all__ = ["Link", "parse_links", "list_cache", "list_mirror", "gather_offers", "INDEX_PROJECT"]

INDEX_PROJECT = "flash-attn"  # PEP 503 normalised project name
MAX_INDEX_BYTES = 8 * 1024**2


@dataclass(frozen=True)
class Link:
    filename: str
    url: str
    sha256: str | None


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def parse_links(page: str, base_url: str) -> list[Link]:
    """Wheel links of an HTML page (find-links page or PEP 503 project page), resolved against ``base_url``."""
    parser = _Anchors()
    parser.feed(page)
    links = []
    for href in parser.hrefs:
        url, _, fragment = urllib.parse.urljoin(base_url, href).partition("#")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        if not filename.endswith(".whl"):
            continue
        algo, _, digest = fragment.partition("=")
        sha256 = digest.lower() if algo == "sha256" and len(digest) == 64 else None
        links.append(Link(filename, url, sha256))
    return links


def _is_flash_attn(filename: str) -> bool:
    return filename.lower().startswith(("flash_attn-", "flash-attn-"))


def list_cache(wheels_dir: Path) -> list[Offer]:
    """Wheels already fetched onto the volume (only complete files: temp files start with '.')."""
    if not wheels_dir.is_dir():
        return []
    return [
        Offer(p.name, p.as_uri(), "cache", CACHE_RANK)
        for p in sorted(wheels_dir.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix == ".whl" and _is_flash_attn(p.name)
    ]


def _local_dir(mirror: str) -> Path | None:
    if mirror.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(mirror).path))
    if "://" not in mirror:
        return Path(mirror).expanduser()
    return None


def list_mirror(
    mirror: str, rank: int, client: httpx.Client, allow_http: bool
) -> tuple[list[Offer], list[Decision]]:
    """The flash-attn wheels one mirror holds, and what was skipped there and why."""
    source = f"mirror[{rank - 1}] {mirror}"
    directory = _local_dir(mirror)
    if directory is not None:
        if not directory.is_dir():
            return [], [Decision(mirror, False, f"mirror directory {directory} does not exist", source)]
        offers = [
            Offer(p.name, p.as_uri(), source, rank)
            for p in sorted(directory.iterdir())
            if p.is_file() and p.suffix == ".whl" and _is_flash_attn(p.name)
        ]
        return offers, []

    try:
        net.check_url(mirror, allow_http)
        links = [l for l in parse_links(net.get_text(client, mirror, MAX_INDEX_BYTES, allow_http=allow_http), mirror) if _is_flash_attn(l.filename)]
        if not links:
            project_page = mirror.rstrip("/") + f"/{INDEX_PROJECT}/"
            links = [l for l in parse_links(net.get_text(client, project_page, MAX_INDEX_BYTES, allow_http=allow_http), project_page) if _is_flash_attn(l.filename)]
    except (FetchError, ConfigError) as exc:
        return [], [Decision(mirror, False, f"mirror unreadable: {exc}", source)]

    host = urllib.parse.urlsplit(mirror).netloc
    offers, trace = [], []
    for link in links:
        if urllib.parse.urlsplit(link.url).netloc != host:
            trace.append(Decision(link.filename, False, f"link points to another host than the mirror's ({link.url})", source))
            continue
        offers.append(Offer(link.filename, link.url, source, rank, link.sha256))
    return offers, trace


def gather_offers(
    wheels_dir: Path, mirrors: Iterable[str], client: httpx.Client, allow_http: bool
) -> tuple[list[Offer], list[Decision]]:
    offers, trace = list_cache(wheels_dir), []
    for index, mirror in enumerate(mirrors, start=1):
        found, skipped = list_mirror(mirror, index, client, allow_http)
        offers += found
        trace += skipped
    return offers, trace
