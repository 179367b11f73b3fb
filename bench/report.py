"""Turn a run's results into the files people read: results.json, results.md and two PNG plots.

Every figure is printed next to its target. The targets are stated for the full run; a quick
run's figures come from far smaller fleets and say nothing about them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.settings import Settings
from bench.util import MiB

LABELS = {
    "nginx": "nginx (1 worker, sendfile)",
    "tinyota": "tinyota",
    "stdlib-threaded": "stdlib ThreadingHTTPServer",
    "stdlib-single": "stdlib HTTPServer (1 thread)",
}
PEER_ORDER = ["tinyota", "nginx", "stdlib-threaded", "stdlib-single"]

# What stands between a figure and its target, from profiling (py-spy) on the 2-core machine the
# committed results come from. Shown under the targets table for each target a run misses.
WHY_MISSED: dict[str, str] = {
    "slow_complete": "some downloads failed; results.json lists their errors per run.",
    "slow_ratio": "once in, every transfer runs at device speed (see 'slowest transfer'); the fleet waits "
                  "to get in. Each request costs tinyota about 1 ms of CPU before its body starts (Tornado's "
                  "parsing and response, the login check, the target check, the access log, the attempt's "
                  "'download started'), so the last of 1000 devices arriving in the same instant gets its first "
                  "byte about a second later (TTFB p99), on two cores shared with the 1000 clients.",
    "slow_rss": "idle, the server is ~45 MB (the imports alone ~35 MB: Tornado with ssl and asyncio ~18 MB); "
                "each open download adds ~15 KiB of Tornado connection, request and handler objects. The body "
                "no longer holds a chunk (sendfile): 94-99 MB before.",
    "large_complete": "some downloads failed; results.json lists their errors per run.",
    "large_ratio": "the same entry cost as at N=1000, five times over: the last of 5000 devices gets its first "
                   "byte several seconds after the first; see TTFB p99 and the clients' CPU in the table.",
    "cpu_nginx": "per 1000-device update tinyota spends its CPU on the requests (~1 ms each, see above), on "
                 "the sendfile wake-ups (~11 per 1 MiB download at device pace), and on the fleet's own "
                 "bookkeeping of each download: 'download started' and 'served the whole image' each write "
                 "the registry at once (SQLite) and publish the device's Home Assistant state, and the "
                 "half-second clock visits every device. nginx does none of that bookkeeping.",
    "cpu_threaded": "see the CPU per fleet update row against nginx.",
    "cpu_single": "see the CPU per fleet update row against nginx.",
    "fast_nginx": "per 1 MiB request tinyota spends ~1 ms of CPU in Python (Tornado, login, policy, access "
                  "log) where nginx spends ~0.1 ms; the body itself now goes by sendfile as nginx's does. "
                  "The ratio moves by about ±0.1 with the machine's noise.",
    "fast_threaded": "the threaded baseline's figure swings most with the machine's load (its threads contend "
                     "for one GIL, the more so the busier the cores); compare rounds in results.json.",
    "fast_single": "the one-thread stdlib server answers with no parsing beyond the request line and its "
                   "headers, no policy and no registry; at 1 MiB its 8 KiB copy loop and tinyota's per-request "
                   "Python cost are of a size.",
    "fanout": "the release request now answers before it announces (0.01-0.06 s of the time); the "
              "rest is the announcing itself, about 0.25 ms of Python per device (its target, a new attempt, its QoS 1 "
              "announcement through paho, its Home Assistant state after them), one commit for all, and "
              "paho's network thread reading 2,000 PUBACKs while the states are built. 10.6x the broker "
              "floor at 02:20 (0.648 s), 3.4x in this run (0.438 s; the floor itself was 0.09-0.16 s here).",
    "ingest_rate": "about 50 µs of server CPU per report, on two threads that share one GIL: paho reading "
                   "packets (~40 % of the GIL time), the device and attempt records rebuilt with "
                   "dataclasses.replace (~24 %), the JSON parse and checks (~11 %). The figure follows the "
                   "machine: 13,955 msg/s at 02:20 (Intel Xeon, broker floor 34,421), 8,582 in this run (AMD "
                   "EPYC, broker floor 25,553: 0.34x against 0.41x); the same code measured 5,375-9,634 msg/s "
                   "in A/B runs between them as the load varied.",
    "ingest_backlog": "reports were lost: mosquitto drops QoS 0 messages for a subscriber whose queue is full "
                      "(max_queued_messages, 1000 by default) when the server reads too slowly.",
    "wave": "see the per-release rows; a device that failed its update is named in the error.",
    "idle_rss": "Python, Tornado, paho, PyYAML and SQLite loaded, plus the registry of every device.",
    "start": "the config's PyYAML parse (pure Python, kept for its line numbers in error messages) takes "
             "~0.15 s for 1000 devices; the interpreter and imports ~0.2 s.",
}

# Changes to the server this bench led to, with the interleaved A/B figures that justified them.
FINDINGS = """Changes to the server that this bench led to (A/B: old and new code in the same run, alternating):

