#!/usr/bin/env python3
"""Random-name floods on a signed zone: what a legitimate client in another network loses.

gtmd serves benches/bench.zone twice in each round, unsigned and signed online (one ECDSA
P-256 key), with response rate limiting at its defaults (loopback not exempt, so that the
sources below are limited as remote ones are). Each run: dnsperf (pinned to CPU 1) floods
gtmd (pinned to CPU 0) from 127.0.1.1 (network 127.0.1.0/24) with names that do not exist,
each asked once, with the DO bit, at --flood-rate queries a second; meanwhile a client at 127.0.2.1 (another /24) asks
www.example.test A with the DO bit at a steady rate, retrying over TCP when an answer comes
back truncated, as a resolver does. Reported per run: the flood's queries per second sent
and answered, the client's queries lost (no answer within 1 s), gtmd's CPU time per flood
query, and the signatures gtmd made on the query path (gtmd_signatures_total). The signed
case is compared with the unsigned one of the same round.

Usage (as root on Debian; dnsperf from apt if missing):
    python3 benches/signflood.py [--rounds 3] [--seconds 10] [--client-rate 100] [--flood-rate 34000] [--build]
Uses target/release/gtmd (GTMD_BIN=path for another build).
"""

import argparse
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dnsperf as dp  # noqa: E402  (the shared helpers: ports, CPU time, dnsperf output)

REPO = dp.REPO
FLOOD_SRC = "127.0.1.1"
CLIENT_SRC = "127.0.2.1"


def query(qid, name, do=True):
    """A DNS query for `name` A, with an OPT record (payload 1232, DO set when `do`)."""
    head = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000 if do else 0, 0)
    return head + qname + struct.pack(">HH", 1, 1) + opt


def tcp_ask(port, msg):
    """True if gtmd answers `msg` over TCP within 1 s."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1,
                                      source_address=(CLIENT_SRC, 0)) as s:
            s.sendall(struct.pack(">H", len(msg)) + msg)
            head = s.recv(2)
            return len(head) == 2
    except OSError:
        return False


class Client(threading.Thread):
    """Asks www.example.test A at `rate` per second from CLIENT_SRC until stopped; counts the
    queries asked and lost (no answer in 1 s, or a truncated one that TCP did not answer)."""

    def __init__(self, port, rate):
        super().__init__(daemon=True)
        self.port, self.rate = port, rate
        self.asked = self.lost = self.truncated = 0
        self.stop = threading.Event()

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((CLIENT_SRC, 0))
        sock.settimeout(1.0)
        qid, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            qid = (qid + 1) & 0xFFFF
            msg = query(qid, "www.example.test")
            sock.sendto(msg, ("127.0.0.1", self.port))
            self.asked += 1
            if not self.answered(sock, qid, msg):
                self.lost += 1
            next_at += 1 / self.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        sock.close()

    def answered(self, sock, qid, msg):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                data = sock.recv(4096)
            except OSError:
                return False
            if len(data) >= 4 and struct.unpack(">H", data[:2])[0] == qid:
                if data[2] & 0x02:  # TC: a resolver retries over TCP
                    self.truncated += 1
                    return tcp_ask(self.port, msg)
                return True
        return False


def flood_file(work, n=200_000):
    names = [f"f{i}-{random.getrandbits(32):08x}.example.test A" for i in range(n)]
    f = work / "flood.txt"
    f.write_text("\n".join(names) + "\n")
    return f


def configs(work, gtmd_bin):
    """mode -> (config path, DNS port, admin port)"""
    out = {}
    for mode in ("unsigned", "signed"):
        d = work / mode
        d.mkdir()
        (d / "example.test.zone").write_text((REPO / "benches/bench.zone").read_text())
        port, admin = dp.free_port(), dp.free_port()
        text = (f'[server]\nlisten = ["127.0.0.1:{port}"]\nzones_dir = "."\n'
                f'[admin]\nlisten = "127.0.0.1:{admin}"\n[rrl]\nexempt = []\n')
        if mode == "signed":
            key = subprocess.run([str(gtmd_bin), "dnssec", "keygen", "example.test", "--dir", str(d)],
                                 capture_output=True, text=True, check=True).stdout.strip()
            text += f'[zones."example.test.".dnssec]\nkeys = ["{key}"]\n'
        (d / "gtmd.toml").write_text(text)
        out[mode] = (d / "gtmd.toml", port, admin)
    return out


def signatures(admin):
    """gtmd_signatures_total on the query path, or None if gtmd does not export it."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("gtmd_signatures_total") and 'path="query"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0 if "gtmd_" in text else None


