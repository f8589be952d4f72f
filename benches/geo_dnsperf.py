#!/usr/bin/env python3
"""Rules by place against rules by subnet, measured with dnsperf: CPU per answer of gtmd
serving one topology name steered by a country database, against the same name steered by
subnet rules.

- "gtmd-geo": a country database of 20,000 networks (IPv4 /16 to /24 and IPv6, 200
  countries, written by MaxMind's own writer) and 200 country rules, one per country, each
  sending its clients to one of 4 pools;
- "gtmd-subnet": 500 subnet rules (random /16 to /24), each to one of the 4 pools.
Both answer `app.example.test A` to queries carrying an EDNS client subnet spread over
10,000 random IPv4 /24s (a binary query file, dnsperf -B), so that each query looks up
another part of the client table. gtmd runs pinned to CPU 0 and dnsperf to CPU 1, the two
measured interleaved for several rounds; the median CPU per answer of each, and the ratio.

Usage (Debian; needs dnsperf, dig, perl and libmaxmind-db-writer-perl):
    python3 benches/geo_dnsperf.py [--rounds 5] [--seconds 10] [--rate 40000]
    python3 benches/geo_dnsperf.py --write-db 100000 geo.mmdb   # only the database
"""

import argparse
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dnsperf as bench  # noqa: E402

REPO = bench.REPO
POOLS = 4


def database(work, r, count=20_000, out=None):
    """Writes a country database of `count` networks (3 in 4 IPv4 /16 to /24, the rest IPv6
    /32 to /48, 200 countries) with MaxMind's writer; its path."""
    out = out or work / "geo.mmdb"
    nets = []
    for i in range(count):
        c = {"country": {"iso_code": "C%03d" % r.randrange(200)}}
        if i % 4:
            ln = r.randrange(16, 25)
            a = (r.randrange(1, 224) << 24 | r.getrandbits(24)) >> (32 - ln) << (32 - ln)
            nets.append(["%d.%d.%d.%d/%d" % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255, ln), c])
        else:
            ln = r.randrange(32, 49)
            a = (0x2001 << 112 | r.getrandbits(112)) >> (128 - ln) << (128 - ln)
            h = "%032x" % a
            nets.append([":".join(h[k:k + 4] for k in range(0, 32, 4)) + "/%d" % ln, c])
    (work / "nets.json").write_text(json.dumps(nets))
    bench.sh(["perl", str(REPO / "dist/examples/geo/write-db.pl"), str(work / "nets.json"),
              str(out), "Bench-Country"])
    return out


def config(d, port, backends, rules, geo=None):
    pools = "".join(
        f'[pools.p{i}]\ncheck = "web"\nmembers = [{{ address = "192.0.2.{i + 1}", '
        f'probe_address = "127.0.0.{2 + i % 2}", probe_port = {backends.port} }}]\n'
        for i in range(POOLS))
    names = ", ".join(f'"p{i}"' for i in range(POOLS))
    (d / "gtmd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\nzones_dir = "."\n[admin]\nlisten = "127.0.0.1:0"\n'
        + (f'[geo]\ndatabases = ["{geo}"]\n' if geo else "")
        + f'[checks.web]\ntype = "http"\npath = "/"\ninterval = "1s"\ntimeout = "500ms"\n{pools}'
        f'[names."app.example.test."]\npools = [{names}]\npolicy = "topology"\nttl = 30\n{rules}')


def rule(keys, pool):
    return f'[[names."app.example.test.".topology]]\n{keys}\norder = ["p{pool}"]\n'


