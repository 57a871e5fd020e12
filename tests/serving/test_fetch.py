"""Fetching a reference URL: public hosts only, checked on every hop, within a size cap and one deadline.

The servers here all listen on 127.0.0.1, which the fetcher refuses by default. Tests that need
a "public" host give a fake resolver a name for it and mark exactly that (127.0.0.1, port) as
trusted; every other loopback port, and every private address, stays refused.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time

import pytest
from werkzeug import Response

from f5_worker.serving.errors import (
    ReferenceAddressRefused,
    ReferenceFetchError,
    ReferenceTimeout,
    ReferenceTooLarge,
)
from f5_worker.serving.fetch import address_refusal, fetch_reference

BODY = b"RIFF" + b"\x00" * 5000
PUBLIC_NAME = "voices.example"


def fake_resolver(table: dict[str, list[str]]):
    """getaddrinfo's shape, answering from ``table``; unknown names fail as DNS does."""
    seen: list[str] = []

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        seen.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in table[host]]

    resolve.seen = seen
    return resolve


@pytest.fixture(scope="module")
def plain_server():
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def httpserver(plain_server):
    """The suite's threaded 127.0.0.1 server, started once for this module (stopping one takes 0.5 s)."""
    yield plain_server
    plain_server.clear()


@pytest.fixture
def public(httpserver):
    """kwargs that make http://voices.example:<port>/ reach the test server, and nothing else on 127.0.0.1."""
    return dict(allow_http=True, max_bytes=1_000_000, timeout_s=5.0,
                resolver=fake_resolver({PUBLIC_NAME: ["127.0.0.1"], "internal.example": ["192.168.1.10"]}),
                trusted={("127.0.0.1", httpserver.port)})


def public_url(httpserver, path: str) -> str:
    return f"http://{PUBLIC_NAME}:{httpserver.port}{path}"


class TestAddressRefusal:
    @pytest.mark.parametrize("address, reason", [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("172.16.3.4", "a private address"),
        ("192.168.1.10", "a private address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("169.254.10.10", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.64.0.1", "a shared (CGNAT) address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a private address"),  # reserved; Python counts 240/4 as private too
        ("fc00::1", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "the cloud metadata address"),
        ("2002:7f00:1::", "a loopback address"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:5", "a private address"),  # NAT64 around 10.0.0.5
    ])
    def test_non_public_addresses(self, address, reason):
        assert address_refusal(ipaddress.ip_address(address)) == reason

    @pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "52.216.0.1", "2606:4700:4700::1111",
                                         "64:ff9b::808:808"])
    def test_public_addresses(self, address):
        assert address_refusal(ipaddress.ip_address(address)) is None


