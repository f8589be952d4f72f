#!/usr/bin/env python3
"""How fast do clients recover? One region of two fails; a client behind a caching resolver
(Unbound) makes 100 requests a second, each with a fresh lookup and a new HTTP connection
to the first address answered. Measured per setting:
  - when gtmd removed the failed backend from its answers (polling /status),
  - when the last request failed: the client-visible outage,
both from the moment the backend stopped accepting connections. Each setting runs with the
failure at a random moment, and just after Unbound fetched the name again (the worst case:
its cached answer then lives a whole TTL).

Checks: HTTP every 500 ms, timeout 200 ms, fall 2, rise 2 (detection bound 1.3 s).

Usage (as root on Debian, with unbound installed):
    python3 benches/recovery.py [--rounds 3] [--settings "ttl=30,ttl=5,recover_within=6s"]
"""

import argparse
import json
import os
import random
import shutil
import signal
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

REPO = Path(__file__).resolve().parent.parent
NAME = "app.example.test."
IPS = ("127.0.0.31", "127.0.0.32")


def free_port(ip="127.0.0.1"):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Web:
    """An HTTP backend on `ip`:`port`; fail() closes it (connections are refused)."""

    def __init__(self, ip, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(512)
        self.up = True
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while self.up:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(1)
                c.recv(1024)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                pass
            c.close()

    def fail(self):
        self.up = False
        self.sock.close()


def dns_query(server, name):
    """(addresses, ttl) of name's A records from a recursive server, or None."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(q, server)
        r = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    an = struct.unpack(">H", r[6:8])[0]
    i = 12
    while r[i]:
        i += 1 + r[i]
    i += 5
    ips, ttl = [], None
    for _ in range(an):
        if r[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while r[i]:
                i += 1 + r[i]
            i += 1
        rtype, _, t, rdlen = struct.unpack(">HHIH", r[i:i + 10])
        i += 10
        if rtype == 1:
            ips.append(socket.inet_ntoa(r[i:i + 4]))
            ttl = t
        i += rdlen
    return ips, ttl


def request(resolver, port):
    got = dns_query(resolver, NAME)
    if not got or not got[0]:
        return False
    try:
        with socket.create_connection((got[0][0], port), timeout=1) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def status_answer(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/status", timeout=1) as r:
            d = json.load(r)
        return d["names"][0]["answer"], d["names"][0]["recovery"]
    except (OSError, KeyError, IndexError, ValueError):
        return None, None


def run_once(gtmd_bin, setting, worst, work):
    port = None
    for _ in range(50):
        port = free_port(IPS[0])
        try:
            webs = [Web(ip, port) for ip in IPS]
            break
        except OSError:
            continue
    d = Path(tempfile.mkdtemp(dir=work))
    (d / "example.test.zone").write_text(
        "$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n")
    dns, admin = free_port(), free_port()
    key, value = setting.split("=")
    value = f'"{value}"' if key == "recover_within" else value
    (d / "gtmd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1:{dns}"]\nzones_dir = "."\n[admin]\nlisten = "127.0.0.1:{admin}"\n'
        f'[checks.web]\ntype = "http"\nport = {port}\npath = "/"\ninterval = "500ms"\ntimeout = "200ms"\n'
        f'fall = 2\nrise = 2\n[pools.app]\ncheck = "web"\n'
        f'members = [{{ address = "{IPS[0]}" }}, {{ address = "{IPS[1]}" }}]\n'
        f'[names."{NAME}"]\npools = ["app"]\n{key} = {value}\n')
    ub = free_port()
    (d / "unbound.conf").write_text(
        f'server:\n    interface: 127.0.0.1@{ub}\n    port: {ub}\n    do-ip6: no\n    username: ""\n    chroot: ""\n'
        f'    directory: "{d}"\n    pidfile: "{d}/unbound.pid"\n    use-syslog: no\n    logfile: "{d}/unbound.log"\n'
        f'    module-config: "iterator"\n    do-not-query-localhost: no\n    local-zone: "test." nodefault\n'
        f'    prefetch: no\n    serve-expired: no\n    infra-host-ttl: 1\nremote-control:\n    control-enable: no\n'
        f'stub-zone:\n    name: "example.test."\n    stub-addr: 127.0.0.1@{dns}\n')
    procs = [subprocess.Popen([str(gtmd_bin), "--config", str(d / "gtmd.toml")], stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        start = time.time()
        while time.time() - start < 15:
            ans, rec = status_answer(f"127.0.0.1:{admin}")
            if ans and len(ans) == 2:
                break
            time.sleep(0.1)
        ttl = rec["ttl"]
        procs.append(subprocess.Popen(["unbound", "-d", "-c", str(d / "unbound.conf")], stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        resolver = ("127.0.0.1", ub)
        while time.time() - start < 30 and not (dns_query(resolver, NAME) or [[]])[0]:
            time.sleep(0.1)
        log, stop = [], threading.Event()

        def client():
            nxt = time.time()
            while not stop.is_set():
                at = time.time()
                log.append((at, request(resolver, port)))
                nxt += 0.01
                time.sleep(max(0, nxt - time.time()))

        t = threading.Thread(target=client, daemon=True)
        t.start()
        time.sleep(2)
        if worst:
            last = None
            limit = time.time() + ttl + 5
            while time.time() < limit:
                got = dns_query(resolver, NAME)
                if got and got[1] is not None:
                    if last is not None and got[1] == ttl and last < ttl:
                        break
                    last = got[1]
                time.sleep(0.02)
        else:
            time.sleep(random.uniform(0, ttl))
        failed = time.time()
        webs[1].fail()
        removed = None
        until = failed + ttl + 8
        while time.time() < until:
            if removed is None:
                ans, _ = status_answer(f"127.0.0.1:{admin}")
                if ans is not None and IPS[1] not in ans:
                    removed = time.time() - failed
            time.sleep(0.05)
        stop.set()
        t.join()
        fails = [at - failed for at, ok in log if not ok and at >= failed]
        return {"ttl": ttl, "derived": rec["ttl_from"] == "derived", "removed": removed or float("nan"),
                "last_fail": max(fails) if fails else 0.0, "failed": len(fails),
                "bound": rec["worst_outage"]}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        webs[0].fail()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default="ttl=30,ttl=5,recover_within=6s,recover_within=10s")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    gtmd_bin = Path(os.environ.get("GTMD_BIN", REPO / "target/release/gtmd"))
    if not shutil.which("unbound"):
        sys.exit("unbound is not installed (apt-get install unbound)")
    work = Path(tempfile.mkdtemp(prefix="gtmd-recovery-"))
    rows = []
    try:
        for setting in args.settings.split(","):
            for worst in (False, True):
                runs = []
                for i in range(args.rounds):
                    r = run_once(gtmd_bin, setting, worst, work)
                    runs.append(r)
                    print(f"{setting:22} {'after a refetch' if worst else 'any time':15} round {i + 1}: "
                          f"removed {r['removed']:.2f} s, last failed request {r['last_fail']:.2f} s "
                          f"({r['failed']} failed)", file=sys.stderr)
                rows.append((setting, worst, runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.rounds} rounds per row; medians (and the worst round) in seconds after the backend failed")
    print("| setting | TTL | failure | gtmd removed it | last failed request | worst round | promised bound |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for setting, worst, runs in rows:
        med = lambda k: statistics.median(r[k] for r in runs)
        print(f"| `{setting}` | {runs[0]['ttl']} | {'just after a refetch' if worst else 'any time'} | "
              f"{med('removed'):.1f} | {med('last_fail'):.1f} | {max(r['last_fail'] for r in runs):.1f} | "
              f"{runs[0]['bound']:.1f} |")


if __name__ == "__main__":
    main()