- `tinyota_mqtt/registry.py` `Registry.open_attempt`: it scanned every attempt in memory, and it runs
  for every status a device sends (twice: `Reports.on_status`, `HassPublisher.publish_state`), so each of N
  devices' reports cost O(N). py-spy: 31% of the server's GIL time during ingestion. Now an index of
  attempt ids per device. Ingestion 1000×20: 4,823–4,897 → 5,934–6,288 msg/s; fan-out to 1000:
  0.56–0.64 → 0.41–0.45 s.
- `tinyota_mqtt/http/app.py` `start_http`: the listen queue was Tornado's default 128. A release makes a
  group connect at once; 1000 devices overflowed the queue 507–673 times per run and the dropped SYNs
  waited out 1 s / 3 s retransmits. Now `backlog=limits.max_connections` (capped by the kernel).
  Slow fleet N=1000: 1.153–1.163× → 1.077–1.089× ideal, TTFB p99 1.3–1.5 s → 0.55 s, 0 overflows.
- `tinyota_mqtt/http/firmware.py` `FirmwareHandler.get_content`: each open download held Tornado's 64 KiB
  chunk until the device took it. Now 32 KiB for devices, 256 KiB for a client proven faster than
  4 MB/s. Slow fleet N=1000 peak RSS 144–167 → 94 MB; fast 4 MiB, c=16: 1,310 → 1,809 MB/s;
  1 MiB unchanged (892 / 887 MB/s).
- `tinyota_mqtt/http/firmware.py`, `http/transfer.py`: on plain HTTP the body now goes by `os.sendfile`
  once Tornado has written the headers (HTTPS keeps the chunks). Same run, old and new alternating,
  2026-12-02, load 0.5–1.2: slow fleet N=1000 server CPU 4.18–5.09 → 2.19–2.66 s (nginx 0.41–0.46 s),
  peak RSS 99 → 62–63 MB, fleet time 1.113–1.236× → 1.117–1.177× ideal (nginx 1.042–1.051×); load
  2.7–3.4: fast 1 MiB c=16 315 → 504 MB/s (CPU per request 1.98 → 1.16 ms; nginx 0.12 ms), 4 MiB c=16
  939 → 1,098 MB/s (2.84 → 1.42 ms).
- The MQTT path, 2026-12-02 (old and new alternating against one broker; ingestion 1000×20 msg/s,
  fan-out to 1000 median): `mqtt/client.py` sets TCP_NODELAY on the broker connection (paho never
  does; each small publish or PUBACK waited out the broker's delayed ACK, and the server sat idle
  ~75 % of a burst): 545–583 → 2,250–2,294 msg/s; the network thread hands every packet waiting to
  the loop in one dispatch (≤ 500): → 2,807–3,191; no 20-message QoS 1 window on MQTT 3.1.1 and the
  guard's subscriptions at QoS 0 (`no_local` on MQTT 5): → 2,722–4,108; `fleet/hass.py` publishes a
  device's Home Assistant state once per event-loop turn instead of once per report, and does not
  serialise an unchanged one again: → 7,334–8,540 msg/s (load 3.2–4.7). Over the same steps fan-out
  went 2.1–3.1 → 0.44–0.82 s. Server CPU for the 20,000 reports: 6.27 → 0.99 s; peak RSS 78 → 45–49 MB.
  py-spy (`--gil`, inclusive), ingestion before: `Service.handle_message` 40.3 %, paho
  `_packet_read` 37.5 %, `Reports.on_status` 34.0 %, `HassPublisher.publish_state` 23.1 %,
  `Targets.offered` → `FirmwareStore.releases` 7 %; after: `Service.handle_message` 54.1 %,
  `_packet_read` 38.5 %, `Reports.on_status` 32.8 %, `dataclasses.replace` 24.2 %, `parse_status`
  11.4 %, the Home Assistant flush 4.4 %. Fan-out before: `ReleasesHandler.post` 45 %,
  `Announcer.reconcile` 36.5 %, paho reading 21.6 %, `publish_state` 14.8 %, `_write_to_self` (one
  per message) 9.8 %, `FirmwareStore.releases` 9.3 %; after: `ReleasesHandler.post` 44.6 %,
  `Announcer.reconcile` 42.6 %, paho reading 30.2 % (PUBACKs 13.5 %), the Home Assistant flush 13.1 %.
