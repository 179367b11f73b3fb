"""The firmware store: validation, semantic ordering, and that a half release is never visible."""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import locale
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import full_disk, tinyota, wait_until, write_config
from tinyota_mqtt import store as store_module
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.errors import NotFound, ReleaseExists, StorageFull, StoreError, TinyOTAError
from tinyota_mqtt.store import Expectation, FirmwareStore, storage_error


@pytest.fixture
def store(tmp_path: Path) -> FirmwareStore:
    return FirmwareStore(tmp_path / "store", max_size=1_000_000)


def put(store: FirmwareStore, version: str, image: str = "kitchen", data: bytes | None = None,
        **kw: object) -> object:
    path = store.root.parent / "upload.bin"
    path.write_bytes(make_test_image(version) if data is None else data)
    return store.add_file(path, image, version, **kw)  # type: ignore[arg-type]


def test_release_metadata(store: FirmwareStore) -> None:
    data = make_test_image("1.4.0", 10_000)
    rel = put(store, "1.4.0", data=data, notes="fixes")
    assert rel.size == 10_000  # type: ignore[attr-defined]
    assert rel.md5 == hashlib.md5(data).hexdigest()  # type: ignore[attr-defined]
    assert rel.sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
    assert rel.notes == "fixes"  # type: ignore[attr-defined]
    assert store.path_of(rel).read_bytes() == data  # type: ignore[arg-type]
    assert FirmwareStore(store.root).get("kitchen", "1.4.0") == rel  # survives a new process


def test_another_process_release_is_seen_at_once_except_inside_a_steady_pass(store: FirmwareStore) -> None:
    """The cache is checked against the folder on every question, so a `tinyota release` run
    beside the server is visible to its next request; inside ``steady()`` (a pass over every
    device) it is not asked again, and this process's own writes are still seen at once."""
    other = FirmwareStore(store.root)  # another process writing the same store
    folder = store.root / "kitchen"

    def later(version: str) -> None:
        """``other`` releases ``version``; the folder's stamp moves on, as it does when the clock
        has ticked between two writes (Linux stamps with a clock of a few ms per tick)."""
        before = folder.stat().st_mtime_ns
        put(other, version)
        os.utime(folder, ns=(before + 10**9, before + 10**9))

    put(store, "1.0.0")
    assert [r.version for r in store.releases("kitchen")] == ["1.0.0"]
    later("1.1.0")
    assert store.get("kitchen", "1.1.0").version == "1.1.0"
    later("1.2.0")
    with store.steady():  # its first question asks the disk
        assert [r.version for r in store.releases("kitchen")] == ["1.0.0", "1.1.0", "1.2.0"]
        later("1.2.1")
        assert [r.version for r in store.releases("kitchen")] == ["1.0.0", "1.1.0", "1.2.0"]
        put(store, "1.3.0")  # our own write drops the cache: the pass sees everything then
        assert [r.version for r in store.releases("kitchen")] == ["1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.3.0"]
        later("1.4.0")
        assert store.latest("kitchen").version == "1.3.0"  # type: ignore[union-attr]
    assert store.latest("kitchen").version == "1.4.0"  # type: ignore[union-attr]


def test_versions_order_semantically(store: FirmwareStore) -> None:
    for v in ["1.10.0", "1.2.0", "1.2.0-rc.1", "1.2.0-beta", "0.9.9", "1.2.0-rc.10"]:
        put(store, v)
    assert [r.version for r in store.releases("kitchen")] == \
        ["0.9.9", "1.2.0-beta", "1.2.0-rc.1", "1.2.0-rc.10", "1.2.0", "1.10.0"]
    assert store.latest("kitchen").version == "1.10.0"  # type: ignore[union-attr]


