"""The firmware store: plain files under one directory, written so a half release is never seen.

Layout::

    <root>/<image>/<version>.json               metadata; its presence *is* the release
    <root>/<image>/<version>.<sha256[:16]>.bin  the image bytes, named by content
    <root>/.incoming/<random>.part              uploads in progress

A release is checked before it is committed: ``core/image.py`` parses the image (chip, segments,
checksum, appended SHA-256) and the upload is refused when it is cut short, corrupt, or built for
another chip than its image's ``platform`` (``force`` skips these checks). What the parser found
is kept in the metadata as ``firmware``.

A release is committed in this order: bytes to ``.incoming`` (hashed as they arrive), fsync,
rename into the image folder, metadata to a temp file, fsync, rename to ``<version>.json``, fsync
the folder. A crash before the last rename leaves only files no listing looks at; ``sweep()``
removes them. Content-named blobs mean replacing a release never rewrites bytes a device may be
downloading right now: an open download keeps reading the old file until it finishes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core import semver
from tinyota_mqtt.errors import NotFound, ReleaseExists, StorageFull, StoreError

IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
INCOMING = ".incoming"
STALE_UPLOAD_SECONDS = 3600.0  # an image file no release names, this old, belongs to no commit under way
_MARKER_TAIL = len(esp_image.VERSION_MARKER) + semver.MAX_LENGTH + 1


@dataclass(frozen=True)
class Release:
    image: str
    version: str
    size: int
    md5: str
    sha256: str
    created: str  # ISO 8601, UTC
    notes: str
    file: str  # blob file name inside <root>/<image>/
    # What the image's headers say; None for a release forced past the checks, or older metadata.
    firmware: esp_image.ImageInfo | None = None

    @property
    def sort_key(self) -> semver.Version:
        return semver.parse(self.version)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["firmware"] = self.firmware.to_json() if self.firmware else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Release:
        firmware = data.get("firmware")
        return cls(**{**data, "firmware": esp_image.ImageInfo.from_json(firmware) if firmware else None})


@dataclass(frozen=True)
class Expectation:
    """What an uploader declared; any mismatch refuses the release."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