- Start-up, 2026-12-02 (spawn → `/healthz`, 1,000 devices, load ~2.5): the first tick published every
  device's Home Assistant state before any broker was connected (the connect publishes them all
  anyway): 0.84–2.0 → 0.36–0.45 s. `config/loader.py` reads YAML through libyaml (PyYAML's composer
  kept for the depth limit and line marks): `load_config` 0.28 → 0.05 s at 1,000 devices; an entry's
  id checked against a set rather than the list before it, and the redacted config built only for
  DEBUG logging: 5,000 devices 2.3–4.7 → 1.16–1.23 s (load ~3.4).
- Fan-out, 2026-12-02 (release to 1,000 devices through the API, old and new code alternating against
  one broker, 6-8 releases each; the machine was loaded, 3.6–7, so the server's CPU per release is the
  steadier figure): every announcement, Home Assistant state and download asked the store whether its
  cache was current with a `Path` join and stat (`FirmwareStore.releases`: 13 % of the server's time),
  now one `os.stat` on a ready string and, inside `FirmwareStore.steady()` (a pass over every device),
  once per image and pass; `Announcer` looked up each new attempt's id in SQLite and queried the
  device's newest attempt twice, and logged two lines per device (the announcement and the open attempt
  it superseded): one line per release now; `POST /api/releases` answers before it announces. Server
  CPU per release 0.74–0.90 → 0.41–0.48 s, last device 1.30–1.87 → 0.72–1.13 s at load 3.6–6.5, the
  release request itself 0.87–2.49 → 0.03–0.05 s; in-process (service only, no broker) the tick
  300–475 → 115–230 ms. Those A/B runs also had the entity states at QoS 0 (no PUBACK to read for
  each); alone, at load 1.5, it moved fan-out 0.471 → 0.456 s and CPU 0.56 → 0.50 s per release,
  within the noise, and ingestion not at all (7,539 and 9,634 msg/s at QoS 1, 7,379 and 7,429 at
  QoS 0), so it was dropped and the states stay at QoS 1.
- The bench itself, same day: at N=5,000 the threaded stdlib server's abandoned connections kept its
  threads busy (load 19-33) through tinyota's run after it, which completed 846 of 5,000 (1.583x); each
  run now first waits, at most 30 s, until every server is quiet: 5,000 of 5,000, 1.323x (nginx 1.178x).

