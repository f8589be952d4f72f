#!/usr/bin/env python3
"""Idle TCP connections against new TCP clients: gtmd and Knot under the same scripts.

Each scenario opens many idle TCP connections to the server, each reopened as soon as the
server closes it (the client never sends a query: it holds a slot), and meanwhile new
clients, one after another from an address of their own, each open a fresh connection and
ask www.example.test A over TCP (2 s to answer, one query every 0.5 s). Reported per server
and scenario: new TCP queries answered / tried, and how many idle connections were connected
(seen from the client side: the server's accept queue included) when the new clients began.

Scenarios (127.x source addresses, all on loopback):
    one-address      1,100 idle connections from 127.0.1.1
    100-addresses    2,000 idle connections, 20 from each of 127.0.2.1 ... 127.0.2.100
    many-addresses   10,000 idle connections, one from each of 127.3.0.0 ... (10,000 addresses)

Both servers serve benches/bench.zone with the same connection limit (gtmd's default
`tcp_max_connections` 1024; Knot's `tcp-max-clients: 1024`) and otherwise their defaults
(idle timeouts: gtmd 10 s, 1 s while half the limit is in use; Knot 10 s). `knot-default`
(not run unless named in --servers) is Knot with its own default limit, half its open-file
limit.

Usage (as root on Debian; knot and dig from apt if missing):
    python3 benches/tcp_pressure.py [--seconds 8] [--servers gtmd,knot] [--scenarios ...]
Uses target/release/gtmd (GTMD_BIN=path for another build). A default run takes about 90 s.
"""

import argparse
import asyncio
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dnsperf as dp  # noqa: E402  (the shared helpers: ports, waiting for a server)

REPO = dp.REPO
LIMIT = 1024
NEW_CLIENT = "127.0.9.1"

SCENARIOS = {
    "one-address": ["127.0.1.1"] * 1100,
    "100-addresses": [f"127.0.2.{i}" for i in range(1, 101)] * 20,
    "many-addresses": [f"127.3.{i // 256}.{i % 256}" for i in range(10_000)],
}


def query(qid):
    """www.example.test A, RD clear, no EDNS, with its TCP length prefix."""
    head = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    qname = b"\x03www\x07example\x04test\x00"
    msg = head + qname + struct.pack(">HH", 1, 1)
    return struct.pack(">H", len(msg)) + msg


def new_client_asks(port, qid):
    """True if a new connection from NEW_CLIENT gets an answer to its query within 2 s."""
    deadline = time.monotonic() + 2
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2,
                                      source_address=(NEW_CLIENT, 0)) as s:
            s.sendall(query(qid))
            got = b""
            while len(got) < 2 or len(got) < 2 + struct.unpack(">H", got[:2])[0]:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    return False
                got += chunk
            return struct.unpack(">H", got[2:4])[0] == qid
    except OSError:
        return False


class Idlers(threading.Thread):
    """Idle connections from `sources` (one per entry), each reopened when the server closes
    it, until stopped; `open` counts those connected now."""

    def __init__(self, port, sources):
        super().__init__(daemon=True)
        self.port, self.sources = port, sources
        self.open = 0
        self.loop = None
        self.stopping = None

    async def one(self, src):
        while not self.stopping.is_set():
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port, local_addr=(src, 0)), 3)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
                continue
            self.open += 1
            try:
                while not self.stopping.is_set():
                    try:
                        if not await asyncio.wait_for(r.read(64), 0.5):
                            break
                    except asyncio.TimeoutError:
                        continue
            except OSError:
                pass
            finally:
                self.open -= 1
                w.close()

    async def main(self):
        self.stopping = asyncio.Event()
        tasks = [asyncio.create_task(self.one(s)) for s in self.sources]
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def run(self):
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.main())
        self.loop.close()

    def stop(self):
        while self.stopping is None:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.join(30)