def test_duplicate_version_refused_unless_replace(store: FirmwareStore) -> None:
    first = put(store, "1.0.0")
    with pytest.raises(ReleaseExists, match="already released"):
        put(store, "1.0.0")
    with pytest.raises(ReleaseExists):
        put(store, "1.0.0+build.7", force=True)  # same precedence, another spelling
    second = put(store, "1.0.0", data=make_test_image("1.0.0", 9000), replace=True)
    assert second.sha256 != first.sha256  # type: ignore[attr-defined]
    assert len(store.releases("kitchen")) == 1
    assert not store.path_of(first).exists()  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\x7fELF" + b"\x00" * 100, "not an ESP firmware image"),
    (make_test_image("2.0.0"), "says it is version 2.0.0"),
])
def test_bad_images_are_refused(store: FirmwareStore, data: bytes, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        put(store, "1.0.0", data=data)
    assert store.releases("kitchen") == []
    assert list((store.root / ".incoming").glob("*")) == []


def test_force_accepts_a_non_esp_file(store: FirmwareStore) -> None:
    assert put(store, "1.0.0", data=b"plain text", force=True).size == 10  # type: ignore[attr-defined]


def test_gzip_images_are_esp8266_only(store: FirmwareStore) -> None:
    packed = gzip.compress(make_test_image("1.0.0", 30_000, fill=os.urandom(64)))
    rel = put(store, "1.0.0", data=packed, platform="esp8266")
    assert rel.size == len(packed) and rel.firmware.gzip  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="only the ESP8266 core flashes gzip"):
        put(store, "1.0.0", image="sensor", data=gzip.compress(make_test_image("1.0.0", 30_000, platform="esp32")),
            platform="esp32")
    with pytest.raises(StoreError, match="gzip stream is corrupt"):
        put(store, "1.0.1", data=b"\x1f\x8b" + os.urandom(100))


def test_declared_size_and_checksums_must_match(store: FirmwareStore) -> None:
    data = make_test_image("1.0.0")
    for expect in (Expectation(size=len(data) + 1), Expectation(md5="0" * 32), Expectation(sha256="f" * 64)):
        with pytest.raises(StoreError, match="declared"):
            with store.begin("kitchen", "1.0.0", expect=expect) as up:
                up.write(data)
                up.commit()
    good = Expectation(size=len(data), md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())
    with store.begin("kitchen", "1.0.0", expect=good) as up:
        up.write(data)
        up.commit()
    assert store.get("kitchen", "1.0.0").size == len(data)


def test_size_limit(store: FirmwareStore) -> None:
    with pytest.raises(StoreError, match="larger than"):
        put(store, "1.0.0", data=make_test_image("1.0.0", 1_000_001))


@pytest.mark.parametrize(("image", "version"), [("../etc", "1.0.0"), ("kitchen", "v1.0.0"),
                                                ("kitchen", "1.0"), ("", "1.0.0"), ("kitchen", "../1.0.0")])
def test_bad_names_are_refused(store: FirmwareStore, image: str, version: str) -> None:
    with pytest.raises(TinyOTAError):
        store.begin(image, version)


def test_an_abandoned_upload_leaves_nothing_visible(store: FirmwareStore) -> None:
    up = store.begin("kitchen", "1.0.0")
    up.write(make_test_image("1.0.0")[:1000])
    assert store.releases("kitchen") == []
    up.abort()
    assert list((store.root / ".incoming").iterdir()) == []


def test_sweep_removes_leftovers_but_not_a_live_upload(store: FirmwareStore) -> None:
    put(store, "1.0.0")
    dead = store.root / ".incoming" / "dead.part"
    dead.write_bytes(b"x")  # no writer holds it: its upload was killed
    orphan = store.root / "kitchen" / "2.0.0.deadbeef.bin"
    orphan.write_bytes(b"x")
    live = store.begin("kitchen", "3.0.0")  # e.g. `tinyota release` in another process
    live.write(make_test_image("3.0.0")[:1000])
    assert store.sweep() == [dead]  # a fresh image file may belong to a commit under way
    later = time.time() + 7200
    assert store.sweep(now=later) == [orphan]
    live.abort()
    assert [r.version for r in store.releases("kitchen")] == ["1.0.0"]