Found by this bench, fixed after it: paho's own network thread (`loop_start()`) waits with `select()`,
which cannot watch a file descriptor numbered 1024 or above. Each open download holds two (socket and
image file). With 1,100 open downloads and new ones arriving while mosquitto restarted, `/healthz` said
`mqtt: disconnected` for 20 s and reconnected 11 s after the downloads closed; the same limit wedged
SimDevice (200 in one process, second wave). `tinyota_mqtt/mqtt/client.py` now runs its own network
thread on `selectors` (epoll); `tests/test_faults.py::test_mqtt_works_on_descriptors_above_1024`
keeps it so. bench/simfleet.py still runs 50 simulated devices per process."""


@dataclass(frozen=True)
class Target:
    key: str
    figure: str
    wanted: str
    measured: str
    value: Any
    met: bool | None


def _fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:{spec}}{suffix}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _check(value: Any, test: Callable[[Any], bool]) -> bool | None:
    return None if value is None else bool(test(value))


def targets(results: dict[str, Any], s: Settings) -> list[Target]:
    out: list[Target] = []

    def add(key: str, figure: str, wanted: str, value: Any, test: Callable[[Any], bool], shown: str) -> None:
        out.append(Target(key, figure, wanted, shown, value, _check(value, test)))

    slow = results.get("slow_fleet", {})
    n = max(s.slow_ns)
    slow_runs = slow.get("runs", [])

    def run_of(server: str, count: int) -> dict[str, Any]:
        return next((r for r in slow_runs if r["server"] == server and r["n"] == count), {})

    mine = run_of("tinyota", n)
    add("slow_complete", f"Slow fleet N={n}: all complete, right MD5", "yes", mine.get("all_ok"),
        lambda v: v is True, _fmt(mine.get("all_ok")))
    add("slow_ratio", f"Slow fleet N={n}: fleet time ÷ ideal", "≤ 1.05", mine.get("completion_ratio"),
        lambda v: v <= 1.05, _fmt(mine.get("completion_ratio"), ".3f"))
    add("slow_rss", f"Slow fleet N={n}: server peak RSS", "≤ 60 MB", mine.get("peak_rss_mb"),
        lambda v: v <= 60, _fmt(mine.get("peak_rss_mb"), ".0f", " MB"))
    # CPU per fleet update: what predicts a Raspberry Pi, where the cores are several times slower.
    for peer, wanted, limit in (("nginx", "≤ 2×", 2.0), ("stdlib-threaded", "≤ 1×", 1.0),
                                ("stdlib-single", "≤ 1×", 1.0)):
        theirs = run_of(peer, n).get("cpu_s")
        value = _ratio(mine.get("cpu_s"), theirs)
        shown = _fmt(value, ".2f", "×") + (f" ({mine['cpu_s']:.2f} s vs {theirs:.2f} s"
                                           f"{', projected' if run_of(peer, n).get('projected') else ''})"
                                           if value is not None else "")
        add(f"cpu_{peer.removeprefix('stdlib-')}",
            f"CPU per {n}-device {s.slow_size / MiB:g} MiB fleet update: tinyota ÷ {LABELS[peer]}", wanted,
            value, lambda v, limit=limit: v <= limit, shown)
    big = run_of("tinyota", s.large_n)
    add("large_complete", f"Slow fleet N={s.large_n} ({s.large_rate / 1024:g} KiB/s each): all complete, right MD5",
        "yes", big.get("all_ok"), lambda v: v is True, _fmt(big.get("all_ok")))
    add("large_ratio", f"Slow fleet N={s.large_n}: fleet time ÷ ideal", "≤ 1.10", big.get("completion_ratio"),
        lambda v: v <= 1.10, _fmt(big.get("completion_ratio"), ".3f"))

    c = s.headline_concurrency
    for cell in results.get("fast_clients", {}).get("cells", []):
        if cell["concurrency"] != c or cell["size"] != min(s.fast_sizes):
            continue
        size = f"{cell['size'] / MiB:g} MiB"
        for peer, key, wanted, limit in (("nginx", "fast_nginx", "≥ 0.8×", 0.8),
                                         ("stdlib-threaded", "fast_threaded", "≥ 1.2×", 1.2),
                                         ("stdlib-single", "fast_single", "≥ 1.2×", 1.2)):
            value = cell.get(f"tinyota_vs_{peer}")
            add(f"{key}_{cell['size']}", f"Fast clients {size}, c={c}: tinyota ÷ {LABELS[peer]}", wanted, value,
                lambda v, limit=limit: v >= limit, _fmt(value, ".2f", "×"))

    fan = results.get("fanout", {})
    add("fanout", f"Fan-out to {fan.get('devices', s.fanout_ns[0])} devices (median)", "≤ 0.3 s",
        fan.get("fanout_s"), lambda v: v <= 0.3, _fmt(fan.get("fanout_s"), ".3f", " s"))

    ing = results.get("ingestion", {})
    label = f"{ing.get('devices', s.ingest_devices)}×{ing.get('messages_each', s.ingest_messages)}"
    add("ingest_rate", f"Status ingestion {label}: processed", "≥ 10,000 msg/s", ing.get("rate_msg_s"),
        lambda v: v >= 10_000, _fmt(ing.get("rate_msg_s"), ",.0f", " msg/s"))
    drained = None if not ing else ing.get("lost") == 0 and ing.get("registry_complete") == ing.get("devices")
    add("ingest_backlog", f"Status ingestion {label}: backlog drained, nothing lost, registry complete", "yes",
        drained, lambda v: v is True,
        _fmt(drained) + (f" (backlog at stop {ing['backlog_at_stop']}, drained in {ing['drain_s']:.2f} s)"
                         if ing else ""))

    wave = results.get("wave", {})
    add("wave", f"Update wave of {wave.get('devices', s.wave_devices)}: release → all confirmed (median)",
        "≤ 10 s", wave.get("seconds"), lambda v: v <= 10.0 and wave.get("all_succeeded") is True,
        _fmt(wave.get("seconds"), ".2f", " s") + ("" if wave.get("all_succeeded", True) else " (not all succeeded)"))

    roll = results.get("rollout", {})
    add("rollout_after_halt", f"Rollout of {roll.get('devices', s.rollout_devices)} in 4 waves, 5 % of wave 2 "
        "failing: devices told after the halt threshold was crossed", "0", roll.get("told_after_threshold"),
        lambda v: v == 0 and roll.get("halted") is True and roll.get("later_waves_told") == 0,
        _fmt(roll.get("told_after_threshold"), "d", "") + ("" if roll.get("halted", True) else " (did not halt)"))

    foot: dict[str, Any] = next(
        (r for r in results.get("footprint", {}).get("servers", []) if r["server"] == "tinyota"), {})
    add("idle_rss", "Idle RSS", "≤ 60 MB", foot.get("idle_rss_mb"), lambda v: v <= 60,
        _fmt(foot.get("idle_rss_mb"), ".1f", " MB"))
    add("start", "Start time (to /healthz answering, median)", "≤ 1 s", foot.get("start_s"), lambda v: v <= 1.0,
        _fmt(foot.get("start_s"), ".3f", " s"))
    return out


# -- markdown -------------------------------------------------------------------------------------

def _why(key: str) -> str | None:
    # fast_nginx_1048576 → fast_nginx: the explanation is the same for every image size
    return WHY_MISSED.get(key) or WHY_MISSED.get(key.rsplit("_", 1)[0])


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict[str, Any], s: Settings, marks: list[Target]) -> str:
    m = results["machine"]
    parts = [
        "# TinyOTA-MQTT benchmark results",
        "",
        f"{'**Quick run** (CI smoke test): figures come from tiny fleets and are not comparable with the targets.' if s.quick else 'Full run.'}"  # noqa: E501
        f" Generated by `python -m bench{' --quick' if s.quick else ''}` on {m['date']}.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"load average at start {m['load_average_at_start']}. Python {m['python']}, Tornado {m['tornado']}, "
        f"paho-mqtt {m['paho_mqtt']}, nginx {m['nginx']}, mosquitto {m['mosquitto']}. "
        "The machine is shared and noisy: compare the ratios and the peers measured in the same run, "
        "not a lone absolute time. Clients and servers share the same cores.",
        "",
        "## Targets",
        "",
        _table(["figure", "target", "measured", "met"],
               [[t.figure, t.wanted, t.measured, {True: "✅", False: "❌", None: "–"}[t.met]] for t in marks]),
    ]
    missed = [(t, _why(t.key)) for t in marks if t.met is False]
    if missed and not s.quick:  # a quick run's misses say nothing about the server
        parts += ["", "Missed, and why:", ""] + [f"- **{t.figure}**: {why or 'not analysed yet.'}" for t, why in missed]
    parts += ["", "## What the bench changed, and what it found", "", FINDINGS]
    for name, render in (("slow_fleet", _slow), ("fast_clients", _fast), ("fanout", _fanout),
                         ("ingestion", _ingestion), ("wave", _wave), ("rollout", _rollout),
                         ("footprint", _footprint)):
        data = results.get(name)
        if data is None:
            continue
        parts += ["", render(data) if "error" not in data else f"## {name}\n\nfailed: `{data['error']}`"]
    if any(isinstance(results.get(name), dict) and "cpu" in results[name] for name in results):
        parts += ["", _cpu(results)]
    parts += ["", "## Method", "", METHOD]
    return "\n".join(parts) + "\n"


def _slow(d: dict[str, Any]) -> str:
    rows = []
    for r in sorted(d["runs"], key=lambda r: (r["n"], PEER_ORDER.index(r["server"]))):
        name = LABELS[r["server"]] + (f" — projected from {r['measured_with']} measured" if r.get("projected") else "")
        rate = r.get("rate_bytes_s", d["rate_bytes_s"])
        clients = r.get("client_cpu_s")
        rows.append([str(r["n"]), f"{rate / 1024:g} KiB/s", name, _fmt(r["all_ok"]),
                     _fmt(r["completion_ratio"], ".3f", "×"),
                     _fmt(r["ttfb_p50_s"], ".3f", " s"), _fmt(r["ttfb_p99_s"], ".3f", " s"),
                     _fmt(r.get("slowest_transfer_ratio"), ".3f", "×"), _fmt(r["peak_rss_mb"], ".0f", " MB"),
                     _fmt(r.get("cpu_s"), ".2f", " s"),
                     "–" if clients is None else f"{clients:.1f} s ({r.get('client_processes', 1)} proc.)",
                     _fmt((r.get("load_average") or [None])[0], ".2f")])
    large = ""
    if "large_n" in d:
        large = (f" The N={d['large_n']} fleet reads at {d['large_rate_bytes_s'] / 1024:g} KiB/s each (ideal: "
                 f"{d['large_ideal_s']:.2f} s), on servers of its own set up for {d['large_n']} devices, so that "
                 "the loopback carries what it carries for N=1000 at 100 KiB/s (about 100 MB/s): the bench's "
                 "clients spend ~7 ms of CPU per MiB they receive (loopback TCP, MD5, the pacing), and 5000 "
                 "devices at 100 KiB/s would need more than this machine's two cores for the clients alone; "
                 "the run would measure them instead of the servers. Its clients may run in several "
                 "processes (settings.py; on these two cores one did as well as two), and a device still "
                 "downloading after the fleet's time limit counts as failed.")
    return (f"## 1. Slow fleet\n\n{d['image_bytes'] / MiB:g} MiB image, every device reading at "
            f"{d['rate_bytes_s'] / 1024:g} KiB/s (ideal: {d['ideal_s']:.2f} s), all N at once.{large}\n\n"
            + _table(["N", "per device", "server", "all complete, MD5 ok", "fleet time ÷ ideal", "TTFB p50",
                      "TTFB p99", "slowest transfer ÷ ideal", "peak RSS", "server CPU", "clients' CPU",
                      "load (1 min)"], rows)
            + "\n\nFleet time runs from the moment all N devices start until the last one has processed its "
            "last chunk. The slowest transfer is one device's time from its first byte to its last, ÷ ideal: "
            "how well the server streams once a device is in, apart from how long it waited to get in. "
            "Server CPU is user + system time of every process and thread of the server during the run "
            "(nginx: master and worker), from /proc; the one-thread server's is its probe's per device, "
            "times N. The clients' CPU is the bench's own, for all N devices: when it nears the run's "
            "length × the cores left over, the clients, not the server, set the pace."
            + "\n\n![fleet completion vs N](slow_fleet.png)")


def _cpu(results: dict[str, Any]) -> str:
    rows = []
    for name in ("slow_fleet", "fast_clients", "fanout", "ingestion", "wave", "rollout", "footprint"):
        cpu = (results.get(name) or {}).get("cpu")
        if not cpu:
            continue
        servers = "; ".join(f"{LABELS.get(k, k)} {v:.1f} s" for k, v in
                            sorted(cpu["servers"].items(), key=lambda kv: PEER_ORDER.index(kv[0])
                                   if kv[0] in PEER_ORDER else 99))
        rows.append([name, servers or "–", f"{cpu['mosquitto']:.1f} s", f"{cpu['bench_clients']:.1f} s"])
    return ("## CPU by scenario\n\nUser + system seconds over each server's whole life in the scenario "
            "(start, warm-up and measurement; the scenarios' own tables give the measured part), the "
            "broker's, and the bench process's own (its clients; child processes not included).\n\n"
            + _table(["scenario", "servers", "mosquitto", "bench clients"], rows))


def _fast(d: dict[str, Any]) -> str:
    servers = [p for p in PEER_ORDER if p in d["servers"]]
    rows = []
    for cell in d["cells"]:
        row = [f"{cell['size'] / MiB:g} MiB", str(cell["concurrency"])]
        row += [f"{cell[p]['mb_s']:.0f} MB/s · {cell[p]['req_s']:.0f} req/s"
                + (f" · {cell[p]['cpu_ms']:.2f} ms CPU/req" if cell[p].get("cpu_ms") is not None else "")
                for p in servers]
        row += [_fmt(cell.get(f"tinyota_vs_{peer}"), ".2f", "×") for peer in PEER_ORDER[1:]]
        row.append(_fmt(cell["all_ok"]))
        rows.append(row)
    rounds = 1 + max((r["round"] for r in d["runs"]), default=0)
    return ("## 2. Fast clients\n\nMedian of " + str(rounds) + " interleaved rounds; the ratios are tinyota ÷ peer "
            "within each round, median over rounds.\n\n"
            + _table(["image", "concurrency", *[LABELS[p] for p in servers], "tinyota ÷ nginx",
                      "tinyota ÷ threaded", "tinyota ÷ 1 thread", "all ok"], rows)
            + "\n\n![throughput by concurrency](fast_clients.png)")


def _fanout(d: dict[str, Any]) -> str:
    sizes = d.get("sizes") or [d]  # results from before 5,000 devices were added have one size
    rows = [[str(size["devices"]), str(i + 1),
             *(_fmt(r[k], ".3f", " s") for k in ("fanout_s", "p50_s", "post_s", "floor_s")),
             _fmt(r["peak_rss_mb"], ".0f", " MB")] for size in sizes for i, r in enumerate(size["reps"])]
    medians = "; ".join(f"{size['devices']} devices: **{size['fanout_s']:.3f} s** to the last device, "
                        f"{_fmt(size['vs_floor'], '.1f', '×')} the broker floor ({size['floor_s']:.3f} s)"
                        for size in sizes)
    return ("## 3. Announcement fan-out\n\nA release to an auto-update group, each device a lightweight MQTT "
            f"subscriber; the broker floor is the same number of retained QoS 1 messages published straight by "
            f"one client. Median: {medians}.\n\n"
            + _table(["devices", "round", "last device", "median device", "release request", "broker floor",
                      "server peak RSS"], rows))


def _ingestion(d: dict[str, Any]) -> str:
    f = d["floor"]
    rows = [
        ["tinyota (processed into the registry)", _fmt(d["rate_msg_s"], ",.0f"), f"{d['send_s']:.2f} s",
         str(d["backlog_at_stop"]), f"{d['drain_s']:.2f} s", str(d["lost"]),
         f"{d['registry_complete']}/{d['devices']}", _fmt(d["peak_rss_mb"], ".0f", " MB")],
        ["broker floor (a subscriber, no server)", _fmt(f["rate_msg_s"], ",.0f"), f"{f['send_s']:.2f} s",
         str(f["backlog_at_stop"]), f"{f['drain_s']:.2f} s", str(f["lost"]), "–", "–"],
    ]
    return (f"## 4. Status ingestion\n\n{d['devices']} devices × {d['messages_each']} progress reports "
            f"({d['messages']} messages), sent as fast as the devices can. tinyota reaches "
            f"{_fmt(d['vs_floor'], '.2f', '×')} the broker floor. The backlog is counted end to end (device → "
            "broker → tinyota → broker → observer): how many reports had not come back through the server "
            "when the last device stopped sending.\n\n"
            + _table(["", "msg/s", "sending took", "backlog when senders stopped", "drained after", "lost",
                      "registry complete", "server peak RSS"], rows))


def _wave(d: dict[str, Any]) -> str:
    rows = [[r["version"], f"{r['seconds']:.2f} s", f"{r['succeeded']}/{d['devices']}",
             _fmt(r["peak_rss_mb"], ".0f", " MB")] for r in d["reps"]]
    return (f"## 5. Update wave\n\n{d['devices']} simulated devices (the project's SimDevice: paho + http.client, "
            f"as fast as they can), {d['image_bytes'] / MiB:g} MiB image: release → every attempt confirmed "
            f"succeeded. Median **{d['seconds']:.2f} s**.\n\n"
            + _table(["release", "release → all confirmed", "attempts succeeded", "server peak RSS"], rows))


def _rollout(d: dict[str, Any]) -> str:
    rows = [
        ["clean: release → completed", _fmt(d["clean_seconds"], ".2f", " s")],
        ["clean: duration ÷ sum of soak times", f"{d['clean_over_soak']:.2f} (soak {d['soak_seconds']:g} s)"],
        ["broken: release → halted", _fmt(d["release_to_halt_s"], ".2f", " s")],
        ["broken: threshold met (by the devices' reports) → halted", _fmt(d["threshold_to_halt_s"], ".2f", " s")],
        ["broken: devices told after the threshold", str(d["told_after_threshold"])],
        ["broken: devices of waves 3–4 told", str(d["later_waves_told"])],
    ]
    return (f"## 7. Staged rollout\n\n{d['devices']} simulated devices (SimDevice) in waves of "
            f"{', '.join(map(str, d['waves']))}, policy `{d['policy']}`, {d['image_bytes'] / MiB:g} MiB image. "
            f"A clean release, then one that {d['failing']} devices of wave 2 fail. Halt reason: "
            f"{d['halt_reason']}\n\n" + _table(["figure", "value"], rows))


def _footprint(d: dict[str, Any]) -> str:
    rows = [[LABELS[r["server"]], _fmt(r["start_s"], ".3f", " s"), _fmt(r["idle_rss_mb"], ".1f", " MB"),
             f"{_fmt(r['rss_open_mb'], '.1f', ' MB')} ({r['open_downloads']} open)",
             _fmt(r["kib_per_download"], ".0f", " KiB")] for r in d["servers"]]
    larger = d.get("larger")
    if larger:
        rows.append([f"{LABELS[larger['server']]}, {larger['devices']}-device config",
                     _fmt(larger["start_s"], ".3f", " s"), _fmt(larger["idle_rss_mb"], ".1f", " MB"), "–", "–"])
    return (f"## 6. Footprint\n\nConfig with {d['devices']} devices"
            + (f" (and tinyota's with {larger['devices']})" if larger else "")
            + f". Start = spawn → first HTTP answer (median); a bare `python -c pass` takes "
            f"{d['python_start_s']:.3f} s here.\n\n"
            + _table(["server", "start", "idle RSS", "RSS with open downloads", "per open download"], rows))


METHOD = """\
- Every server runs as its own process on 127.0.0.1 and serves the same file (tinyota's store blob) at the
  same path to the same device accounts (Basic Auth, one account per device). tinyota runs as
  `python -m tinyota_mqtt serve -c <generated config>` with access log and Home Assistant on, connected to
  a mosquitto the bench starts (mosquitto defaults). nginx: Debian package, one worker, sendfile on,
  auth_basic with an {SSHA} htpasswd, access log on. stdlib: bench/stdlib_server.py, 8 KiB copy loop,
  default request log; listen queue 128 like Tornado's, not socketserver's 5.
- Clients (bench/clients.py, one asyncio process for every server) send what ESP8266httpUpdate sends:
  HTTP/1.0, `Connection: close`, Basic Auth and the x-ESP8266-* headers. Slow devices open their socket
  with an 8 KiB receive buffer and lwIP's 1460-byte MSS (with loopback's 64 KiB segments the server's send
  buffer would swallow a whole image and never feel the device), and spend len/rate seconds on each chunk
  before reading on; a stall is never made up. Fast clients read with a BufferedProtocol into one reused
  buffer; above ~1.5 GB/s that one client, not nginx, is the limit.