def start_gtmd(work, gtmd_bin):
    port, admin = dp.free_port(), dp.free_port()
    d = work / "gtmd"
    d.mkdir()
    (d / "example.test.zone").write_text((REPO / "benches/bench.zone").read_text())
    (d / "gtmd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\nzones_dir = "{d}"\ntcp_max_connections = {LIMIT}\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\n')
    p = subprocess.Popen([gtmd_bin, "--config", str(d / "gtmd.toml")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, port


def start_knot(work, _gtmd_bin, limit=f"\n    tcp-max-clients: {LIMIT}"):
    port = dp.free_port()
    d = work / "knot"
    d.mkdir()
    (d / "example.test.zone").write_text((REPO / "benches/bench.zone").read_text())
    (d / "knot.conf").write_text(
        f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}{limit}\n"
        f"database:\n    storage: {d}\nzone:\n  - domain: example.test.\n"
        f"    file: {d}/example.test.zone\n    storage: {d}\n")
    p = subprocess.Popen(["knotd", "-c", str(d / "knot.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, port


SERVERS = {
    "gtmd": start_gtmd,
    "knot": start_knot,
    # Knot's own limit: half its open-file limit (here the script's hard limit).
    "knot-default": lambda work, b: start_knot(work, b, limit=""),
}


def scenario(port, sources, seconds):
    """(answered, tried, idle connections open when the new clients began)."""
    idlers = Idlers(port, sources)
    idlers.start()
    # Every idler has tried once and the server has had to close some for room.
    time.sleep(2 + len(sources) / 5000)
    held = idlers.open
    answered = tried = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            tried += 1
            answered += new_client_asks(port, tried & 0xFFFF)
            time.sleep(0.5)
    finally:
        idlers.stop()
    return answered, tried, held


def run(args):
    gtmd_bin = os.environ.get("GTMD_BIN", str(REPO / "target/release/gtmd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(len(SCENARIOS[s]) for s in args.scenarios) + 2048
    if hard < need:
        raise SystemExit(f"open files: the hard limit {hard} is below {need}; raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.servers:
            work = Path(tmp) / name
            work.mkdir()
            proc, port = SERVERS[name](work, gtmd_bin)
            try:
                dp.wait_serving(port, "www.example.test")
                for sc in args.scenarios:
                    results[(name, sc)] = scenario(port, SCENARIOS[sc], args.seconds)
                    print(f"{name} {sc}: {results[(name, sc)][0]}/{results[(name, sc)][1]}",
                          file=sys.stderr, flush=True)
                    # Let the server drop the last idlers before the next scenario.
                    time.sleep(1)
            finally:
                proc.kill()
                proc.wait()
    print(f"\nNew TCP queries answered / tried, {args.seconds} s per scenario, limit {LIMIT} connections\n")
    print("| scenario | idle connections | " + " | ".join(args.servers) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in args.servers) + " |")
    for sc in args.scenarios:
        cells = []
        for name in args.servers:
            a, t, held = results[(name, sc)]
            cells.append(f"{a}/{t} ({held:,} connected)")
        n, addrs = len(SCENARIOS[sc]), len(set(SCENARIOS[sc]))
        print(f"| {sc} | {n:,} from {addrs:,} address{'es' if addrs > 1 else ''} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8, help="new clients' time per scenario")
    ap.add_argument("--servers", default="gtmd,knot")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    args.servers = args.servers.split(",")
    args.scenarios = args.scenarios.split(",")
    for s in args.servers:
        if s not in SERVERS:
            raise SystemExit(f"--servers: {s!r} is not one of {', '.join(SERVERS)}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"--scenarios: {s!r} is not one of {', '.join(SCENARIOS)}")
    for tool in ["dig"] + (["knotd"] if "knot" in args.servers else []):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            raise SystemExit(f"{tool} is missing (apt-get install {'knot' if tool == 'knotd' else 'dnsutils'})")
    run(args)


if __name__ == "__main__":
    main()