def test_replacing_keeps_an_open_download_consistent(store: FirmwareStore) -> None:
    old = put(store, "1.0.0", data=make_test_image("1.0.0", 50_000))
    with open(store.path_of(old), "rb") as reading:  # type: ignore[arg-type]
        put(store, "1.0.0", data=make_test_image("1.0.0", 60_000, fill=b"\x00"), replace=True)
        assert hashlib.md5(reading.read()).hexdigest() == old.md5  # type: ignore[attr-defined]


def test_killed_release_command_leaves_no_release(tmp_path: Path) -> None:
    """kill -9 the CLI half way through a release: nothing appears, and sweep cleans up."""
    config = write_config(tmp_path)
    fifo = tmp_path / "fw.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "tinyota_mqtt", "release", str(fifo), "-c", str(config),
                             "--image", "kitchen", "--version", "1.0.0"], stderr=subprocess.PIPE)
    with open(fifo, "wb") as writer:
        writer.write(make_test_image("1.0.0", 300_000)[:150_000])
        writer.flush()
        incoming = tmp_path / "firmware" / ".incoming"
        wait_until(lambda: any(p.stat().st_size > 0 for p in incoming.glob("*.part")) if incoming.exists()
                   else False, 20, "the upload to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    store = FirmwareStore(tmp_path / "firmware")
    assert store.releases() == []
    listing = tinyota("releases", "-c", str(config))
    assert listing.returncode == 0 and "1.0.0" not in listing.stdout
    assert len(store.sweep()) == 1  # the killed writer's .part, at the next start


def test_disk_full_during_a_release_is_a_clear_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 100 KB fail as a full disk would."""
    import resource

    config = write_config(tmp_path)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(make_test_image("1.0.0", 400_000))

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = subprocess.run([sys.executable, "-m", "tinyota_mqtt", "release", str(fw), "-c", str(config),
                          "--image", "kitchen", "--version", "1.0.0"], capture_output=True, text=True,
                         preexec_fn=small_disk, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "is full" in out.stderr and "not kept" in out.stderr and "Traceback" not in out.stderr
    store = FirmwareStore(tmp_path / "firmware")
    assert store.releases() == []
    assert list((tmp_path / "firmware" / ".incoming").iterdir()) == []


# -- what the store answers, and what it says when it cannot -------------------------------------

def test_a_forced_release_reads_back_in_a_new_process(store: FirmwareStore) -> None:
    rel = put(store, "1.0.0", data=b"not an ESP image", force=True)
    assert rel.firmware is None and rel.notes == ""  # type: ignore[attr-defined]
    assert FirmwareStore(store.root).get("kitchen", "1.0.0") == rel


def test_each_image_answers_for_its_own_releases(store: FirmwareStore) -> None:
    kitchen = put(store, "1.0.0", image="kitchen")
    put(store, "1.0.0", image="sensor")
    put(store, "2.0.0", image="sensor")
    assert store.get("kitchen", "1.0.0") == kitchen
    assert store.latest("kitchen") == kitchen and store.latest("nothing") is None
    with pytest.raises(NotFound) as missing:
        store.get("kitchen", "2.0.0")
    assert "2.0.0" in missing.value.message and "'kitchen'" in missing.value.message
    assert "tinyota releases" in (missing.value.hint or "")
    sensor = store.get("sensor", "1.0.0")
    assert store.delete("sensor", "1.0.0") == sensor and not store.path_of(sensor).exists()
    assert store.get("kitchen", "1.0.0") == kitchen and store.path_of(kitchen).exists()
    store.delete("kitchen", "1.0.0")
    assert store.releases("kitchen") == []
    assert [r.version for r in store.releases("sensor")] == ["2.0.0"]


def test_a_delete_shows_even_when_the_folder_time_did_not_move(store: FirmwareStore) -> None:
    """Folder mtimes tick coarsely (a few ms): a release and its delete can share one."""
    put(store, "1.0.0")
    folder = store.root / "kitchen"
    stamp = folder.stat().st_mtime_ns
    assert [r.version for r in store.releases("kitchen")] == ["1.0.0"]
    store.delete("kitchen", "1.0.0")
    os.utime(folder, ns=(stamp, stamp))
    assert store.releases("kitchen") == []


def test_add_file_passes_on_what_it_was_told(store: FirmwareStore) -> None:
    with pytest.raises(StoreError, match="esp8266"):
        put(store, "1.0.0", data=make_test_image("1.0.0", platform="esp32"), platform="esp8266")
    with pytest.raises(StoreError, match="declared"):
        put(store, "1.0.0", expect=Expectation(size=1))
    missing = store.root.parent / "no-such.bin"
    with pytest.raises(StoreError, match=r"cannot read .*no-such\.bin"):
        store.add_file(missing, "kitchen", "1.0.0")
    assert store.releases("kitchen") == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_is_named_as_such(tmp_path: Path, code: int) -> None:
    error = storage_error(OSError(code, os.strerror(code)), tmp_path)
    assert isinstance(error, StorageFull) and error.status == 507
    assert str(tmp_path) in error.message and "is full" in error.message and "not kept" in error.message
    assert "free some space" in (error.hint or "")


def test_any_other_write_failure_says_what_to_check(tmp_path: Path) -> None:
    error = storage_error(OSError(errno.EACCES, os.strerror(errno.EACCES)), tmp_path)
    assert not isinstance(error, StorageFull)
    assert str(tmp_path) in error.message and "Permission denied" in error.message and "not kept" in error.message
    assert "permissions" in (error.hint or "")


def test_sweep_removes_a_metadata_file_left_half_written(store: FirmwareStore) -> None:
    put(store, "1.0.0")
    left = store.root / "kitchen" / ".1.1.0.0123abcd.json.tmp"  # a commit killed before its rename
    left.write_text("{")
    assert store.sweep() == [left]
    assert not left.exists() and [r.version for r in store.releases("kitchen")] == ["1.0.0"]


def test_replacing_under_another_spelling_leaves_one_release(store: FirmwareStore) -> None:
    first = put(store, "1.0.0+a", data=make_test_image("1.0.0+a", 9000), force=True)
    second = put(store, "1.0.0+b", data=make_test_image("1.0.0+b", 8000), force=True, replace=True)
    assert FirmwareStore(store.root).releases("kitchen") == [second]
    # Nothing of the old spelling is left: neither its bytes nor a metadata file naming them.
    assert sorted(p.name for p in (store.root / "kitchen").iterdir()) == \
        sorted(["1.0.0+b.json", second.file])  # type: ignore[attr-defined]
    assert first.file != second.file  # type: ignore[attr-defined]


# -- refusals a user reads: each names what went wrong and the next step -------------------------

def refusal(store: FirmwareStore, data: bytes, version: str = "1.0.0", **kw: object) -> StoreError:
    """What ``begin(**kw)`` / ``write(data)`` / ``commit()`` refuse with, and that nothing was kept."""
    before = store.releases("kitchen")
    with pytest.raises(StoreError) as refused:
        with store.begin("kitchen", version, **kw) as up:  # type: ignore[arg-type]
            up.write(data)
            up.commit()
    assert store.releases("kitchen") == before
    assert list((store.root / ".incoming").iterdir()) == []
    return refused.value


def names_flag(hint: str | None, flag: str) -> bool:
    """The hint spells the option as the CLI takes it (a flag in capitals or run on is no flag)."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", hint or "") is not None


