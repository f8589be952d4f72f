#!/usr/bin/env python3
"""etcd writes of a gtmd cluster: 3 instances x 1,000 members with 1% of them flapping.

Starts one etcd on loopback and three gtmd instances (built with --features cluster) that
share one configuration: 1,000 members checked by TCP connect with the default check
(interval 1 s, fall 3, rise 2, no damping). 990 members probe benches/backend.c, always up;
10 probe a port this script opens and closes in turn (down for --down seconds, up for --up
seconds), so they flap as fast as those periods let the hysteresis follow. After a warm-up
the script reads, over --minutes, each instance's gtmd_cluster_writes_total{kind} and
etcd's own revision (one per transaction) and prints them per minute.

Usage (as root on Debian; installs etcd-server, protobuf-compiler and gcc with apt if
missing; builds gtmd with the cluster feature):
    python3 benches/cluster_writes.py [--minutes 2] [--down 4] [--up 4]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEMBERS = 1000
FLAPPING = 10


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ensure_tools():
    need = [p for p, b in [("etcd-server", "etcd"), ("protobuf-compiler", "protoc"), ("gcc", "cc")]
            if not shutil.which(b)]
    if need:
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=True)


def metric(admin, name):
    """The samples of `name` at `admin`'s /metrics, by label text."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


def etcd_revision(client):
    r = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{client}/v3/kv/range", data=json.dumps({"key": "AA=="}).encode(),
        headers={"content-type": "application/json"}), timeout=5)
    return int(json.loads(r.read())["header"]["revision"])


def flapper(port, down, up, stop):
    """Listens on `port` for `up` seconds, then closes it for `down` seconds, until stopped."""
    while not stop.is_set():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(256)
        s.settimeout(0.05)
        end = time.time() + up
        while time.time() < end and not stop.is_set():
            try:
                c, _ = s.accept()
                c.close()
            except OSError:
                pass
        s.close()
        stop.wait(down)


def config(tmp, id_, etcd, dns, admin, stable, flap):
    members = []
    for i in range(MEMBERS):
        port = flap if i < FLAPPING else stable
        members.append(f'  {{ address = "10.{i // 250}.{i % 250}.1", name = "m{i}", '
                       f'probe_address = "127.0.0.1", probe_port = {port} }},')
    text = f"""[cluster]
endpoints = ["http://127.0.0.1:{etcd}"]
name = "bench"
id = "{id_}"
[server]
listen = ["127.0.0.1:{dns}"]
zones_dir = "{REPO / 'zones'}"
[admin]
listen = "127.0.0.1:{admin}"
[checks.tcp]
type = "tcp"
port = {stable}
[pools.big]
check = "tcp"
members = [
{chr(10).join(members)}
]
[names."app.example.test."]
pools = ["big"]
"""
    path = Path(tmp) / f"{id_}.toml"
    path.write_text(text)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--down", type=float, default=4)
    ap.add_argument("--up", type=float, default=4)
    args = ap.parse_args()
    ensure_tools()
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "-q"], cwd=REPO, check=True)
    gtmd = REPO / "target/release/gtmd"
    procs = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            backend = Path(tmp) / "backend"
            subprocess.run(["cc", "-O2", "-o", backend, REPO / "benches/backend.c"], check=True)
            stable, flap, client, peer = free_port(), free_port(), free_port(), free_port()
            procs.append(subprocess.Popen([backend, "127.0.0.1", str(stable)]))
            procs.append(subprocess.Popen(
                ["etcd", "--name", "b", "--data-dir", f"{tmp}/etcd",
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", f"b=http://127.0.0.1:{peer}", "--log-level", "error"],
                stderr=open(Path(tmp) / "etcd.log", "w")))
            threading.Thread(target=flapper, args=(flap, args.down, args.up, stop), daemon=True).start()
            admins = []
            for id_ in ["a", "b", "c"]:
                admin = free_port()
                cfg = config(tmp, id_, client, free_port(), admin, stable, flap)
                log = open(Path(tmp) / f"{id_}.log", "w")
                procs.append(subprocess.Popen([gtmd, "--config", cfg], stderr=log))
                admins.append(admin)
            time.sleep(15)  # first rounds, registration, and the first flaps
            start = [metric(a, "gtmd_cluster_writes_total") for a in admins]
            rev0, t0 = etcd_revision(client), time.time()
            time.sleep(args.minutes * 60)
            end = [metric(a, "gtmd_cluster_writes_total") for a in admins]
            rev1, minutes = etcd_revision(client), (time.time() - t0) / 60
            kinds = {}
            for s, e in zip(start, end):
                for k, v in e.items():
                    kinds[k] = kinds.get(k, 0) + v - s.get(k, 0)
            print(f"3 instances x {MEMBERS} members, {FLAPPING} flapping "
                  f"(down {args.down:g} s, up {args.up:g} s), default check (1 s, fall 3, rise 2), "
                  f"{minutes:.2f} min:")
            for k, v in sorted(kinds.items()):
                print(f"  keys written{k}: {v:.0f} ({v / minutes:.0f} a minute)")
            print(f"  etcd transactions (revisions): {rev1 - rev0} ({(rev1 - rev0) / minutes:.0f} a minute)")
        finally:
            stop.set()
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