class TestFetch:
    def test_a_public_name_is_fetched_from_the_vetted_address_with_its_own_host_header(self, httpserver, public):
        hosts = []

        def handler(request):
            hosts.append(request.headers["Host"])
            return Response(BODY)

        httpserver.expect_request("/narrator.wav").respond_with_handler(handler)
        assert fetch_reference(public_url(httpserver, "/narrator.wav"), **public) == BODY
        assert hosts == [f"{PUBLIC_NAME}:{httpserver.port}"]
        assert public["resolver"].seen == [PUBLIC_NAME]  # resolved once, by us

    def test_loopback_is_refused_by_default(self, httpserver):
        httpserver.expect_request("/v.wav").respond_with_data(BODY)
        with pytest.raises(ReferenceAddressRefused) as caught:
            fetch_reference(httpserver.url_for("/v.wav"), allow_http=True, max_bytes=10**6, timeout_s=5)
        assert str(caught.value) == ("ref_audio URL points to a loopback address (127.0.0.1); "
                                     "only public hosts are allowed")
        assert len(httpserver.log) == 0

    def test_a_name_resolving_to_a_private_address_is_refused(self):
        resolver = fake_resolver({"voices.attacker.example": ["10.0.0.5"]})
        with pytest.raises(ReferenceAddressRefused) as caught:
            fetch_reference("https://voices.attacker.example/v.wav", max_bytes=10**6, timeout_s=5, resolver=resolver)
        assert str(caught.value) == ("ref_audio URL resolves to a private address (10.0.0.5); "
                                     "only public hosts are allowed")

    def test_one_private_address_among_public_ones_is_enough_to_refuse(self):
        resolver = fake_resolver({"mixed.example": ["93.184.216.34", "169.254.169.254"]})
        with pytest.raises(ReferenceAddressRefused, match=r"the cloud metadata address \(169\.254\.169\.254\)"):
            fetch_reference("https://mixed.example/v.wav", max_bytes=10**6, timeout_s=5, resolver=resolver)

    @pytest.mark.parametrize("url, reason", [
        ("https://169.254.169.254/latest/meta-data/", "the cloud metadata address (169.254.169.254)"),
        ("https://[::1]/v.wav", "a loopback address (::1)"),
        ("https://[::ffff:127.0.0.1]/v.wav", "a loopback address (::ffff:7f00:1)"),
        ("https://0.0.0.0/v.wav", "an unspecified address (0.0.0.0)"),
    ])
    def test_address_literals_are_vetted_without_dns(self, url, reason):
        resolver = fake_resolver({})
        with pytest.raises(ReferenceAddressRefused, match=f"points to {reason}".replace("(", r"\(").replace(")", r"\)")):
            fetch_reference(url, max_bytes=10**6, timeout_s=5, resolver=resolver)
        assert resolver.seen == []

    @pytest.mark.parametrize("target, message", [
        ("http://127.0.0.1/admin", "ref_audio URL redirects to http://127.0.0.1/admin, which points to a loopback "
                                   "address (127.0.0.1); only public hosts are allowed"),
        ("http://10.1.2.3:8080/v.wav", "points to a private address (10.1.2.3)"),
        ("http://169.254.169.254/latest/meta-data/iam/", "points to the cloud metadata address"),
        ("http://internal.example/v.wav", "which resolves to a private address (192.168.1.10)"),
    ])
    def test_a_redirect_to_a_non_public_address_is_refused(self, httpserver, public, target, message):
        httpserver.expect_request("/v.wav").respond_with_data("", status=302, headers={"Location": target})
        with pytest.raises(ReferenceAddressRefused) as caught:
            fetch_reference(public_url(httpserver, "/v.wav"), **public)
        assert message in str(caught.value)

    def test_redirects_between_public_urls_are_followed(self, httpserver, public):
        httpserver.expect_request("/a").respond_with_data("", status=301, headers={"Location": "/b"})
        httpserver.expect_request("/b").respond_with_data("", status=307,
                                                          headers={"Location": public_url(httpserver, "/c")})
        httpserver.expect_request("/c").respond_with_data(BODY)
        assert fetch_reference(public_url(httpserver, "/a"), **public) == BODY

    def test_a_redirect_loop_stops_after_five_hops(self, httpserver, public):
        httpserver.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
        with pytest.raises(ReferenceFetchError, match="^ref_audio URL redirected more than 5 times"):
            fetch_reference(public_url(httpserver, "/loop"), **public)
        assert len(httpserver.log) == 6

    def test_plain_http_needs_the_operator(self, httpserver, public):
        with pytest.raises(ReferenceFetchError) as caught:
            fetch_reference(public_url(httpserver, "/v.wav"), **{**public, "allow_http": False})
        assert str(caught.value) == ("ref_audio URL uses plain http; use https (an operator can allow http with "
                                     "F5_WORKER_REF_ALLOW_HTTP=true)")

    @pytest.mark.parametrize("url, message", [
        ("ftp://voices.example/v.wav", "ref_audio URL uses scheme 'ftp'; only https is allowed"),
        ("https://user:pw@voices.example/v.wav", "ref_audio URL carries credentials (user:password@); refused"),
    ])
    def test_other_schemes_and_credentials(self, public, url, message):
        with pytest.raises(ReferenceFetchError, match=message.replace("(", r"\(").replace(")", r"\)")):
            fetch_reference(url, **public)

    def test_an_unknown_name_is_a_clear_error(self, public):
        with pytest.raises(ReferenceFetchError, match="host 'nowhere.example' could not be resolved"):
            fetch_reference("https://nowhere.example/v.wav", **public)

    def test_an_http_error_names_the_status_but_not_the_query(self, httpserver, public):
        httpserver.expect_request("/v.wav").respond_with_data("no", status=403)
        with pytest.raises(ReferenceFetchError) as caught:
            fetch_reference(public_url(httpserver, "/v.wav?X-Amz-Signature=secret"), **public)
        assert str(caught.value) == f"ref_audio URL answered HTTP 403 (http://{PUBLIC_NAME}:{httpserver.port}/v.wav)"