def test_each_declared_mismatch_says_which_and_why(store: FirmwareStore) -> None:
    data = make_test_image("1.0.0")
    short = refusal(store, data, expect=Expectation(size=len(data) + 5))
    assert str(len(data)) in short.message and str(len(data) + 5) in short.message
    assert "cut short" in (short.hint or "")
    md5 = refusal(store, data, expect=Expectation(md5="0" * 32))
    assert "md5" in md5.message and "sha256" not in md5.message and "corrupted" in (md5.hint or "")
    sha = refusal(store, data, expect=Expectation(sha256="0" * 64))
    assert "sha256" in sha.message and "md5" not in sha.message and "corrupted" in (sha.hint or "")
    empty = refusal(store, b"")
    assert "empty" in empty.message and "build output" in (empty.hint or "")


def test_declared_checksums_may_be_written_in_capitals(store: FirmwareStore) -> None:
    """Tools print hex digests either way (certutil on Windows prints capitals)."""
    data = make_test_image("1.0.0")
    expect = Expectation(md5=hashlib.md5(data).hexdigest().upper(), sha256=hashlib.sha256(data).hexdigest().upper())
    with store.begin("kitchen", "1.0.0", expect=expect) as up:
        up.write(data)
        assert up.commit().md5 == hashlib.md5(data).hexdigest()