- MQTT devices are lightweight asyncio connections (bench/mqttlite.py); the update wave uses the
  project's SimDevice, 50 per child process. No figure depends on anything added to the server: fan-out
  is seen by the devices, ingestion and the wave by the Home Assistant state the server publishes, the
  registry by reading its SQLite file.
- RSS is sampled every 100 ms with psutil (nginx: master + worker); CPU seconds (user +
  system, all threads and child processes) are read with psutil from /proc before and after each measured
  run, in 10 ms ticks. nginx listens with `backlog=4096` (the kernel's somaxconn here), as tinyota does for
  its `max_connections`. Listen-queue overflows were checked with `nstat` while developing the bench, not
  in the run."""


# -- plots ----------------------------------------------------------------------------------------

def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fast = results.get("fast_clients")
    if fast and "cells" in fast:
        sizes = sorted({c["size"] for c in fast["cells"]})
        fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4), squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            cells = sorted((c for c in fast["cells"] if c["size"] == size), key=lambda c: c["concurrency"])
            xs = [c["concurrency"] for c in cells]
            for server in (p for p in PEER_ORDER if p in fast["servers"]):
                ax.plot(xs, [c[server]["mb_s"] for c in cells], marker="o", label=LABELS[server])
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_title(f"{size / MiB:g} MiB image, Connection: close")
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel("MB/s (median)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        made.append(out / "fast_clients.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    slow = results.get("slow_fleet")
    if slow and "runs" in slow:
        # Left: the servers that stream, on a linear scale where 1.10 is visible. Right: the same with
        # the one-thread server, which needs a log scale (it serves the fleet one device at a time).
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        ns = sorted({r["n"] for r in slow["runs"]})
        for ax, servers in ((axes[0], PEER_ORDER[:3]), (axes[1], PEER_ORDER)):
            for server in servers:
                rows = sorted((r for r in slow["runs"] if r["server"] == server), key=lambda r: r["n"])
                if not rows:
                    continue
                projected = any(r.get("projected") for r in rows)
                ax.plot([r["n"] for r in rows], [r["completion_ratio"] for r in rows], marker="o",
                        linestyle="--" if projected else "-",
                        label=LABELS[server] + (" (projected)" if projected else ""))
            ax.axhline(1.05, color="grey", linewidth=0.8, linestyle=":", label="target 1.05× ideal (N=5000: 1.10×)")
            ax.set_xscale("log")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.minorticks_off()
            ax.set_xlabel("devices at once (N)")
            ax.set_ylabel("fleet completion ÷ ideal")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        axes[1].set_yscale("log")
        each = f"{slow['image_bytes'] / MiB:g} MiB at {slow['rate_bytes_s'] / 1024:g} KiB/s each"
        axes[0].set_title(f"Slow fleet: {each}")
        axes[1].set_title("… and the one-thread stdlib server (log scale)")
        fig.tight_layout()
        made.append(out / "slow_fleet.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    return made


def write(results: dict[str, Any], s: Settings, out: Path) -> list[Target]:
    out.mkdir(parents=True, exist_ok=True)
    marks = targets(results, s)
    results = {**results, "targets": [asdict(t) for t in marks]}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(results, s, marks))
    plots(results, out)
    return marks
