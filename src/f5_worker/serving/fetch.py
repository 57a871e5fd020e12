"""Fetch a reference-audio URL a request named, without letting the request reach inside the network.

Every hop (the URL, then each redirect, at most ``MAX_REDIRECTS``) goes through the same gate:

1. Scheme: https; http only when the operator allows it (``allow_http``); never https -> http.
2. The host is resolved here, once, and refused if *any* address it resolves to is not
   public: private, loopback, link-local, multicast, reserved, unspecified, shared
   (CGNAT, 100.64.0.0/10) or a cloud metadata address. IPv4 addresses embedded in IPv6
   (``::ffff:10.0.0.1``, 6to4, NAT64) are judged as the IPv4 address they carry.
3. The connection goes to the vetted address itself, never to the name, so a second DNS
   answer cannot swap in an internal address (DNS rebinding). The original name is sent
   as the ``Host`` header and as the TLS SNI, and the certificate is checked against it.

The body is streamed with a size cap (``Content-Length`` is checked first when given)
and decompression is refused (``Accept-Encoding: identity``). The whole fetch (DNS,
connects, redirects, body) has one deadline: it runs on a worker thread and the caller
stops waiting at ``timeout_s``, so a slow-drip server or a stalled resolver cannot hold
a request past it; the abandoned thread stops at its next read.

For tests (and an operator's trusted sidecar), ``trusted`` names ``(ip, port)`` pairs that
pass step 2 although they are not public; nothing else is exempt.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import httpx

from ..settings import env_name
from .errors import ReferenceAddressRefused, ReferenceFetchError, ReferenceTimeout, ReferenceTooLarge

__all__ = ["fetch_reference", "address_refusal", "MAX_REDIRECTS", "METADATA_ADDRESSES"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
ALLOW_HTTP_SETTING = env_name("ref_allow_http")
MAX_BYTES_SETTING = env_name("max_ref_bytes")
TIMEOUT_SETTING = env_name("ref_download_timeout_s")
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean...
    "fd00:ec2::254",  # AWS over IPv6
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud
))
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_refusal(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is (e.g. ``"a private address"``), or None if public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return address_refusal(embedded)
    checks = (
        (ip in METADATA_ADDRESSES, "the cloud metadata address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_multicast, "a multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "a shared (CGNAT) address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "a non-public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def _display(url: httpx.URL) -> str:
    """The URL without credentials or query string (presigned URLs carry secrets there)."""
    port = f":{url.port}" if url.port else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}{url.path}"


@dataclass(frozen=True)
class _Hop:
    url: httpx.URL  # as the request gave it
    address: IPAddress  # the vetted address we connect to
    host: str  # for SNI and certificate checks (ASCII, IDNA-encoded)
    host_header: str


def _vet(url: httpx.URL, *, previous: httpx.URL | None, allow_http: bool, resolver: Resolver,
         trusted: Collection[tuple[str, int]]) -> _Hop:
    where = f"ref_audio URL redirects to {_display(url)}, which" if previous else "ref_audio URL"
    if url.scheme == "http":
        if previous is not None and previous.scheme == "https":
            raise ReferenceFetchError(f"{where} downgrades https to plain http; refused", str(url))
        if not allow_http:
            raise ReferenceFetchError(
                f"{where} uses plain http; use https (an operator can allow http with {ALLOW_HTTP_SETTING}=true)",
                str(url))
    elif url.scheme != "https":
        raise ReferenceFetchError(f"{where} uses scheme {url.scheme!r}; only https is allowed", str(url))
    if url.userinfo:
        raise ReferenceFetchError(f"{where} carries credentials (user:password@); refused", str(url))
    host = url.raw_host.decode("ascii")
    if not host:
        raise ReferenceFetchError(f"{where} has no host", str(url))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses, verb = [ipaddress.ip_address(host)], "points to"
    except ValueError:
        addresses, verb = _resolve(host, port, resolver, where, url), "resolves to"
    for address in addresses:
        if (str(address), port) in trusted:
            continue
        reason = address_refusal(address)
        if reason:
            raise ReferenceAddressRefused(
                f"{where} {verb} {reason} ({address}); only public hosts are allowed", str(url))
    host_header = (f"[{host}]" if ":" in host else host) + (f":{url.port}" if url.port else "")
    return _Hop(url, addresses[0], host, host_header)


def _resolve(host: str, port: int, resolver: Resolver, where: str, url: httpx.URL) -> list[IPAddress]:
    try:
        infos = resolver(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ReferenceFetchError(f"{where}: host {host!r} could not be resolved ({exc})", str(url)) from exc
    addresses: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 scope id
        try:
            address = ipaddress.ip_address(raw)
        except ValueError as exc:
            raise ReferenceFetchError(f"{where}: host {host!r} resolved to {raw!r}, not an address",
                                      str(url)) from exc
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ReferenceFetchError(f"{where}: host {host!r} resolved to no address", str(url))
    return addresses


class _Cancelled(Exception):
    pass


def _remaining(deadline: float, cancelled: threading.Event) -> float:
    left = deadline - time.monotonic()
    if left <= 0 or cancelled.is_set():
        raise _Cancelled
    return left


def _get(hop: _Hop, client: httpx.Client, *, max_bytes: int, deadline: float,
         cancelled: threading.Event) -> tuple[httpx.URL | None, bytes]:
    """One GET; returns (redirect target, b"") or (None, body)."""
    request = client.build_request(
        "GET",
        hop.url.copy_with(host=str(hop.address), userinfo=b""),
        headers={"Host": hop.host_header, "Accept-Encoding": "identity", "User-Agent": "f5-worker"},
        extensions={"sni_hostname": hop.host},
        timeout=httpx.Timeout(_remaining(deadline, cancelled)),
    )
    response = client.send(request, stream=True)
    try:
        if response.status_code in REDIRECT_STATUS:
            location = response.headers.get("location")
            if not location:
                raise ReferenceFetchError(
                    f"ref_audio URL answered HTTP {response.status_code} without a Location ({_display(hop.url)})",
                    str(hop.url))
            try:
                return hop.url.join(location), b""
            except httpx.InvalidURL as exc:
                raise ReferenceFetchError(f"ref_audio URL redirects to an invalid URL ({exc})", str(hop.url)) from exc
        if not 200 <= response.status_code < 300:
            raise ReferenceFetchError(
                f"ref_audio URL answered HTTP {response.status_code} ({_display(hop.url)})", str(hop.url))
        too_large = ReferenceTooLarge(
            f"ref_audio at {_display(hop.url)} is larger than the limit of {max_bytes} bytes "
            f"({MAX_BYTES_SETTING}); send a shorter clip (F5-TTS uses ~12 s)", str(hop.url))
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_large
        body = bytearray()
        for chunk in response.iter_raw(CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise too_large
            _remaining(deadline, cancelled)
        return None, bytes(body)
    finally:
        response.close()


def _fetch(url: str, *, allow_http: bool, max_bytes: int, deadline: float, resolver: Resolver,
           trusted: Collection[tuple[str, int]], verify: ssl.SSLContext | bool, cancelled: threading.Event) -> bytes:
    try:
        current: httpx.URL | None = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ReferenceFetchError(f"ref_audio URL is malformed ({exc})", url) from exc
    previous = None
    with httpx.Client(verify=verify, trust_env=False, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            hop = _vet(current, previous=previous, allow_http=allow_http, resolver=resolver, trusted=trusted)
            _remaining(deadline, cancelled)
            try:
                target, body = _get(hop, client, max_bytes=max_bytes, deadline=deadline, cancelled=cancelled)
            except httpx.TimeoutException as exc:
                raise _Cancelled from exc
            except httpx.HTTPError as exc:
                raise ReferenceFetchError(
                    f"ref_audio URL could not be fetched from {_display(hop.url)}: {type(exc).__name__}: {exc}",
                    str(hop.url)) from exc
            if target is None:
                return body
            previous, current = current, target
    raise ReferenceFetchError(f"ref_audio URL redirected more than {MAX_REDIRECTS} times; give the final URL", url)


def fetch_reference(
    url: str,
    *,
    allow_http: bool = False,
    max_bytes: int,
    timeout_s: float,
    resolver: Resolver = socket.getaddrinfo,
    trusted: Collection[tuple[str, int]] = (),
    verify: ssl.SSLContext | bool = True,
) -> bytes:
    """The body at ``url``, fetched through the gate above within ``timeout_s`` seconds in all."""
    deadline = time.monotonic() + timeout_s
    cancelled = threading.Event()
    outcome: dict[str, object] = {}
    timeout = ReferenceTimeout(
        f"ref_audio URL took longer than {timeout_s:g} s to fetch ({TIMEOUT_SETTING}); "
        "use a faster host or send the audio inline as base64", url)

    def work() -> None:
        try:
            outcome["body"] = _fetch(url, allow_http=allow_http, max_bytes=max_bytes, deadline=deadline,
                                     resolver=resolver, trusted=frozenset(trusted), verify=verify,
                                     cancelled=cancelled)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="f5-worker-ref-fetch", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        cancelled.set()  # the thread stops at its next read, within its own read timeout
        raise timeout
    error = outcome.get("error")
    if isinstance(error, _Cancelled):
        raise timeout from error.__cause__
    if error is not None:
        raise error  # type: ignore[misc]
    return outcome["body"]  # type: ignore[return-value]