def test_the_size_limit_admits_exactly_its_size(tmp_path: Path) -> None:
    store = FirmwareStore(tmp_path / "store", max_size=5000)
    assert put(store, "1.0.0", data=make_test_image("1.0.0", 5000)).size == 5000  # type: ignore[attr-defined]
    big = refusal(store, make_test_image("1.1.0", 5001), "1.1.0")
    assert "5000" in big.message
    assert "server.limits.max_upload_bytes" in (big.hint or "")  # the config key, spelled as the config takes it
    assert [r.version for r in store.releases("kitchen")] == ["1.0.0"]


def test_a_bad_image_gets_the_parsers_hint_and_the_way_past_it(store: FirmwareStore) -> None:
    elf = refusal(store, b"\x7fELF" + b"\x00" * 100)
    assert "not an ESP firmware image" in elf.message
    assert "not the .elf" in (elf.hint or "") and names_flag(elf.hint, "--force")
    cut = refusal(store, make_test_image("1.0.0", 8192)[:4000])  # the parser has no hint for this
    assert "truncated" in cut.message
    assert "rebuild or copy" in (cut.hint or "") and names_flag(cut.hint, "--force")


def test_an_image_for_another_chip_names_the_image_the_chip_and_the_ways_out(store: FirmwareStore) -> None:
    wrong = refusal(store, make_test_image("1.0.0", platform="esp32"), platform="esp8266")
    assert "'kitchen'" in wrong.message and "ESP32" in wrong.message and "ESP8266" in wrong.message
    assert "brick" in (wrong.hint or "") and "ESP32" in (wrong.hint or "") and names_flag(wrong.hint, "--force")


def test_an_image_of_another_version_names_both_and_the_fix(store: FirmwareStore) -> None:
    other = refusal(store, make_test_image("2.0.0"))
    assert "2.0.0" in other.message and "1.0.0" in other.message
    assert names_flag(other.hint, "--version") and names_flag(other.hint, "--force")


def test_the_version_inside_the_image_is_found_across_chunk_edges(store: FirmwareStore) -> None:
    """An upload arrives in whatever pieces the network makes; the marker may be cut anywhere."""
    data = make_test_image("2.0.0")
    with pytest.raises(StoreError, match=r"says it is version 2\.0\.0"):
        with store.begin("kitchen", "1.0.0") as up:
            for at in range(0, len(data), 7):
                up.write(data[at:at + 7])
            up.commit()
    with store.begin("kitchen", "2.0.0") as up:
        for at in range(0, len(data), 7):
            up.write(data[at:at + 7])
        assert up.commit().sha256 == hashlib.sha256(data).hexdigest()


def test_a_bad_image_name_and_a_taken_version_say_what_to_do(store: FirmwareStore) -> None:
    with pytest.raises(StoreError) as bad:
        store.begin("../etc", "1.0.0")
    assert "'../etc'" in bad.value.message and "letters, digits" in (bad.value.hint or "")
    put(store, "1.0.0+build.1")
    with pytest.raises(ReleaseExists) as taken:
        store.begin("kitchen", "1.0.0+build.2")  # begin()'s default: no replacing
    assert "kitchen 1.0.0+build.1" in taken.value.message  # the spelling that exists
    assert names_flag(taken.value.hint, "--replace")