class Upload:
    """One release being written. Feed ``write()``, then ``commit()``; ``abort()`` on any failure.

    Usable as a context manager: leaving the block without ``commit()`` aborts.
    """

    def __init__(self, store: FirmwareStore, image: str, version: str, notes: str, *, replace: bool,
                 force: bool, expect: Expectation, max_size: int | None, platform: str | None) -> None:
        self._store, self.image, self.version, self.notes = store, image, version, notes
        self.platform = platform  # the chip the image is configured for; None: any ESP image
        self._replace, self._force, self._expect, self._max_size = replace, force, expect, max_size
        incoming = store.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        self._part = incoming / f"{secrets.token_hex(8)}.part"
        self._fh: BinaryIO | None = open(self._part, "xb")  # noqa: SIM115 - closed in commit/abort
        # Held while we write: sweep() removes only the .part files nobody holds, so a release
        # running in another process (`tinyota release` beside the server) is left alone, and
        # one whose process was killed is gone at the next start, whatever its age.
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._md5, self._sha256 = hashlib.md5(), hashlib.sha256()
        self.size = 0
        self._tail = b""
        self._embedded_version: str | None = None

    def write(self, chunk: bytes) -> None:
        if self._fh is None:
            raise StoreError("upload already finished")
        if self._max_size is not None and self.size + len(chunk) > self._max_size:
            self.abort()
            raise StoreError(
                f"release is larger than the {self._max_size} byte limit",
                "raise server.limits.max_upload_bytes if this image is really that big",
            )
        if self._embedded_version is None:
            window = self._tail + chunk
            self._embedded_version = esp_image.find_version(window)
            self._tail = window[-_MARKER_TAIL:]
        try:
            self._fh.write(chunk)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, self._store.root) from None
        self._md5.update(chunk)
        self._sha256.update(chunk)
        self.size += len(chunk)

    def _refusal(self) -> StoreError | None:
        exp = self._expect
        if self.size == 0:
            return StoreError("the firmware file is empty", "check the build output path")
        if exp.size is not None and exp.size != self.size:
            return StoreError(f"received {self.size} bytes but {exp.size} were declared",
                              "the upload was cut short or the declared size is wrong")
        if exp.md5 is not None and exp.md5.lower() != self._md5.hexdigest():
            return StoreError("md5 does not match the declared md5", "the file changed or was corrupted")
        if exp.sha256 is not None and exp.sha256.lower() != self._sha256.hexdigest():
            return StoreError("sha256 does not match the declared sha256",
                              "the file changed or was corrupted")
        return None

    def _inspect(self) -> tuple[StoreError | None, esp_image.ImageInfo | None]:
        """Parse the received image in place (mmap: never a second copy in memory)."""
        try:
            with open(self._part, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                info = esp_image.describe(view)
        except OSError as exc:  # the disk failed us on the way back: not the image's fault, and no traceback
            return StoreError(f"cannot read the upload back from the firmware store {self._store.root}: "
                              f"{exc.strerror}; the release was not kept", "check the disk"), None
        except esp_image.BadImage as exc:
            if self._force:
                return None, None
            return StoreError(exc.message, (exc.hint + ", or pass --force") if exc.hint else
                              "rebuild or copy the image again (or pass --force)"), None
        if self._force:
            return None, info
        wrong = esp_image.chip_mismatch(info, self.platform, f"image {self.image!r}") if self.platform else None
        if wrong is not None:
            return StoreError(wrong, "flashing it would brick the board: release it under an image for "
                                     f"the {info.chip_name}, fix the platform in the config, or pass --force"), None
        declared = self._embedded_version
        if declared is not None and declared != self.version:
            return StoreError(
                f"the image says it is version {declared} but is being released as {self.version}",
                "a device would report its old version and the update would never be confirmed; "
                "fix --version or pass --force",
            ), None
        return None, info

    def commit(self) -> Release:
        if self._fh is None:
            raise StoreError("upload already finished")
        fh, self._fh = self._fh, None
        # fh stays open (and so locked against sweep()) until the file is renamed into place.
        try:
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise storage_error(exc, self._store.root) from None
            refusal = self._refusal()
            info = None
            if refusal is None:
                refusal, info = self._inspect()
            if refusal is not None:
                raise refusal
            try:
                return self._store._commit(self, self._part, self._md5.hexdigest(), self._sha256.hexdigest(), info)
            except OSError as exc:
                raise storage_error(exc, self._store.root) from None
        finally:
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                self._part.unlink()  # gone already after a successful commit (renamed)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self._part.unlink()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def storage_error(exc: OSError, root: Path) -> StoreError:
    """A write that failed on the disk's side: say which, and that nothing was kept."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageFull(f"the firmware store {root} is full ({exc.strerror}); the release was not kept",
                           "free some space (e.g. delete old releases) and release again")
    return StoreError(f"cannot write to the firmware store {root}: {exc.strerror}; the release was not kept",
                      "check the folder's permissions and the disk")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _abandoned(part: Path) -> bool:
    """True when no upload holds ``part`` (its writer finished badly or was killed)."""
    try:
        fd = os.open(part, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


class FirmwareStore:
    def __init__(self, root: Path, *, max_size: int | None = None) -> None:
        self.root = Path(root)
        self.max_size = max_size
        # Per image: the folder's mtime when read, its releases in order, and the same by version.
        # Every announcement, Home Assistant state and download asks; a release to a thousand
        # devices asks several thousand times, so the check that the cache is current is one
        # os.stat on a ready string (a Path join and stat cost ten times as much: bench fan-out).
        self._cache: dict[str, tuple[int, list[Release], dict[str, Release]]] = {}
        self._root = str(self.root)
        self._steady = 0  # how deep inside steady() we are
        self._checked: set[str] = set()  # images asked of the disk in this steady() pass

    # -- reading ---------------------------------------------------------------------------------

    def images(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and IMAGE_NAME.fullmatch(p.name))

    def fingerprint(self) -> tuple[tuple[str, int], ...]:
        """Changes whenever a release is added, replaced or deleted: the same mtimes the cache
        below is keyed on, so whoever watches the store and the cache never disagree."""
        found = []
        for image in self.images():
            with contextlib.suppress(FileNotFoundError):
                found.append((image, (self.root / image).stat().st_mtime_ns))
        return tuple(found)

    def releases(self, image: str | None = None) -> list[Release]:
        """Releases sorted by semantic version, lowest first. Cached per folder mtime."""
        if image is None:
            return [r for name in self.images() for r in self.releases(name)]
        return self._current(image)[1]

    @contextlib.contextmanager
    def steady(self) -> Iterator[None]:
        """One look at the disk per image for a pass over every device, which asks the same few
        questions a thousand times in one go: the pass sees each image's releases as they were
        at its first question. What this process writes meanwhile is seen at once (a write
        drops the cache); another process's change, by the first question after the pass."""
        if not self._steady:
            self._checked.clear()
        self._steady += 1
        try:
            yield
        finally:
            self._steady -= 1

    def _current(self, image: str) -> tuple[int, list[Release], dict[str, Release]]:
        if self._steady and image in self._checked and (cached := self._cache.get(image)) is not None:
            return cached
        if not IMAGE_NAME.fullmatch(image):
            return 0, [], {}
        if self._steady:
            self._checked.add(image)
        try:
            stamp = os.stat(f"{self._root}/{image}").st_mtime_ns
        except FileNotFoundError:
            return 0, [], {}
        cached = self._cache.get(image)
        if cached is not None and cached[0] == stamp:
            return cached
        found = sorted(self._read_folder(self.root / image), key=lambda r: r.sort_key)
        entry = self._cache[image] = (stamp, found, {r.version: r for r in reversed(found)})  # first wins, as a scan
        return entry

    def _read_folder(self, folder: Path) -> Iterator[Release]:
        for meta in folder.glob("*.json"):
            try:
                data = json.loads(meta.read_text("utf-8"))
                release = Release.from_json(data)
                semver.parse(release.version)
            except (OSError, ValueError, TypeError, KeyError, semver.VersionError):
                continue  # unreadable metadata is not a release; `tinyota releases` shows the rest
            if (folder / release.file).is_file():
                yield release

    def get(self, image: str, version: str) -> Release:
        release = self._current(image)[2].get(version)
        if release is not None:
            return release
        raise NotFound(f"no release {version} of image {image!r}", "`tinyota releases` lists what exists")

    def latest(self, image: str) -> Release | None:
        found = self.releases(image)
        return found[-1] if found else None

    def path_of(self, release: Release) -> Path:
        return self.root / release.image / release.file

    def relative_path_of(self, release: Release) -> str:
        return f"{release.image}/{release.file}"

    # -- writing ---------------------------------------------------------------------------------

    def begin(self, image: str, version: str, notes: str = "", *, replace: bool = False, force: bool = False,
              expect: Expectation | None = None, platform: str | None = None) -> Upload:
        """Check what can be checked before any byte arrives, then open an upload.

        ``platform``: the chip the image is configured for (config ``images.<name>.platform``); an
        image built for another is refused unless ``force``. None accepts any whole ESP image.
        """
        if not IMAGE_NAME.fullmatch(image or ""):
            raise StoreError(f"image name {image!r} is not valid", "use letters, digits, '-' and '_'")
        parsed = semver.parse(version)
        if not replace:
            for existing in self.releases(image):
                if existing.sort_key == parsed:
                    raise ReleaseExists(
                        f"{image} {existing.version} is already released",
                        "pick a new version, or pass --replace to overwrite it",
                    )
        return Upload(self, image, version, notes, replace=replace, force=force,
                      expect=expect or Expectation(), max_size=self.max_size, platform=platform)

    def add_file(self, path: Path, image: str, version: str, notes: str = "", *, replace: bool = False,
                 force: bool = False, expect: Expectation | None = None, platform: str | None = None) -> Release:
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
        with source, self.begin(image, version, notes, replace=replace, force=force, expect=expect,
                                platform=platform) as up:
            for chunk in iter(lambda: source.read(1 << 16), b""):
                up.write(chunk)
            return up.commit()

    def _commit(self, upload: Upload, part: Path, md5: str, sha256: str,
                firmware: esp_image.ImageInfo | None) -> Release:
        folder = self.root / upload.image
        folder.mkdir(parents=True, exist_ok=True)
        previous = [r for r in self.releases(upload.image)
                    if r.sort_key == semver.parse(upload.version)]
        if previous and not upload._replace:
            raise ReleaseExists(f"{upload.image} {upload.version} was released meanwhile",
                                "pass --replace to overwrite it")
        release = Release(
            image=upload.image, version=upload.version, size=upload.size, md5=md5, sha256=sha256,
            created=datetime.now(UTC).isoformat(timespec="seconds"), notes=upload.notes,
            file=f"{upload.version}.{sha256[:16]}.bin", firmware=firmware,
        )
        os.replace(part, folder / release.file)
        meta_tmp = folder / f".{upload.version}.{secrets.token_hex(4)}.json.tmp"
        try:
            with open(meta_tmp, "x", encoding="utf-8") as fh:
                json.dump(release.to_json(), fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            # Not committed: take back the bytes, unless an equal release already owns that file.
            meta_tmp.unlink(missing_ok=True)
            if all(old.file != release.file for old in previous):
                (folder / release.file).unlink(missing_ok=True)
            raise
        for old in previous:  # equal precedence but another spelling, e.g. 1.4.0+a → 1.4.0+b
            if old.version != release.version:
                with contextlib.suppress(FileNotFoundError):
                    (folder / f"{old.version}.json").unlink()
        os.replace(meta_tmp, folder / f"{release.version}.json")
        _fsync_dir(folder)
        for old in previous:
            if old.file != release.file:
                with contextlib.suppress(FileNotFoundError):
                    (folder / old.file).unlink()
        self._cache.pop(upload.image, None)
        return release

    def delete(self, image: str, version: str) -> Release:
        release = self.get(image, version)
        folder = self.root / image
        (folder / f"{release.version}.json").unlink()
        _fsync_dir(folder)
        with contextlib.suppress(FileNotFoundError):
            (folder / release.file).unlink()
        self._cache.pop(image, None)
        return release

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove leftovers of interrupted uploads: stale .part files, blobs no metadata names."""
        now = time.time() if now is None else now
        removed: list[Path] = []
        incoming = self.root / INCOMING
        candidates: Iterable[Path] = incoming.glob("*.part") if incoming.is_dir() else ()
        for part in candidates:
            if _abandoned(part):
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                    removed.append(part)
        for image in self.images():
            folder = self.root / image
            named = {r.file for r in self._read_folder(folder)}
            for blob in folder.glob("*.bin"):
                with contextlib.suppress(FileNotFoundError):
                    if blob.name not in named and now - blob.stat().st_mtime > STALE_UPLOAD_SECONDS:
                        blob.unlink()
                        removed.append(blob)
            for tmp in folder.glob(".*.json.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
        return removed