def query_file(work, r):
    """10,000 `app.example.test A` queries, each with ECS of another random IPv4 /24, in
    dnsperf's binary (TCP stream) form."""
    qname = b"".join(bytes([len(p)]) + p for p in b"app.example.test".split(b".")) + b"\0"
    out = bytearray()
    for i in range(10_000):
        a = r.randrange(1, 224) << 24 | r.getrandbits(24)
        ecs = struct.pack("!HBB", 1, 24, 0) + struct.pack("!I", a)[:3]
        opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 4 + len(ecs)) + struct.pack("!HH", 8, len(ecs)) + ecs
        m = struct.pack("!HHHHHH", i & 0xFFFF, 0, 1, 0, 0, 1) + qname + struct.pack("!HH", 1, 1) + opt
        out += struct.pack("!H", len(m)) + m
    f = work / "queries.bin"
    f.write_bytes(bytes(out))
    return f


def servers(work, backends, gtmd_bin, r):
    geo = database(work, r)
    s = {}
    d = bench.zone_with(work, "gtmd-geo", "")
    port = bench.free_port()
    config(d, port, backends, "".join(rule(f'country = ["C{c:03d}"]', c % POOLS) for c in range(200)), geo)
    s["gtmd-geo"] = ([str(gtmd_bin), "--config", str(d / "gtmd.toml")], port)
    d = bench.zone_with(work, "gtmd-subnet", "")
    port = bench.free_port()
    rules = []
    for k in range(500):
        ln = r.randrange(16, 25)
        a = (r.randrange(1, 224) << 24 | r.getrandbits(24)) >> (32 - ln) << (32 - ln)
        net = "%d.%d.%d.%d/%d" % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255, ln)
        rules.append(rule(f'clients = ["{net}"]', k % POOLS))
    config(d, port, backends, "".join(rules))
    s["gtmd-subnet"] = ([str(gtmd_bin), "--config", str(d / "gtmd.toml")], port)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=40_000, help="fixed rate, queries/s (dnsperf -Q)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/gtmd as it is")
    ap.add_argument("--write-db", nargs=2, metavar=("NETWORKS", "OUT"),
                    help="only write such a database of NETWORKS networks to OUT (benches/geo_names.sh)")
    args = ap.parse_args()
    if args.write_db:
        out = Path(args.write_db[1]).resolve()
        database(out.parent, random.Random(7), int(args.write_db[0]), out)
        return
    bench.SHAPE.update(rate=args.rate, clients=8, outstanding=100)
    if not args.no_build:
        bench.sh(["cargo", "build", "--release", "--quiet"], cwd=REPO)
    gtmd_bin = Path(os.environ.get("GTMD_BIN", REPO / "target/release/gtmd"))
    work = Path(tempfile.mkdtemp(prefix="gtmd-geo-bench-"))
    r = random.Random(11)
    backends = bench.Backends(work)
    procs = {}
    try:
        s = servers(work, backends, gtmd_bin, r)
        queries = query_file(work, r)
        for name, (argv, port) in s.items():
            procs[name] = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.DEVNULL,
                                           stderr=open(work / f"{name}.log", "w"), start_new_session=True)
            bench.wait_serving(port, "app.example.test")
        time.sleep(2)  # every member probed up
        cpu = {name: [] for name in s}
        for rnd in range(args.rounds):
            for name, (_, port) in s.items():
                pid = procs[name].pid
                c0 = bench.cpu_seconds(pid)
                res = bench.parse_dnsperf(bench.dnsperf(port, queries, args.seconds, ["-B"]))
                us = (bench.cpu_seconds(pid) - c0) * 1e6 / max(res["completed"], 1)
                cpu[name].append(us)
                print(f"round {rnd + 1} {name:12} {res['qps']:>9.0f} qps  {us:6.2f} us/answer  "
                      f"lost {res['lost']}  servfail {res['servfail']}", file=sys.stderr)
        med = {name: statistics.median(v) for name, v in cpu.items()}
        for name, v in med.items():
            print(f"{name:12} median {v:6.2f} us/answer  peak RSS {bench.peak_rss_mb(procs[name].pid):.0f} MB")
        print(f"geo / subnet: {med['gtmd-geo'] / med['gtmd-subnet']:.2f}x")
    finally:
        bench.stop_all(procs.values())
        backends.stop()


if __name__ == "__main__":
    main()
