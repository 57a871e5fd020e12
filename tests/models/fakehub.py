"""A stand-in for the Hugging Face Hub on 127.0.0.1, honest about the endpoints hf_hub_download uses.

What huggingface_hub 1.x does for ``hf_hub_download(repo_id, filename, revision=...)``
(``file_download.get_hf_file_metadata`` and ``_httpx_follow_hub_redirects_with_backoff``):

- ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}``, redirects not followed
  off the hub's host. It needs ``X-Repo-Commit``, an ETag (``X-Linked-Etag`` preferred over
  ``ETag``) and a size (``X-Linked-Size``, else ``Content-Length`` of a non-redirect).
  Real hub: an LFS file answers 302 to a CDN host with ``X-Linked-Etag: "<sha256>"`` and
  ``X-Linked-Size``; a regular file answers 200 with ``ETag: "<git blob sha1>"``.
  Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).
- ``GET`` the CDN location (LFS) or the resolve URL itself (regular file).

The CDN here is the same server reached as ``localhost`` rather than ``127.0.0.1``, so
that huggingface_hub sees another host, as it does with the real CDN. No Xet headers
are sent, so downloads use plain HTTP. ``requests`` records every request, so a test can
show that an offline start asked nothing.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeHub", "git_blob_sha1"]


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.tamper: dict[str, bytes] = {}  # filename -> bytes served instead (a corrupting CDN)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

            def do_GET(self) -> None:
                hub._handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo_id: str, filename: str, data: bytes, commit: str | None = None) -> None:
        repo = self.repos.setdefault(repo_id, Repo(commit or hashlib.sha1(repo_id.encode()).hexdigest()))
        repo.files[filename] = data

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- request handling --

    def _send(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", headers.get("Content-Length", str(len(data))))
        h.end_headers()
        if body and data:
            h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = urllib.parse.urlsplit(h.path).path
        self.requests.append((h.command, path))
        parts = urllib.parse.unquote(path).strip("/").split("/")
        if parts[0] == "cdn" and len(parts) == 3:  # /cdn/<repo-commit>/<sha256>
            data = self._blob(parts[2])
            if data is None:
                return self._send(h, 404, {}, b"", body)
            return self._send(h, 200, {"ETag": f'"{parts[2]}"', "Content-Type": "application/octet-stream"}, data, body)
        if len(parts) < 5 or parts[2] != "resolve":
            return self._send(h, 404, {"X-Error-Code": "RepoNotFound"}, b"", body)
        repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._send(h, 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, b"", body)
        if revision not in ("main", repo.commit):
            return self._send(h, 404, {"X-Error-Code": "RevisionNotFound"}, b"", body)
        if filename not in repo.files:
            return self._send(h, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}, b"", body)
        data = repo.files[filename]
        if filename.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            headers = {
                "Location": f"http://localhost:{self.port}/cdn/{repo.commit}/{sha}",
                "X-Repo-Commit": repo.commit,
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{git_blob_sha1(b"lfs pointer " + sha.encode())}"',
            }
            return self._send(h, 302, headers, b"", body)
        served = self.tamper.get(filename, data)
        sent = served if body else data
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{git_blob_sha1(data)}"', "Content-Length": str(len(sent))}
        return self._send(h, 200, headers, sent, body)

    def _blob(self, sha: str) -> bytes | None:
        for repo in self.repos.values():
            for filename, data in repo.files.items():
                if hashlib.sha256(data).hexdigest() == sha:
                    return self.tamper.get(filename, data)
        return None
