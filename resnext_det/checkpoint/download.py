"""Downloading published weight files into the caches their users already have, checked.

Where a file goes: torchvision's (``download.pytorch.org``) into torch hub's cache
(``torch.hub.get_dir()/checkpoints``, where torchvision puts them), any other URL where
Detectron2 (iopath) caches it (``$FVCORE_CACHE``, by default ``~/.torch/iopath_cache``,
under the URL's path), so that a file a user already has is found, not fetched again.

How: into ``<file>.partial``, resumed after a cut connection (an HTTP range request; a
server that ignores it sends the whole file again), renamed into the cache only once
whole and checked. Its sha256 must begin with the prefix in its name where the publisher
puts one there (torchvision's ``resnext50_32x4d-7cdf4587.pth``, torch.hub's rule), and
equal the one recorded beside it (``<file>.sha256``, as ``sha256sum`` writes it) at its
first download; a cached file is checked again on every use. An HTML page, a redirect to
another host, a server that stops answering, a truncated or altered file each end in one
line naming the URL and the cache path. torch.hub's ``download_url_to_file`` and iopath's
``download`` lack the resume, the redirect policy, the HTML check and the mirror, hence
this module.

The mirror, for a cluster behind a proxy or offline: with ``RESNEXT_DET_MIRROR=<base>``,
``https://<host>/<path>`` is fetched from ``<base>/<host>/<path>`` (``http://``,
``https://`` or ``file://``), and must pass the same checks.
"""

import hashlib
import http.client
import os
import re
import socket
import sys
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import HTTPRedirectHandler, Request, build_opener

import torch
from iopath.common.file_io import file_lock, get_cache_dir
from tqdm import tqdm

from ..utils.atomic_io import write_text_atomically
from ..utils.errors import ConfigError, WeightsError

__all__ = [
    "MIRROR_ENV",
    "TIMEOUT_ENV",
    "cache_path",
    "fetch",
    "published_hash_prefix",
    "sha256_of",
]

MIRROR_ENV = "RESNEXT_DET_MIRROR"
TIMEOUT_ENV = "RESNEXT_DET_DOWNLOAD_TIMEOUT"
TIMEOUT_S = 60.0  # of silence from the server, not of the whole download
RESUMES = 3  # a cut connection is resumed this many times within one run
TORCHVISION_HOST = "download.pytorch.org"
# torch.hub.HASH_REGEX with at least 8 digits, so that "R-50.pkl" is not read as a hash.
_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,64})\.")
_BLOCK = 1 << 20


def cache_path(url: str) -> Path:
    """Where ``url`` is cached: torch hub's cache for torchvision's files, else iopath's."""
    parsed = urlparse(url)
    path = PurePosixPath(parsed.path)
    if parsed.netloc == TORCHVISION_HOST:
        return Path(torch.hub.get_dir()) / "checkpoints" / path.name
    # iopath's HTTPURLHandler layout, which Detectron2's detectron2:// handler uses.
    return Path(get_cache_dir()) / str(path.parent).lstrip("/") / path.name


def published_hash_prefix(url: str) -> Optional[str]:
    """The start of the file's sha256 that its name carries (torchvision's), if any."""
    found = _HASH_PREFIX.search(PurePosixPath(urlparse(url).path).name)
    return found[1] if found else None


def sha256_of(path: Path) -> str:
    """The sha256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_of(cached: Path) -> Path:
    return cached.with_name(cached.name + ".sha256")


def _partial_of(cached: Path) -> Path:
    return cached.with_name(cached.name + ".partial")


def fetch(url: str, label: Optional[str] = None) -> Path:
    """The local copy of ``url``: from the cache if there, else downloaded into it.

    Either way its sha256 is checked (:func:`published_hash_prefix`, the record of its
    first download); one that has none yet is recorded and printed.

    Args:
        url: an ``https://`` URL.
        label: how errors name what the user gave (``MODEL.WEIGHTS='...'``).

    Raises:
        WeightsError: in one line naming the URL and the cache path: no network, an HTTP
            error, an HTML page, a redirect to another host, a server that hangs, a file
            cut short, a sha256 that differs from what is expected.
    """
    label = label or url
    cached = cache_path(url)
    with file_lock(str(cached)):  # iopath's lock: one download per file, theirs included
        if cached.is_file():
            digest = sha256_of(cached)
            problem = _hash_problem(url, cached, digest)
            if problem:
                raise WeightsError(
                    f"{label}: the cached {cached} has sha256 {digest}, but {problem}; expected "
                    f"the file as it was downloaded (it changed on disk): delete it to "
                    f"download {url} again"
                )
            if not _record_of(cached).is_file():  # put there by hand, or by Detectron2
                _record(cached, digest, "recorded the sha256 of")
        else:
            _download(url, cached, label)
    return cached


def _hash_problem(url: str, cached: Path, digest: str) -> Optional[str]:
    """What the sha256 ``digest`` of ``url``'s file contradicts, if anything."""
    prefix = published_hash_prefix(url)
    if prefix and not digest.startswith(prefix):
        return f"its name says it begins with {prefix}"
    record = _record_of(cached)
    if record.is_file():
        recorded = (record.read_text().split() or [""])[0]
        if digest != recorded:
            return f"{record} recorded {recorded} at its first download"
    return None


def _record(cached: Path, digest: str, what: str) -> None:
    write_text_atomically(_record_of(cached), f"{digest}  {cached.name}\n")
    sys.stderr.write(f"{what} {cached}: sha256 {digest}\n")


# -- the transfer -------------------------------------------------------------------------


class _Cut(Exception):
    """The connection ended before the whole file came."""


