"""Downloads against 127.0.0.1: retries, caps, checksums, and nothing half-written, ever."""

import hashlib

import pytest
from werkzeug import Response

from f5_worker import net
from f5_worker.errors import ChecksumMismatch, ConfigError, DownloadTooLarge, HTTPStatusError

BODY = b"wheel bytes " * 1000


def no_partial_files(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".incomplete")] == []


@pytest.fixture
def http():
    with net.client(2.0) as client:
        yield client


def test_transient_errors_are_retried_then_the_file_appears_whole(httpserver, http, tmp_path, monkeypatch):
    monkeypatch.setattr(net, "BACKOFF_BASE_S", 0.01)
    httpserver.expect_ordered_request("/f").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/f").respond_with_data(BODY)
    result = net.download(http, httpserver.url_for("/f"), tmp_path / "f.whl", max_bytes=10**6, retries=2, allow_http=True)
    assert (tmp_path / "f.whl").read_bytes() == BODY
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert no_partial_files(tmp_path)


def test_404_is_final(httpserver, http, tmp_path):
    httpserver.expect_request("/f").respond_with_data("nope", status=404)
    with pytest.raises(HTTPStatusError, match="HTTP 404"):
        net.download(http, httpserver.url_for("/f"), tmp_path / "f.whl", max_bytes=10**6, retries=3, allow_http=True)
    assert len(httpserver.log) == 1
    assert not (tmp_path / "f.whl").exists() and no_partial_files(tmp_path)


def test_size_cap_stops_an_endless_body(httpserver, http, tmp_path):
    def endless(request):
        return Response((b"x" * 65536 for _ in range(1000)), direct_passthrough=True)

    httpserver.expect_request("/f").respond_with_handler(endless)
    with pytest.raises(DownloadTooLarge):
        net.download(http, httpserver.url_for("/f"), tmp_path / "f.whl", max_bytes=1_000_000, retries=0, allow_http=True)
    assert not (tmp_path / "f.whl").exists() and no_partial_files(tmp_path)


def test_checksum_mismatch_publishes_nothing(httpserver, http, tmp_path):
    httpserver.expect_request("/f").respond_with_data(BODY)
    with pytest.raises(ChecksumMismatch, match="expected " + "0" * 64):
        net.download(http, httpserver.url_for("/f"), tmp_path / "f.whl", max_bytes=10**6, sha256="0" * 64, allow_http=True)
    assert not (tmp_path / "f.whl").exists() and no_partial_files(tmp_path)


def test_plain_http_needs_an_explicit_allow(http, tmp_path):
    with pytest.raises(ConfigError, match="plain http"):
        net.download(http, "http://127.0.0.1:9/f", tmp_path / "f.whl", max_bytes=1)
    with pytest.raises(ConfigError, match="unsupported scheme 'ftp'"):
        net.check_url("ftp://host/f", allow_http=True)


def test_redirect_may_not_downgrade_to_http(httpserver, http, tmp_path):
    # An https URL redirected to http is refused even though we cannot serve TLS here: the
    # check runs on every hop, so an http hop is refused when http is not allowed.
    httpserver.expect_request("/start").respond_with_data("", status=302, headers={"Location": httpserver.url_for("/f")})
    httpserver.expect_request("/f").respond_with_data(BODY)
    with pytest.raises(ConfigError, match="plain http"):
        response = http.get(httpserver.url_for("/start"))
        net._check_redirects(response, allow_http=False)
