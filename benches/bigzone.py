#!/usr/bin/env python3
"""Large zones: memory, load time and reload cost of gtmd against Knot DNS and NSD.

Generates a zone of N records (one per owner name: 60% A, 20% AAAA, 10% TXT, 5% MX, 5% CNAME,
as a host zone looks) and, for each server in turn (interleaved over rounds):
  - load: the time from start until the zone's last name answers;
  - RSS after load (NSD's several processes as PSS, so shared pages count once);
  - reload: the wall time of one blocking reload of the changed zone (`gtmd ctl reload`,
    `knotc -b zone-reload`, `nsd-control reload`), the median of RELOADS reloads;
  - RSS after RELOADS reloads, and its ratio to the RSS after the first load.
Each server runs pinned to CPU 0 and alone.

Usage (as root on Debian, with knot and nsd installed):
    python3 benches/bigzone.py --records 100000 [--rounds 3] [--reloads 20] [--servers gtmd,knot,nsd]
    python3 benches/bigzone.py --generate 1000000 --out /tmp/big.test.zone   # the zone only
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benches"))
from dnsperf import free_port, tree  # noqa: E402  (the same helpers as the query benchmark)
ORIGIN = "big.test."


def generate(path, records, serial=1):
    """A zone of `records` records, one per owner name, plus the apex's SOA, NS and glue."""
    with open(path, "w") as z:
        z.write(f"$ORIGIN {ORIGIN}\n$TTL 300\n@ IN SOA ns1 hostmaster {serial} 7200 3600 1209600 300\n"
                f'@ IN NS ns1\nns1 IN A 192.0.2.1\nmarker IN TXT "{serial}"\n')
        for i in range(records):
            k = i % 20
            if k < 12:
                z.write(f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n")
            elif k < 16:
                z.write(f"h{i} IN AAAA 2001:db8::{i >> 16 & 0xffff:x}:{i & 0xffff:x}\n")
            elif k < 18:
                z.write(f'h{i} IN TXT "v=spf1 ip4:10.{i >> 16 & 255}.{i >> 8 & 255}.0/24 -all"\n')
            elif k < 19:
                z.write(f"h{i} IN MX 10 h{i - 1}\n")
            else:
                z.write(f"h{i} IN CNAME h{i - 1}\n")


def set_serial(path, serial):
    """The zone with a new SOA serial and the marker's TXT set to it."""
    text = Path(path).read_text()
    head, rest = text.split("\n@ IN SOA ns1 hostmaster ", 1)
    rest = rest.split(" ", 1)[1]
    a, b = rest.split('\nmarker IN TXT "', 1)
    b = b.split('"', 1)[1]
    Path(path).write_text(f'{head}\n@ IN SOA ns1 hostmaster {serial} {a}\nmarker IN TXT "{serial}"{b}')


def memory_mb(pid):
    """The process tree's proportional set size (PSS: RSS with shared pages split), MB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def answers(port, name):
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", "+short", name],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() != ""


def marker(port):
    """The marker's TXT: the generation of the zone served (gtmd keeps its own SOA serials)."""
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", "+short",
                        "marker." + ORIGIN, "TXT"], capture_output=True, text=True)
    return r.stdout.strip().strip('"')