class TestCaps:
    def test_a_declared_length_over_the_cap_is_refused_before_reading(self, httpserver, public):
        httpserver.expect_request("/big").respond_with_data(b"x" * 2000)
        with pytest.raises(ReferenceTooLarge) as caught:
            fetch_reference(public_url(httpserver, "/big"), **{**public, "max_bytes": 1000})
        assert str(caught.value) == (f"ref_audio at http://{PUBLIC_NAME}:{httpserver.port}/big is larger than the "
                                     "limit of 1000 bytes (F5_WORKER_MAX_REF_BYTES); send a shorter clip (F5-TTS "
                                     "uses ~12 s)")

    def test_an_endless_body_is_cut_at_the_cap(self, httpserver, public):
        def endless(request):
            return Response((b"x" * 65536 for _ in range(10_000)), direct_passthrough=True)

        httpserver.expect_request("/endless").respond_with_handler(endless)
        start = time.monotonic()
        with pytest.raises(ReferenceTooLarge):
            fetch_reference(public_url(httpserver, "/endless"), **public)
        assert time.monotonic() - start < 3

    def test_a_slow_drip_is_cut_at_the_deadline(self, httpserver, public):
        def drip(request):
            def body():
                for _ in range(100):
                    yield b"x"
                    time.sleep(0.1)
            return Response(body(), direct_passthrough=True)

        httpserver.expect_request("/drip").respond_with_handler(drip)
        start = time.monotonic()
        with pytest.raises(ReferenceTimeout) as caught:
            fetch_reference(public_url(httpserver, "/drip"), **{**public, "timeout_s": 1.0})
        assert 0.9 < time.monotonic() - start < 1.5
        assert str(caught.value).startswith("ref_audio URL took longer than 1 s to fetch "
                                            "(F5_WORKER_REF_DOWNLOAD_TIMEOUT)")

    def test_a_stalled_resolver_is_cut_at_the_deadline(self):
        def stalled(*args):
            time.sleep(3)
            return []

        start = time.monotonic()
        with pytest.raises(ReferenceTimeout):
            fetch_reference("https://slow-dns.example/v.wav", max_bytes=10**6, timeout_s=0.5, resolver=stalled)
        assert time.monotonic() - start < 1.0


@pytest.fixture(scope="module")
def tls():
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_cert = ca.issue_cert(PUBLIC_NAME)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture(scope="module")
def tls_server(tls):
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", ssl_context=tls[0], threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def https_server(tls_server):
    yield tls_server
    tls_server.clear()


class TestHTTPS:
    """A certificate for voices.example served from 127.0.0.1: it validates only if SNI and the
    hostname check use the name from the URL, though the connection goes to the vetted address."""

    def kwargs(self, server, tls, names=(PUBLIC_NAME,)):
        return dict(max_bytes=10**6, timeout_s=5.0, verify=tls[1], trusted={("127.0.0.1", server.port)},
                    resolver=fake_resolver({name: ["127.0.0.1"] for name in names}))

    def test_tls_is_verified_against_the_name_in_the_url(self, https_server, tls):
        https_server.expect_request("/v.wav").respond_with_data(BODY)
        assert fetch_reference(f"https://{PUBLIC_NAME}:{https_server.port}/v.wav", **self.kwargs(https_server, tls)) \
            == BODY

    def test_a_certificate_for_another_name_fails(self, https_server, tls):
        with pytest.raises(ReferenceFetchError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            fetch_reference(f"https://other.example:{https_server.port}/v.wav",
                            **self.kwargs(https_server, tls, names=("other.example",)))
        assert len(https_server.log) == 0

    def test_https_never_redirects_down_to_http(self, https_server, httpserver, tls):
        target = f"http://{PUBLIC_NAME}:{httpserver.port}/v.wav"
        https_server.expect_request("/v.wav").respond_with_data("", status=302, headers={"Location": target})
        httpserver.expect_request("/v.wav").respond_with_data(BODY)
        kwargs = self.kwargs(https_server, tls)
        kwargs["trusted"] = {("127.0.0.1", https_server.port), ("127.0.0.1", httpserver.port)}
        with pytest.raises(ReferenceFetchError) as caught:
            fetch_reference(f"https://{PUBLIC_NAME}:{https_server.port}/v.wav", allow_http=True, **kwargs)
        assert str(caught.value) == f"ref_audio URL redirects to {target}, which downgrades https to plain http; refused"
        assert len(httpserver.log) == 0
