"""The firmware store: validation, semantic ordering, and that a half release is never visible."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tinyota, wait_until, write_config
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