class Server:
    def __init__(self, kind, work, zone, gtmd_bin):
        self.kind, self.port = kind, free_port()
        self.dir = work / kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.zone = self.dir / "big.test.zone"
        shutil.copy(zone, self.zone)
        d, port = self.dir, self.port
        if kind == "gtmd":
            self.admin = free_port()
            (d / "gtmd.toml").write_text(
                f'[server]\nlisten = ["127.0.0.1:{port}"]\nzones_dir = "."\n'
                f'[admin]\nlisten = "127.0.0.1:{self.admin}"\n')
            self.argv = [str(gtmd_bin), "--config", str(d / "gtmd.toml")]
            self.reload_argv = [str(gtmd_bin), "ctl", "--admin", f"127.0.0.1:{self.admin}", "reload"]
        elif kind == "knot":
            (d / "knot.conf").write_text(
                f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    udp-workers: 1\n    tcp-workers: 1\n"
                f"    background-workers: 1\ndatabase:\n    storage: {d}\n"
                f"template:\n  - id: default\n    journal-content: none\n    zonefile-sync: -1\n"
                f"zone:\n  - domain: {ORIGIN}\n    file: {self.zone}\n    storage: {d}\n")
            self.argv = ["knotd", "-c", str(d / "knot.conf")]
            self.reload_argv = ["knotc", "-c", str(d / "knot.conf"), "-b", "zone-reload", ORIGIN]
        elif kind == "nsd":
            (d / "nsd.conf").write_text(
                f"server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    zonesdir: \"{d}\"\n"
                f"    pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n"
                f"    zonelistfile: \"{d}/zone.list\"\n    server-count: 1\n    hide-version: yes\n"
                f"remote-control:\n    control-enable: yes\n    control-interface: {d}/nsd.sock\n"
                f"zone:\n    name: {ORIGIN}\n    zonefile: big.test.zone\n")
            self.argv = ["nsd", "-d", "-c", str(d / "nsd.conf")]
            self.reload_argv = ["nsd-control", "-c", str(d / "nsd.conf"), "reload", ORIGIN]
        self.proc = None

    def start(self, last_name, limit=600):
        t0 = time.time()
        self.proc = subprocess.Popen(["taskset", "-c", "0", *self.argv], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log", "w"), start_new_session=True)
        while time.time() - t0 < limit:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} exited; see {self.dir / 'log'}")
            if answers(self.port, last_name):
                return time.time() - t0
            time.sleep(0.05)
        raise SystemExit(f"{self.kind} never answered {last_name}")

    def reload(self, new_serial, limit=600):
        """Wall time from the reload command until the new zone is served."""
        set_serial(self.zone, new_serial)
        t0 = time.time()
        subprocess.run(self.reload_argv, check=True, capture_output=True, timeout=limit)
        while time.time() - t0 < limit and marker(self.port) != str(new_serial):
            time.sleep(0.01)
        return time.time() - t0

    def stop(self):
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None


def run(args):
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    gtmd_bin = Path(os.environ.get("GTMD_BIN", REPO / "target/release/gtmd"))
    work = Path(tempfile.mkdtemp(prefix="gtmd-bigzone-"))
    zone = work / "big.test.zone"
    generate(zone, args.records)
    size = zone.stat().st_size / 1e6
    last = f"h{args.records - 20}.{ORIGIN}"  # an A record near the end
    results = {k: [] for k in args.servers}
    try:
        for rnd in range(args.rounds):
            for kind in args.servers:
                s = Server(kind, work / f"r{rnd}", zone, gtmd_bin)
                try:
                    load = s.start(last)
                    time.sleep(1)
                    first = memory_mb(s.proc.pid)
                    times = [s.reload(2 + i) for i in range(args.reloads)]
                    time.sleep(1)
                    after = memory_mb(s.proc.pid)
                finally:
                    s.stop()
                r = {"load": load, "mem": first, "reload": statistics.median(times) if times else 0,
                     "after": after}
                results[kind].append(r)
                print(f"round {rnd + 1} {kind:5} load {load:6.2f} s  memory {first:7.1f} MB  reload "
                      f"{r['reload']:6.2f} s  after {args.reloads} reloads {after:7.1f} MB", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(k, key):
        return statistics.median(r[key] for r in results[k])

    ref = "knot" if "knot" in results else None
    print(f"\n{args.records} records ({size:.1f} MB of zone file), {args.rounds} rounds, {args.reloads} reloads "
          "each; medians over rounds; memory is PSS (RSS with shared pages split)")
    print("| server | load s | memory MB | vs Knot | reload s | vs Knot | memory after reloads MB | after / first |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in args.servers:
        vm = f"{med(k, 'mem') / med(ref, 'mem'):.2f}x" if ref else "-"
        vr = f"{med(k, 'reload') / med(ref, 'reload'):.2f}x" if ref and args.reloads else "-"
        print(f"| {k} | {med(k, 'load'):.2f} | {med(k, 'mem'):.1f} | {vm} | {med(k, 'reload'):.2f} | {vr} | "
              f"{med(k, 'after'):.1f} | {statistics.median(r['after'] / r['mem'] for r in results[k]):.2f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--servers", default="gtmd,knot,nsd")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--generate", type=int, help="only write a zone of this many records to --out")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.generate:
        generate(args.out or Path("big.test.zone"), args.generate)
        return
    args.servers = args.servers.split(",")
    run(args)


if __name__ == "__main__":
    main()