def test_begin_defaults_to_no_notes_and_no_force(store: FirmwareStore) -> None:
    with store.begin("kitchen", "1.0.0") as up:
        up.write(make_test_image("1.0.0"))
        assert up.commit().notes == ""
    with pytest.raises(StoreError, match="not an ESP firmware image"):
        with store.begin("kitchen", "1.1.0") as up:
            up.write(b"plain text")
            up.commit()


def test_a_release_committed_meanwhile_is_not_overwritten(store: FirmwareStore) -> None:
    first, second = store.begin("kitchen", "1.0.0"), store.begin("kitchen", "1.0.0")
    first.write(make_test_image("1.0.0"))
    kept = first.commit()
    second.write(make_test_image("1.0.0", 9000))
    with pytest.raises(ReleaseExists) as late:
        second.commit()
    assert "kitchen 1.0.0" in late.value.message and names_flag(late.value.hint, "--replace")
    assert store.releases("kitchen") == [kept] and store.path_of(kept).read_bytes() == make_test_image("1.0.0")
    assert list((store.root / ".incoming").iterdir()) == []


def test_a_finished_upload_takes_no_more(store: FirmwareStore) -> None:
    up = store.begin("kitchen", "1.0.0")
    up.write(make_test_image("1.0.0"))
    rel = up.commit()
    for late in (lambda: up.write(b"more"), up.commit):
        with pytest.raises(StoreError) as finished:
            late()
        assert "already finished" in finished.value.message
    assert store.path_of(rel).read_bytes() == make_test_image("1.0.0")
    aborted = store.begin("kitchen", "1.1.0")
    aborted.abort()
    with pytest.raises(StoreError, match="already finished"):
        aborted.write(make_test_image("1.1.0"))
    assert [r.version for r in store.releases("kitchen")] == ["1.0.0"]


def test_a_release_is_stamped_with_its_time_in_utc(store: FirmwareStore) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    created = datetime.fromisoformat(put(store, "1.0.0").created)  # type: ignore[attr-defined]
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= datetime.now(UTC)


# -- a disk that fails: a plain error, nothing half-written visible ------------------------------

def nothing_left(store: FirmwareStore, *keep: str) -> None:
    """No release but ``keep``, in this process or a new one, and no file but theirs."""
    assert [r.version for r in FirmwareStore(store.root).releases("kitchen")] == list(keep)
    assert [r.version for r in store.releases("kitchen")] == list(keep)
    assert list((store.root / ".incoming").iterdir()) == []
    folder = store.root / "kitchen"
    files = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    owned = [name for r in store.releases("kitchen") for name in (f"{r.version}.json", r.file)]
    assert files == sorted(owned)


