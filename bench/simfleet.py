"""A fleet of the project's own simulated devices (``SimDevice``) in a process of their own.

SimDevice speaks the whole device contract with paho and http.client threads, exactly as the
demo and ``tinyota simulate`` use it. Its threads would compete with the bench's measuring loop
for one GIL, so they live in child processes; the bench watches the outcome over MQTT.

At most ``PER_PROCESS`` devices share a process: paho waits on its sockets with select(), which
cannot watch a file descriptor numbered 1024 or more, and each simulated reboot opens a new paho
client (a socket and a socketpair) while the old one waits for the garbage collector. With 200
devices in one process the numbers passed 1024 on the second wave and those devices could never
reconnect (select raises ValueError, paho calls it a lost connection and retries forever).

    python -m bench.simfleet --broker mqtt://127.0.0.1:1883 --prefix wave --first 0 --count 50

Prints ``ready`` once every device is connected, and stops its devices when stdin closes. A line
``fail ID,ID`` on stdin makes those devices fail every later update (``SimSettings.fail``, as
``tinyota simulate --fail`` does) and is answered ``ok``: the rollout bench breaks a release this way.
"""

from __future__ import annotations

import argparse
import gc
import logging
import select
import sys
import time

from bench.peers import fleet
from tinyota_mqtt.mqtt.simulator import SimDevice, SimSettings

PER_PROCESS = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first device in the bench's fleet")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sims = [SimDevice(SimSettings(device_id=d.id, password=d.password, broker=args.broker, version=args.version,
                                  prefix=args.prefix))
            for d in fleet(args.first + args.count)[args.first:]]
    for sim in sims:
        sim.start()
    deadline = time.monotonic() + 60
    while not all(sim._link.up for sim in sims):
        if time.monotonic() > deadline:
            sys.exit("simulated devices did not all connect within 60 s")
        time.sleep(0.05)
    print("ready", flush=True)
    by_id = {sim.s.device_id: sim for sim in sims}
    while True:  # until the bench closes our stdin
        if not select.select([sys.stdin], [], [], 1.0)[0]:
            gc.collect()  # rebooted devices' old paho clients hold sockets until collected
            continue
        line = sys.stdin.readline()
        if not line:
            break
        if line.startswith("fail "):
            for device in line.split(None, 1)[1].strip().split(","):
                if device in by_id:
                    by_id[device].s.fail = True
            print("ok", flush=True)
    for sim in sims:
        sim.stop()


if __name__ == "__main__":
    main()