class _HtmlPage(Exception):
    """The server sent an HTML page where the file should be."""


class _Redirected(Exception):
    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


class _SameHostRedirects(HTTPRedirectHandler):
    """Follow a redirect only to the same host (and never from https to http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        old, new = urlparse(req.full_url), urlparse(newurl)
        if new.netloc != old.netloc or (old.scheme == "https" and new.scheme != "https"):
            raise _Redirected(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _mirrored(url: str) -> str:
    """Where to fetch ``url`` from: itself, or its place on the mirror."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return url
    if urlparse(base).scheme not in ("http", "https", "file"):
        raise ConfigError(
            f"{MIRROR_ENV}={base!r} is not a URL; expected the base URL of a mirror "
            "(http://, https:// or file://) that holds each file as <base>/<host>/<path>"
        )
    parsed = urlparse(url)
    return f"{base.rstrip('/')}/{parsed.netloc}{parsed.path}"


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is invalid; expected seconds > 0")
    return seconds


def _download(url: str, cached: Path, label: str) -> None:
    source = _mirrored(url)
    partial = _partial_of(cached)
    timeout = _timeout()
    origin = f" from the mirror {source}" if source != url else ""
    sys.stderr.write(f"Downloading {url}{origin} to {cached}\n")
    cached.parent.mkdir(parents=True, exist_ok=True)
    where = f"{source} (for {cached})"
    cuts = 0
    while True:
        try:
            _transfer(source, partial, timeout)
            break
        except _Cut as cut:
            cuts += 1
            if cuts > RESUMES:
                raise WeightsError(
                    f"{label}: the download of {where} was cut {cuts} times, last after "
                    f"{cut}; expected the whole file: run again to resume from {partial} "
                    "(nothing was put in the cache)"
                ) from None
        except _HtmlPage:
            partial.unlink(missing_ok=True)
            raise WeightsError(
                f"{label}: {where} answered with an HTML page, not a weight file (a proxy's "
                "login page, an error page); expected the file itself: nothing was kept"
            ) from None
        except _Redirected as redirect:
            raise WeightsError(
                f"{label}: {source} redirects to {redirect.target}, another host; expected "
                f"the file from {urlparse(source).netloc} itself (a redirect elsewhere is not "
                f"followed): fetch it by hand and save it as {cached}"
            ) from None
        except HTTPError as e:
            if e.code == 416 and partial.is_file():  # the partial file is no prefix of it
                partial.unlink()
                continue
            raise WeightsError(
                f"{label}: {where} answered HTTP {e.code} {e.reason}; expected the file"
                + (f" (is it on the mirror {os.environ[MIRROR_ENV]}?)" if origin else "")
            ) from None
        except (socket.timeout, URLError) as e:
            reason = e.reason if isinstance(e, URLError) else e
            if isinstance(reason, socket.timeout):
                raise WeightsError(
                    f"{label}: {where} sent nothing for {timeout:g} s; expected a server that "
                    f"answers ({TIMEOUT_ENV} sets the wait): run again to resume"
                ) from None
            by_hand = f"fetch {url} by hand and save it as {cached}"
            if origin:
                raise WeightsError(
                    f"{label}: cannot download {source} ({reason}); expected the mirror "
                    f"{MIRROR_ENV}={os.environ[MIRROR_ENV]!r} to answer, or {by_hand}"
                ) from None
            raise WeightsError(
                f"{label}: cannot download {url} ({reason}); expected network access. "
                f"Without it, {by_hand}, or set {MIRROR_ENV} to a mirror holding "
                f"{urlparse(url).netloc}{urlparse(url).path}"
            ) from None
    digest = sha256_of(partial)
    problem = _hash_problem(url, cached, digest)
    if problem:
        partial.unlink()
        raise WeightsError(
            f"{label}: the file downloaded from {source} has sha256 {digest}, but {problem}; "
            f"expected the published file (the transfer or the server altered it): nothing "
            f"was put in {cached}"
        )
    os.replace(partial, cached)
    _record(cached, digest, "downloaded")


def _transfer(source: str, partial: Path, timeout: float) -> None:
    """Append the rest of ``source`` to ``partial`` (all of it if the server does not
    resume); raise :class:`_Cut` if the connection ends early."""
    offset = partial.stat().st_size if partial.is_file() else 0
    received = offset
    request = Request(source, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with build_opener(_SameHostRedirects).open(request, timeout=timeout) as response:
            resumed = getattr(response, "status", None) == 206
            if resumed and not _resumes_at(response, offset):  # a part from elsewhere
                partial.unlink()
                raise _Cut(f"{offset} bytes (the server answered from another offset)")
            if not resumed:
                offset = received = 0  # the whole file again: a clean re-download
            remaining = response.headers.get("Content-Length", "")
            total = offset + int(remaining) if remaining.isdigit() else None
            if response.headers.get_content_type() == "text/html":
                raise _HtmlPage
            with open(partial, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=partial.name, disable=None,
            ) as bar:  # fmt: skip
                for block in iter(lambda: response.read1(_BLOCK), b""):
                    if received == 0 and block.lstrip()[:1] == b"<":  # <!DOCTYPE html>, <html>
                        raise _HtmlPage
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
    except (http.client.HTTPException, ConnectionError) as e:  # IncompleteRead, a reset
        raise _Cut(f"{received} bytes ({type(e).__name__})") from None
    if total is not None and received < total:
        raise _Cut(f"{received} of {total} bytes")


def _resumes_at(response, offset: int) -> bool:
    """Whether a 206 answer holds the file from ``offset`` on (``Content-Range``)."""
    found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return bool(found) and int(found[1]) == offset
