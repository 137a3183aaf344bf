# The farm's HTTP API as the add-on uses it (docs/API.md, docs/ASSETS.md), standard library only.
# Every failure becomes a FarmError whose message says what is wrong in words an artist can act on.

import hashlib
import ipaddress
import os
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

USER_AGENT = "edgefarm-blender-addon"


class FarmError(Exception):
    """A failure with a message for the artist (no traceback)."""


class Canceled(Exception):
    """The artist canceled the transfer."""


def _is_loopback(host):
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Reader:
    """A file read in 1 MiB pieces for a PUT body, counting and cancellable."""

    def __init__(self, f, progress, cancel):
        self.f = f
        self.progress = progress
        self.cancel = cancel

    def read(self, n=-1):
        if self.cancel is not None and self.cancel():
            raise Canceled()
        chunk = self.f.read(1 << 20 if n is None or n < 0 else max(n, 1 << 16))
        if chunk and self.progress is not None:
            self.progress(len(chunk))
        return chunk


class Farm:
    def __init__(self, url, token, timeout=60.0):
        url = (url or "").strip().rstrip("/")
        if not url:
            raise FarmError("No farm URL: set it in Preferences > Add-ons > edgefarm.")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FarmError("The farm URL %r is not an http:// or https:// address." % url)
        self.base = url
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.token = (token or "").strip()
        self.timeout = timeout
        self.ctx = ssl.create_default_context() if parts.scheme == "https" else None

    def plain_http_warning(self):
        if self.scheme == "http" and not _is_loopback(self.host):
            return "plain http:// to another machine: the token travels readable (use https://)"
        return None

    def _open(self, method, path, body=None, headers=None, auth=True):
        headers = dict(headers or {})
        headers.setdefault("User-Agent", USER_AGENT)
        if auth:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx)
        except urllib.error.HTTPError as e:
            return e
        except urllib.error.URLError as e:
            raise FarmError(self._why_unreachable(e.reason)) from None
        except ssl.SSLError as e:
            raise FarmError(self._why_unreachable(e)) from None
        except (socket.timeout, TimeoutError):
            raise FarmError("The farm at %s did not answer within %d s." % (self.base, self.timeout)) from None
        except OSError as e:
            raise FarmError(self._why_unreachable(e)) from None

    def _why_unreachable(self, reason):
        if isinstance(reason, ssl.SSLCertVerificationError):
            return ("TLS: the farm's certificate is not trusted (%s). Use the farm's public name, or install "
                    "the studio's CA certificate on this machine." % (reason.verify_message or reason))
        if isinstance(reason, ssl.SSLError):
            return "TLS handshake with %s failed (%s). Is it really https:// on that port?" % (self.base, reason)
        if isinstance(reason, socket.gaierror):
            return "Cannot reach the farm: the name %r is unknown (DNS)." % self.host
        if isinstance(reason, ConnectionRefusedError):
            return "Cannot reach the farm at %s: connection refused (is `edgefarm serve` running?)." % self.base
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return "Cannot reach the farm at %s: no answer (timeout)." % self.base
        return "Cannot reach the farm at %s: %s" % (self.base, reason)

    def _answer(self, resp, what):
        status = resp.status if hasattr(resp, "status") else resp.code
        raw = resp.read()
        try:
            data = json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError):
            data = None
        if status in (401, 403):
            raise FarmError("The farm refused the token (%d): check the token in Preferences > Add-ons > "
                            "edgefarm." % status)
        if status >= 400 or data is None:
            msg = ""
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                msg = data["error"].get("message", "")
            if data is None:
                msg = "the answer is not JSON: is %s an edgefarm server?" % self.base
            raise FarmError("%s failed (%d): %s" % (what, status, msg or raw[:200].decode("utf-8", "replace")))
        return status, resp.headers, data

    def json(self, method, path, body=None, auth=True, what=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        resp = self._open(method, path, data, headers, auth)
        return self._answer(resp, what or "%s %s" % (method, path))

    # --- what the add-on does -----------------------------------------------------------------

    def check(self):
        """Test connection: reachable, TLS, an edgefarm server, new enough, the token accepted.
        Returns a one-line summary; raises FarmError naming what is wrong."""
        resp = self._open("GET", "/v1/health", auth=False)
        status = resp.status if hasattr(resp, "status") else resp.code
        raw = resp.read()
        try:
            health = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            health = None
        if status != 200 or not isinstance(health, dict) or "version" not in health:
            raise FarmError("%s answers, but not like an edgefarm server (GET /v1/health: %d)." % (self.base, status))
        version = health.get("version", "?")
        if not self.token:
            raise FarmError("The farm answers (edgefarm %s), but no token is set." % version)
        self.json("GET", "/v1/jobs?limit=1", what="Listing jobs")
        resp = self._open("POST", "/v1/blobs/missing", json.dumps({"blobs": []}).encode(),
                          {"Content-Type": "application/json"})
        if (resp.status if hasattr(resp, "status") else resp.code) == 404:
            raise FarmError("The farm runs edgefarm %s, which is too old: it does not take uploaded files "
                            "(POST /v1/blobs/missing is missing). Update the server." % version)
        self._answer(resp, "Checking uploads")
        msg = "Connected: edgefarm %s, token accepted, uploads supported." % version
        warn = self.plain_http_warning()
        return msg + (" Warning: " + warn if warn else "")

    def missing(self, files):
        """The sha256s of `files` ([{sha256, size}]) the farm lacks, asked in rounds of 10,000."""
        lacking = set()
        for i in range(0, len(files), 10000):
            part = [{"sha256": f["sha256"], "size": f["size"]} for f in files[i:i + 10000]]
            _s, _h, data = self.json("POST", "/v1/blobs/missing", {"blobs": part},
                                     what="Asking which files the farm lacks")
            for m in data.get("missing", []):
                lacking.add(m["sha256"])
        return lacking

    def put_blob(self, local, sha256, size, progress=None, cancel=None):
        try:
            with open(local, "rb") as f:
                body = _Reader(f, progress, cancel)
                headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
                resp = self._open("PUT", "/v1/blobs/" + sha256, body, headers)
                self._answer(resp, "Uploading %s" % local)
        except FarmError:
            # The farm answers "already there" without reading the body (another submit sent
            # it meanwhile), which can break the connection under a large upload: ask again.
            if sha256 in self.missing([{"sha256": sha256, "size": size}]):
                raise
        except OSError as e:
            raise FarmError("Cannot read %s: %s" % (local, e)) from None

    def submit(self, spec):
        _s, headers, job = self.json("POST", "/v1/jobs", spec, what="Submitting the job")
        return job, _retry_after(headers)

    def job(self, job_id):
        _s, headers, job = self.json("GET", "/v1/jobs/" + urllib.parse.quote(job_id, safe=""), what="Reading the job")
        return job, _retry_after(headers)

    def outputs(self, job_id):
        """Every output file of a job ([{path, sha256, size, url, task}]), page by page."""
        files, cursor = [], "0"
        while cursor is not None:
            path = "/v1/jobs/%s/outputs?cursor=%s" % (urllib.parse.quote(job_id, safe=""), cursor)
            _s, _h, page = self.json("GET", path, what="Listing the outputs")
            files.extend(page.get("outputs", []))
            cursor = page.get("next")
        return files

    def download(self, sha256, size, dest):
        """Downloads blob `sha256` to `dest` (through a .part file, checked against the hash and
        size before it takes the name)."""
        resp = self._open("GET", "/v1/blobs/" + sha256)
        status = resp.status if hasattr(resp, "status") else resp.code
        if status != 200:
            self._answer(resp, "Downloading %s" % os.path.basename(dest))
            raise FarmError("Downloading %s failed (%d)" % (os.path.basename(dest), status))
        part = dest + ".part"
        digest, got = hashlib.sha256(), 0
        try:
            with open(part, "wb") as out:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    digest.update(chunk)
                    got += len(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256 or got != size:
                raise FarmError("The download of %s does not match its hash; nothing kept." % os.path.basename(dest))
            os.replace(part, dest)
        except OSError as e:
            raise FarmError("Cannot write %s: %s" % (dest, e)) from None
        finally:
            if os.path.exists(part):
                os.remove(part)

    def dashboard_link(self, job_id):
        return "%s/#job=%s" % (self.base, urllib.parse.quote(job_id, safe=""))


def _retry_after(headers, default=2.0):
    try:
        return max(0.5, min(60.0, float(headers.get("Retry-After"))))
    except (TypeError, ValueError):
        return default