def fail_fsync(monkeypatch: pytest.MonkeyPatch, suffix: str, code: int) -> None:
    """fsync() of a file whose name ends in ``suffix`` fails with ``code``, as a failing disk's does."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise OSError(code, os.strerror(code))
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


def test_a_write_that_fails_mid_upload_keeps_nothing_and_says_so(store: FirmwareStore) -> None:
    up = store.begin("kitchen", "1.0.0")
    with full_disk(50_000), pytest.raises(StorageFull) as full:
        up.write(make_test_image("1.0.0", 200_000))  # one chunk, past the limit: the kernel refuses it
    assert str(store.root) in full.value.message and "File too large" in full.value.message
    assert "not kept" in full.value.message
    with pytest.raises(StoreError, match="already finished"):
        up.commit()
    nothing_left(store)


def test_an_image_fsync_that_fails_keeps_nothing_and_says_so(store: FirmwareStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fail_fsync(monkeypatch, ".part", errno.EIO)
    with pytest.raises(StoreError) as failed:
        put(store, "1.0.0")
    assert not isinstance(failed.value, StorageFull)
    assert str(store.root) in failed.value.message and os.strerror(errno.EIO) in failed.value.message
    assert "traceback" not in str(failed.value).lower()
    nothing_left(store)


def test_an_upload_that_cannot_be_read_back_keeps_nothing_and_says_so(store: FirmwareStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The image is checked in place after it was written; a read error there is the disk's.
    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("tinyota_mqtt.store.mmap.mmap", unreadable)
    for force in (False, True):
        with pytest.raises(StoreError) as failed:
            put(store, "1.0.0", force=force)
        assert failed.value.message == (f"cannot read the upload back from the firmware store {store.root}: "
                                        f"{os.strerror(errno.EIO)}; the release was not kept")
        assert failed.value.hint == "check the disk"
        nothing_left(store)


def test_metadata_that_cannot_be_created_takes_its_image_file_back(store: FirmwareStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No inode left for the metadata file: the error says the disk is full, not that some
    file is missing, and the image file already renamed into the folder goes too."""
    real = open

    def no_inodes(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith(".json.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real(file, *args, **kwargs)
    monkeypatch.setattr(store_module, "open", no_inodes, raising=False)
    with pytest.raises(StorageFull) as full:
        put(store, "1.0.0")
    assert str(store.root) in full.value.message and "No space left" in full.value.message
    nothing_left(store)


@pytest.mark.parametrize("same_bytes", [True, False])
def test_a_replace_whose_metadata_fsync_fails_keeps_the_old_release(store: FirmwareStore, same_bytes: bool,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    old = put(store, "1.0.0", data=make_test_image("1.0.0", 9000))
    fail_fsync(monkeypatch, ".json.tmp", errno.EIO)
    with pytest.raises(StoreError, match="cannot write to the firmware store"):
        put(store, "1.0.0", data=make_test_image("1.0.0", 9000 if same_bytes else 8000), replace=True)
    nothing_left(store, "1.0.0")
    assert store.get("kitchen", "1.0.0") == old
    assert store.path_of(old).read_bytes() == make_test_image("1.0.0", 9000)  # type: ignore[arg-type]


# -- the cache, the listing and another process at work beside us --------------------------------

def test_the_folder_is_read_once_per_change(store: FirmwareStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every announcement and download asks the store; it reads a folder again only when the
    folder changed (bench fan-out: a release to a thousand devices asks thousands of times)."""
    put(store, "1.0.0")
    reads: list[Path] = []
    real = store._read_folder
    monkeypatch.setattr(store, "_read_folder", lambda folder: reads.append(folder) or real(folder))
    for _ in range(3):
        assert [r.version for r in store.releases("kitchen")] == ["1.0.0"]
        assert store.get("kitchen", "1.0.0").version == "1.0.0"
    assert reads == [store.root / "kitchen"]


def test_metadata_in_utf8_reads_back_under_any_locale(store: FirmwareStore) -> None:
    """JSON is UTF-8 (RFC 8259); the server may run under LANG=C, where Python's default is ASCII."""
    put(store, "1.0.0", notes="Küche: Zeitplan ✓")
    hand = put(store, "1.1.0")
    meta = store.root / "kitchen" / "1.1.0.json"
    body = json.loads(meta.read_text("utf-8"))
    meta.write_bytes(json.dumps({**body, "notes": "Büro ✓"}, ensure_ascii=False).encode("utf-8"))
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert locale.getencoding() != "utf-8"  # the locale this test is about
        notes = {r.version: r.notes for r in FirmwareStore(store.root).releases("kitchen")}
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert notes == {"1.0.0": "Küche: Zeitplan ✓", "1.1.0": "Büro ✓"}
    assert hand.file == store.get("kitchen", "1.1.0").file  # type: ignore[attr-defined]


def test_unreadable_metadata_hides_only_itself(store: FirmwareStore) -> None:
    folder = store.root / "kitchen"
    for n in range(5):
        put(store, f"1.{n}.0")
        (folder / f"0.{n}.0.json").write_text("{not json")  # interleaved, whatever the listing order
    assert [r.version for r in FirmwareStore(store.root).releases("kitchen")] == [f"1.{n}.0" for n in range(5)]


def test_the_listing_and_fingerprint_hold_images_only(store: FirmwareStore) -> None:
    put(store, "1.0.0")
    (store.root / "README").write_text("a file, not an image")
    before = store.fingerprint()
    live = store.begin("kitchen", "2.0.0")  # .incoming appears: no image, and no release changed
    live.write(make_test_image("2.0.0")[:100])
    assert store.images() == ["kitchen"]
    assert store.fingerprint() == before and [image for image, _ in before] == ["kitchen"]
    live.abort()


def test_an_image_folder_removed_by_hand_meanwhile_drops_out_of_the_fingerprint(
        store: FirmwareStore, monkeypatch: pytest.MonkeyPatch) -> None:
    put(store, "1.0.0")
    put(store, "1.0.0", image="sensor")
    listed = store.images()
    shutil.rmtree(store.root / "sensor")  # between the listing and its stat
    monkeypatch.setattr(store, "images", lambda: listed)
    assert [image for image, _ in store.fingerprint()] == ["kitchen"]


def test_a_release_another_process_deleted_meanwhile_is_replaced_cleanly(store: FirmwareStore) -> None:
    """Inside a steady() pass the store answers from what it read: another process's delete
    is not seen, and replacing the release it deleted must not trip over the missing files."""
    put(store, "1.0.0+a", data=make_test_image("1.0.0+a", 9000), force=True)
    with store.steady():
        assert [r.version for r in store.releases("kitchen")] == ["1.0.0+a"]
        FirmwareStore(store.root).delete("kitchen", "1.0.0+a")
        new = put(store, "1.0.0+b", data=make_test_image("1.0.0+b", 8000), force=True, replace=True)
    assert FirmwareStore(store.root).releases("kitchen") == [new]
    nothing_left(store, "1.0.0+b")


def test_a_delete_whose_image_file_is_already_gone_still_deletes(store: FirmwareStore) -> None:
    rel = put(store, "1.0.0")
    with store.steady():
        assert store.get("kitchen", "1.0.0") == rel
        store.path_of(rel).unlink()  # removed by hand meanwhile  # type: ignore[arg-type]
        assert store.delete("kitchen", "1.0.0") == rel
    assert store.releases("kitchen") == [] and list((store.root / "kitchen").iterdir()) == []


def test_a_sweep_beside_another_sweeper_lists_only_what_it_removed(store: FirmwareStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes start at once (`tinyota serve` and a `tinyota release`): both sweep.
    Whatever the other removes first, this one neither fails nor claims it."""
    put(store, "1.0.0")
    folder = store.root / "kitchen"
    (store.root / ".incoming" / "dead.part").write_bytes(b"x")
    (folder / "2.0.0.deadbeef.bin").write_bytes(b"x")
    (folder / ".1.1.0.0123abcd.json.tmp").write_text("{")
    real = os.unlink

    def other_sweeper_first(path: Any, *args: Any, **kwargs: Any) -> None:
        real(path, *args, **kwargs)  # the other sweeper got there first
        real(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", other_sweeper_first)
    assert store.sweep(now=time.time() + 7200) == []
    monkeypatch.undo()
    nothing_left(store, "1.0.0")


def test_a_stream_past_the_limit_is_refused_as_it_arrives(tmp_path: Path) -> None:
    """`tinyota release` reads its file a piece at a time (it may be a pipe, or larger than
    memory): the limit stops the reading, not the end of the file."""
    store = FirmwareStore(tmp_path / "store", max_size=100_000)
    fifo = tmp_path / "fw.fifo"
    os.mkfifo(fifo)
    refused, wrote_all = threading.Event(), threading.Event()

    def writer() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as out:
            for _ in range(160):  # 10 MiB, far past the limit
                out.write(b"\xe9" * 65536)
            wrote_all.set()
            refused.wait(30)  # a reader that waits for the end gets it only after this bound
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(StoreError, match="larger than the 100000 byte limit"):
            store.add_file(fifo, "kitchen", "1.0.0")
        assert not wrote_all.is_set(), "the store read the whole stream before refusing it"
    finally:
        refused.set()
        thread.join(60)
    assert store.releases("kitchen") == [] and list((store.root / ".incoming").iterdir()) == []
