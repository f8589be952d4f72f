#!/usr/bin/env python3
"""Secondaries under churn: gtmd as the primary of Knot DNS, NSD and BIND (TSIG, NOTIFY,
IXFR), with a health change every 3 s (20 a minute) for 5 minutes by default.

gtmd serves churn.test. with app.churn.test. bound to two members checked by TCP connect
(every 200 ms, fall 1, rise 1) to two listening sockets this script opens and closes in
turn. After each change the script polls gtmd and every secondary until each answers the
new address set, and records the delay from the change. At the end it reads gtmd's
/metrics: NOTIFYs sent and answered, transfers by kind (AXFR, IXFR, IXFR-AXFR,
IXFR-current) and bytes transferred.

Usage (as root on Debian; installs knot, nsd, bind9 and dnsutils with apt if missing):
    python3 benches/secondaries.py [--minutes 5] [--every 3]
    python3 benches/secondaries.py --minutes 0.5   # a short check that everything runs
"""

import argparse
import base64
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZONE = "churn.test."
NAME = "app.churn.test."
ADDRS = ["192.0.2.10", "192.0.2.11"]


def ensure_tools():
    need = [p for p, b in [("knot", "knotd"), ("nsd", "nsd"), ("bind9", "named"), ("dnsutils", "dig")]
            if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if need:
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def query_a(port, name, timeout=0.3):
    """The sorted A addresses 127.0.0.1:port answers for name (None: no answer)."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, ("127.0.0.1", port))
        r, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(r) < 12 or struct.unpack(">H", r[:2])[0] != qid:
        return None
    an = struct.unpack(">H", r[6:8])[0]
    i = 12
    i = skip_name(r, i) + 4
    out = []
    for _ in range(an):
        i = skip_name(r, i)
        t, _c, _ttl, ln = struct.unpack(">HHIH", r[i:i + 10])
        i += 10
        if t == 1 and ln == 4:
            out.append(socket.inet_ntoa(r[i:i + 4]))
        i += ln
    return sorted(out)


def skip_name(r, i):
    while True:
        n = r[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


class Listener:
    """A TCP port that a check connects to: open (member up) or closed (down)."""

    def __init__(self):
        self.port = free_port()
        self.sock = None
        self.open()

    def open(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.sock = s

    def close(self):
        self.sock.close()
        self.sock = None

    def drain(self):
        if self.sock is None:
            return
        self.sock.setblocking(False)
        try:
            while True:
                c, _ = self.sock.accept()
                c.close()
        except OSError:
            pass


def secondary_conf(kind, d, port, primary, secret):
    if kind == "knot":
        return (f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n"
                f"key:\n  - id: churn\n    algorithm: hmac-sha256\n    secret: {secret}\n"
                f"remote:\n  - id: gtmd\n    address: 127.0.0.1@{primary}\n    key: churn\n"
                f"acl:\n  - id: notify\n    address: 127.0.0.1\n    key: churn\n    action: notify\n"
                f"zone:\n  - domain: {ZONE}\n    storage: {d}\n    file: {d}/zone\n    master: gtmd\n    acl: notify\n"
                f"log:\n  - target: stderr\n    any: warning\n"), ["knotd", "-c"]
    if kind == "nsd":
        return (f"server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    zonesdir: \"{d}\"\n"
                f"    pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n"
                f"    zonelistfile: \"{d}/zone.list\"\nremote-control:\n    control-enable: no\n"
                f"key:\n    name: churn\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n"
                f"zone:\n    name: {ZONE}\n    zonefile: zone\n    request-xfr: 127.0.0.1@{primary} churn\n"
                f"    allow-notify: 127.0.0.1 churn\n"), ["nsd", "-d", "-c"]
    return (f"options {{ directory \"{d}\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n"
            f" pid-file \"{d}/named.pid\"; session-keyfile \"{d}/session.key\"; managed-keys-directory \"{d}\";\n"
            f" recursion no; dnssec-validation no; notify no; }};\ncontrols {{ }};\n"
            f"key \"churn\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n"
            f"zone \"{ZONE}\" {{ type secondary; primaries port {primary} {{ 127.0.0.1 key \"churn\"; }};\n"
            f" file \"{d}/zone.db\"; allow-notify {{ 127.0.0.1; }}; }};\n"), ["named", "-g", "-c"]


def metrics(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("gtmd_notify_total", "gtmd_transfers_total", "gtmd_transfer_bytes_total")):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--every", type=float, default=3, help="seconds between health changes")
    args = ap.parse_args()
    ensure_tools()
    gtmd = REPO / "target/release/gtmd"
    if not gtmd.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "gtmd"], cwd=REPO, check=True)
    work = Path(tempfile.mkdtemp(prefix="gtmd-secondaries-"))
    secret = base64.b64encode(os.urandom(32)).decode()
    (work / "zones").mkdir()
    (work / "zones" / f"{ZONE}zone").write_text(
        "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n NS ns1\nns1 A 127.0.0.1\n")
    (work / "churn.key").write_text(f'key "churn" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n')
    members = [Listener(), Listener()]
    dns, admin = free_port(), free_port()
    kinds = ["knot", "nsd", "bind"]
    ports = {k: free_port() for k in kinds}
    notify = ", ".join(f'"127.0.0.1:{p}"' for p in ports.values())
    (work / "gtmd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1:{dns}"]\nzones_dir = "zones"\ntsig_keys = ["churn.key"]\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\nstate_file = "state.json"\n'
        f'[zones."{ZONE}"]\ntransfer_keys = ["churn"]\nnotify = [{notify}]\n'
        f'[checks.tcp]\ntype = "tcp"\nport = 1\ninterval = "200ms"\ntimeout = "150ms"\nfall = 1\nrise = 1\n'
        f'[pools.app]\ncheck = "tcp"\nmembers = [\n'
        f'  {{ address = "{ADDRS[0]}", name = "m0", probe_address = "127.0.0.1", probe_port = {members[0].port} }},\n'
        f'  {{ address = "{ADDRS[1]}", name = "m1", probe_address = "127.0.0.1", probe_port = {members[1].port} }},\n]\n'
        f'[names."{NAME}"]\npools = ["app"]\nttl = 30\ndegraded_ttl = 5\n')
    procs = [subprocess.Popen([str(gtmd), "--config", str(work / "gtmd.toml")], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=open(work / "gtmd.log", "w"))]
    try:
        for k in kinds:
            d = work / k
            d.mkdir()
            conf, cmd = secondary_conf(k, d, ports[k], dns, secret)
            (d / "conf").write_text(conf)
            procs.append(subprocess.Popen([*cmd, str(d / "conf")], stdout=subprocess.DEVNULL,
                                          stderr=open(d / "log", "w")))
        servers = {"gtmd": dns, **ports}
        want = sorted(ADDRS)
        deadline = time.time() + 30
        while any(query_a(p, NAME) != want for p in servers.values()):
            if time.time() > deadline:
                sys.exit("the secondaries did not load the zone within 30 s")
            time.sleep(0.1)
        before = metrics(admin)
        delays = {k: [] for k in servers}
        changes = 0
        end = time.time() + args.minutes * 60
        down = None
        while time.time() < end:
            # Alternate: take a member down, bring it back; the member taken changes each time.
            if down is None:
                down = changes // 2 % 2
                members[down].close()
                want = sorted(a for i, a in enumerate(ADDRS) if i != down)
            else:
                members[down].open()
                down = None
                want = sorted(ADDRS)
            changes += 1
            t0 = time.time()
            pending = set(servers)
            while pending and time.time() - t0 < args.every * 4:
                for m in members:
                    m.drain()
                for k in list(pending):
                    if query_a(servers[k], NAME, 0.2) == want:
                        delays[k].append(time.time() - t0)
                        pending.discard(k)
                time.sleep(0.005)
            for k in pending:
                delays[k].append(float("inf"))
            while time.time() - t0 < args.every:
                for m in members:
                    m.drain()
                time.sleep(0.05)
        after = metrics(admin)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"{changes} health changes in {args.minutes:g} min (one every {args.every:g} s)")
    print("\ndelay from the change to the new answer, seconds (gtmd's includes detection):")
    print(f"{'server':8} {'median':>8} {'p95':>8} {'max':>8}")
    for k, d in delays.items():
        d = sorted(d)
        print(f"{k:8} {statistics.median(d):8.3f} {d[int(0.95 * (len(d) - 1))]:8.3f} {d[-1]:8.3f}")
    worst = max(max(delays[k]) for k in kinds)
    print(f"\nlargest delay from a health change to every secondary answering it: {worst:.3f} s")
    print("\ncounters over the run (from gtmd's /metrics):")
    for k in sorted(after):
        v = after[k] - before.get(k, 0)
        if v:
            print(f"  {k} {v:g}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