def one_run(gtmd_bin, conf, port, admin, flood, seconds, client_rate, flood_rate):
    proc = subprocess.Popen(["taskset", "-c", "0", str(gtmd_bin), "--config", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dp.wait_serving(port, "www.example.test")
        pid = dp.gtmd_pid(proc.pid) or proc.pid
        sigs0, cpu0 = signatures(admin), dp.cpu_seconds(pid)
        client = Client(port, client_rate)
        client.start()
        out = subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port),
                              "-a", FLOOD_SRC, "-d", str(flood), "-l", str(seconds), "-c", "8",
                              "-q", "60000", "-Q", str(flood_rate), "-D", "-t", "1"],
                             capture_output=True, text=True, check=True).stdout
        client.stop.set()
        client.join(timeout=5)
        cpu = dp.cpu_seconds(pid) - cpu0
        sigs1 = signatures(admin)
        r = dp.parse_dnsperf(out)
        return {
            "flood_sent_qps": r["sent"] / seconds,
            "flood_answered_qps": r["completed"] / seconds,
            "cpu_us": cpu * 1e6 / max(1, r["sent"]),
            "asked": client.asked,
            "lost": client.lost,
            "lost_pct": 100 * client.lost / max(1, client.asked),
            "truncated": client.truncated,
            "signatures": None if sigs0 is None or sigs1 is None else sigs1 - sigs0,
        }
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--client-rate", type=int, default=100, help="the client's queries per second")
    ap.add_argument("--flood-rate", type=int, default=34000, help="the flood's queries per second (dnsperf -Q)")
    ap.add_argument("--build", action="store_true", help="cargo build --release first")
    args = ap.parse_args()
    dp.ensure_tools()
    if args.build:
        dp.sh(["cargo", "build", "--release", "--quiet"], cwd=REPO)
    gtmd_bin = Path(os.environ.get("GTMD_BIN", REPO / "target/release/gtmd"))
    work = Path(tempfile.mkdtemp(prefix="gtmd-signflood-"))
    flood = flood_file(work)
    confs = configs(work, gtmd_bin)
    results = {m: [] for m in confs}
    for rnd in range(args.rounds):
        for mode, (conf, port, admin) in confs.items():
            r = one_run(gtmd_bin, conf, port, admin, flood, args.seconds, args.client_rate, args.flood_rate)
            results[mode].append(r)
            sig = "n/a" if r["signatures"] is None else f"{r['signatures']:.0f}"
            print(f"round {rnd + 1} {mode:8}: flood {r['flood_sent_qps']:8.0f} q/s sent, "
                  f"{r['flood_answered_qps']:8.0f} answered, {r['cpu_us']:5.1f} us CPU/query, "
                  f"signatures {sig}; client lost {r['lost']}/{r['asked']} ({r['lost_pct']:.2f} %), "
                  f"{r['truncated']} truncated", flush=True)
    med = {m: {k: statistics.median(x[k] for x in rs) for k in ("lost_pct", "cpu_us", "flood_sent_qps")}
           for m, rs in results.items()}
    print(f"\nmedian over {args.rounds} rounds:")
    for m, v in med.items():
        print(f"  {m:8}: client lost {v['lost_pct']:.2f} %, {v['cpu_us']:.1f} us CPU per flood query "
              f"at {v['flood_sent_qps']:.0f} q/s")
    ratio = med["signed"]["cpu_us"] / max(1e-9, med["unsigned"]["cpu_us"])
    print(f"  signed / unsigned CPU per flood query: {ratio:.2f}x")
    worst = max(r["lost_pct"] for r in results["signed"])
    print(f"  signed: worst client loss {worst:.2f} % ({'under' if worst < 1 else 'NOT under'} 1 %)")


if __name__ == "__main__":
    main()
