#!/usr/bin/env python3
"""Query-path benchmark: gtmd against Knot DNS, NSD, gdnsd and a UDP echo floor.

Every server serves benches/bench.zone plus the pool name app.example.test. (Knot and NSD:
two static A records; gdnsd: DYNA multifo with http_status checks; gtmd: a pool with HTTP
checks; both checking two HTTP backends this script starts on 127.0.0.2 and 127.0.0.3). Each
server runs pinned to CPU 0 and dnsperf to CPU 1; servers are measured interleaved (A B C D E,
A B C D E, ...) for several rounds. For each run: qps, lost queries, SERVFAILs, the server
process tree's CPU time (utime+stime from /proc) per answer, and its peak RSS. A second,
rate-limited run per server samples latency (average and p99).

Usage (as root on Debian; installs dnsperf, knot, nsd, gdnsd with apt if missing):
    python3 benches/dnsperf.py [--rounds 3] [--seconds 10] [--probe-members 0]
    python3 benches/dnsperf.py --servers echo,gtmd,gtmd-rrl   # gtmd-rrl: RRL judging every answer
    python3 benches/dnsperf.py --smoke      # one short round: checks that everything runs
    python3 benches/dnsperf.py --servers knot,knot-signed,gtmd,gtmd-signed
        # DNSSEC: gtmd-signed serves the zone signed online and knot-signed is Knot with
        # mod-onlinesign; both are asked with the DO bit (dnsperf -D), the others without.
    python3 benches/dnsperf.py --servers echo,knot,gtmd --rate 150000 --rounds 5 \
        --idle-rounds 3 --syscalls
        # CPU per answer at a fixed 150,000 queries/s (dnsperf -c 8 -q 100 -Q 150000), CPU at
        # a light 1,000 queries/s, and system calls per answer, each against Knot.
    python3 benches/dnsperf.py --servers echo,gdnsd,gtmd --rate 40000 --profile
        # and where each server spends its CPU, kernel and user (perf record -e cpu-clock)
    python3 benches/dnsperf.py --servers knot,nsd,gtmd --tcp --clients 1000 --outstanding 2000
        # over TCP: 1,000 connections, each with queries pipelined (about 2 in flight).
"""

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    need = [p for p, b in [("dnsperf", "dnsperf"), ("knot", "knotd"), ("nsd", "nsd"), ("gdnsd", "gdnsd"), ("dnsutils", "dig")]
            if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if need:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-qq"], env=env)
        policy = Path("/usr/sbin/policy-rc.d")
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        try:
            sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env)
        finally:
            policy.unlink()


def free_port(ip="127.0.0.1"):
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((ip, 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((ip, port))
            return port
        except OSError:
            pass
        finally:
            u.close()
            t.close()


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def thread_cpu_seconds(pid, name):
    """CPU time of the threads of `pid` called `name` (gtmd's answering threads: gtmd-udp)."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = (t / "stat").read_text()
            if f.split("(", 1)[1].rsplit(")", 1)[0] == name:
                rest = f.rsplit(")", 1)[1].split()
                total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def peak_rss_mb(pid):
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def answers(port, name="www.example.test", rtype="A"):
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", "+short", name, rtype],
                       capture_output=True, text=True)
    return [w for w in r.stdout.split("\n") if w and not w.startswith(";")] if r.returncode == 0 else []


def wait_serving(port, name, limit=30):
    start = time.time()
    while time.time() - start < limit:
        if answers(port, name):
            return
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} never answered {name}")


class Backends:
    """Two HTTP backends (benches/backend.c), on 127.0.0.2 and 127.0.0.3, for the health checks.
    They run on CPU 1 with dnsperf, leaving CPU 0 to the server being measured."""

    def __init__(self, work):
        self.port = free_port()
        binary = work / "backend"
        sh(["cc", "-O2", "-o", str(binary), str(REPO / "benches/backend.c")])
        self.procs = [subprocess.Popen(["taskset", "-c", "1", str(binary), ip, str(self.port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for ip in ("127.0.0.2", "127.0.0.3")]
        time.sleep(0.3)

    def stop(self):
        for p in self.procs:
            p.kill()


def zone_with(work, name, extra):
    d = work / name
    d.mkdir(exist_ok=True)
    (d / "example.test.zone").write_text((REPO / "benches/bench.zone").read_text() + extra)
    return d


STATIC_APP = "app 30 IN A 127.0.0.2\napp 30 IN A 127.0.0.3\n"


def gtmd_pid(pid):
    """The gtmd process under the taskset wrapper (taskset execs, so usually the same pid)."""
    for p in tree(pid):
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == "gtmd":
                return p
        except OSError:
            pass
    return None


def server_commands(work, backends, gtmd_bin, echo_bin, probe_members):
    """name -> (argv, port, check name)"""
    s = {}
    port = free_port()
    s["echo"] = ([str(echo_bin), str(port)], port, None)

    port = free_port()
    d = zone_with(work, "knot", STATIC_APP)
    (d / "knot.conf").write_text(
        f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    udp-workers: 1\n    tcp-workers: 1\n"
        f"    background-workers: 1\ndatabase:\n    storage: {d}\nzone:\n  - domain: example.test.\n"
        f"    file: {d}/example.test.zone\n    storage: {d}\n")
    s["knot"] = (["knotd", "-c", str(d / "knot.conf")], port, "app.example.test")

    port = free_port()
    d = zone_with(work, "nsd", STATIC_APP)
    (d / "nsd.conf").write_text(
        f"server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    zonesdir: \"{d}\"\n"
        f"    pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n"
        f"    zonelistfile: \"{d}/zone.list\"\n    server-count: 1\n    hide-version: yes\n    rrl-ratelimit: 0\n"
        f"remote-control:\n    control-enable: no\nzone:\n    name: example.test.\n    zonefile: example.test.zone\n")
    s["nsd"] = (["nsd", "-d", "-c", str(d / "nsd.conf")], port, "app.example.test")

    port = free_port()
    d = work / "gdnsd"
    (d / "zones").mkdir(parents=True, exist_ok=True)
    (d / "zones/example.test").write_text((REPO / "benches/bench.zone").read_text() + "app 30 DYNA multifo!app\n")
    (d / "config").write_text(
        "options => {\n"
        f"  listen => [ 127.0.0.1:{port} ]\n  udp_threads => 1\n  tcp_threads => 1\n"
        f"  run_dir => {d}/run\n  state_dir => {d}/state\n}}\n"
        "service_types => {\n"
        # gdnsd's shortest interval is 2 s.
        f"  web => {{ plugin => http_status, port => {backends.port}, url_path => /, interval => 2, timeout => 1 }}\n"
        "}\n"
        "plugins => { multifo => { app => { service_types => web, b1 => 127.0.0.2, b2 => 127.0.0.3 } } }\n")
    s["gdnsd"] = (["gdnsd", "-c", str(d), "start"], port, "app.example.test")

    port = free_port()
    d = zone_with(work, "gtmd", "")
    members = [f'{{ address = "127.0.0.{2 + i}", name = "b{i}", probe_port = {backends.port} }}' for i in range(2)]
    extra = ""
    if probe_members:
        # Extra members probed at 1 s that are not bound to the benchmarked name: probing load.
        extra_members = ", ".join(
            f'{{ address = "10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", name = "x{i}", '
            f'probe_address = "127.0.0.{2 + i % 2}", probe_port = {backends.port} }}'
            for i in range(probe_members))
        extra = f'[pools.load]\ncheck = "web"\nmembers = [{extra_members}]\n'
    (d / "gtmd.toml").write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\nzones_dir = "."\n[admin]\nlisten = "127.0.0.1:0"\n'
        f'[probe]\nmax_in_flight = 1024\n'
        f'[checks.web]\ntype = "http"\npath = "/"\ninterval = "1s"\ntimeout = "500ms"\n'
        f'[pools.app]\ncheck = "web"\nmembers = [{", ".join(members)}]\n{extra}'
        f'[names."app.example.test."]\npools = ["app"]\nttl = 30\n')
    s["gtmd"] = ([str(gtmd_bin), "--config", str(d / "gtmd.toml")], port, "app.example.test")
    if os.environ.get("GTMD_BIN_B"):
        # A second gtmd binary on the same config, for A/B runs of a change (GTMD_BIN_B=old build).
        port = free_port()
        d5 = work / "gtmd-b"
        d5.mkdir(parents=True, exist_ok=True)
        (d5 / "example.test.zone").write_text((d / "example.test.zone").read_text())
        (d5 / "gtmd.toml").write_text((d / "gtmd.toml").read_text().replace(str(s["gtmd"][1]), str(port)))
        s["gtmd-b"] = ([os.environ["GTMD_BIN_B"], "--config", str(d5 / "gtmd.toml")], port, "app.example.test")

    # The same, but with response rate limiting judging every answer (loopback is exempt by
    # default) at rates dnsperf never reaches: the cost of RRL's bookkeeping per answer.
    port = free_port()
    d2 = work / "gtmd-rrl"
    d2.mkdir(parents=True, exist_ok=True)
    (d2 / "example.test.zone").write_text((d / "example.test.zone").read_text())
    (d2 / "gtmd.toml").write_text(
        (d / "gtmd.toml").read_text().replace(str(s["gtmd"][1]), str(port))
        + '[rrl]\nexempt = []\nrate = 10000000\nerrors_rate = 10000000\n')
    s["gtmd-rrl"] = ([str(gtmd_bin), "--config", str(d2 / "gtmd.toml")], port, "app.example.test")

    # DNSSEC: the same zone and pool signed online by gtmd (one ECDSA P-256 CSK), and by Knot's
    # mod-onlinesign (its default policy: ECDSA P-256); both asked with the DO bit.
    port = free_port()
    d3 = work / "gtmd-signed"
    d3.mkdir(parents=True, exist_ok=True)
    (d3 / "example.test.zone").write_text((d / "example.test.zone").read_text())
    key = subprocess.run([str(gtmd_bin), "dnssec", "keygen", "example.test", "--dir", str(d3)],
                         capture_output=True, text=True, check=True).stdout.strip()
    (d3 / "gtmd.toml").write_text(
        (d / "gtmd.toml").read_text().replace(str(s["gtmd"][1]), str(port))
        + f'[zones."example.test.".dnssec]\nkeys = ["{key}"]\n')
    s["gtmd-signed"] = ([str(gtmd_bin), "--config", str(d3 / "gtmd.toml")], port, "app.example.test")

    port = free_port()
    d4 = zone_with(work, "knot-signed", STATIC_APP)
    (d4 / "knot.conf").write_text(
        (d4.parent / "knot" / "knot.conf").read_text().replace(str(s["knot"][1]), str(port))
        .replace(str(d4.parent / "knot"), str(d4))
        + "    module: mod-onlinesign\n")
    s["knot-signed"] = (["knotd", "-c", str(d4 / "knot.conf")], port, "app.example.test")
    return s


# Servers asked with the DO bit set.
SIGNED = {"gtmd-signed", "knot-signed"}
ORDER = ["echo", "knot", "knot-signed", "nsd", "gdnsd", "gtmd", "gtmd-b", "gtmd-signed", "gtmd-rrl"]


def query_file(work):
    """60% the pool name; the rest www AAAA, NXDOMAIN, MX, TXT, CNAME and wildcard names."""
    lines = []
    for i in range(2000):
        lines += ["app.example.test A"] * 9
        lines += ["www.example.test AAAA", f"nx{i}.example.test A", "example.test MX",
                  "example.test TXT", "alias.example.test A", f"w{i}.wild.example.test A"]
    f = work / "queries.txt"
    f.write_text("\n".join(lines) + "\n")
    return f


def parse_dnsperf(out):
    r = {"sent": 0, "completed": 0, "lost": 0, "servfail": 0, "qps": 0.0, "avg_ms": 0.0}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Queries sent:"):
            r["sent"] = int(line.split()[2])
        elif line.startswith("Queries completed:"):
            r["completed"] = int(line.split()[2])
        elif line.startswith("Queries lost:"):
            r["lost"] = int(line.split()[2])
        elif line.startswith("Response codes:"):
            for part in line.split(":", 1)[1].split(","):
                words = part.split()
                if len(words) >= 2 and words[0] == "SERVFAIL":
                    r["servfail"] = int(words[1])
        elif line.startswith("Queries per second:"):
            r["qps"] = float(line.split()[3])
        elif line.startswith("Average Latency"):
            r["avg_ms"] = float(line.split()[3]) * 1000
    return r


# Queries in flight at once: enough to keep a server busy, few enough that a server's socket
# buffer never overflows (a loss would then be the server's own).
OUTSTANDING = 64


# The client's shape: dnsperf's clients (-c) and queries in flight (-q), and, at a fixed rate,
# queries per second (-Q). Set from the command line in main().
SHAPE = {"clients": 4, "outstanding": OUTSTANDING, "rate": None, "tcp": False}


def dnsperf(port, queries, seconds, extra=(), rate=None):
    rate = rate or SHAPE["rate"]
    cmd = ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
           "-l", str(seconds), "-c", str(SHAPE["clients"]), "-q", str(SHAPE["outstanding"]),
           *(["-Q", str(rate)] if rate else []), *(["-m", "tcp"] if SHAPE["tcp"] else []),
           # dnsperf opens at most 256 sockets per thread: more clients need more threads.
           *(["-T", str(-(-SHAPE["clients"] // 256))] if SHAPE["clients"] > 256 else []), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CLIENT["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return out


# dnsperf's own CPU time (user and system) over its last run. Over loopback the kernel's work
# for a packet is done by whichever side's system call or softirq moves it, so a server that
# leaves transmission to the client's next packet (TCP with Nagle's algorithm: an answer sent
# when the client's next query acknowledges the last) shows less CPU than one that sends at
# once; the client's CPU per answer shows where it went.
CLIENT = {"cpu_s": 0.0}


# System calls counted while a server answers (perf's tracepoints, which cost the server
# little, unlike strace): every call, and the ones that carry or wait for datagrams.
SYSCALLS = ["recvmmsg", "sendmmsg", "recvmsg", "sendmsg", "recvfrom", "sendto", "epoll_wait",
            "epoll_pwait", "ppoll", "poll", "futex"]


def syscalls(pid, port, queries, seconds, do):
    """(answers, {syscall: count, "all": count}) over one run of dnsperf with perf counting."""
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS]
    pids = ",".join(str(p) for p in tree(pid))
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", pids],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    r = parse_dnsperf(dnsperf(port, queries, seconds, do))
    perf.send_signal(signal.SIGINT)
    _, err = perf.communicate(timeout=10)
    counts = {}
    for line in err.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].strip().isdigit():
            name = f[2].rsplit(":", 1)[-1].replace("sys_enter_", "").replace("sys_enter", "all")
            counts[name] = counts.get(name, 0) + int(f[0])
    return r["completed"], counts


def profile(name, pid, port, queries, seconds, do, work):
    """The server's hottest functions, kernel and user, over one run: perf sampling CPU time
    (cpu-clock, which needs no hardware counters), as percentages of the server's samples."""
    data = work / f"{name}.perf"
    pids = ",".join(str(p) for p in tree(pid))
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-o", str(data),
                             "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    dnsperf(port, queries, seconds, do)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)

    def report(sort, limit):
        out = subprocess.run(["perf", "report", "--stdio", "-i", str(data), "--no-children", "--sort", sort,
                              "--percent-limit", limit], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line.strip() and not line.startswith("#")]

    return report("dso", "0.5") + ["..."] + report("sym", "0.7")[:PROFILE_LINES]


# Lines of each server's profile printed.
PROFILE_LINES = 30


def idle_cpu(pid, port, queries, seconds, do):
    """The server's CPU, in percent of a core, while answering a light 1,000 queries/s."""
    cpu0, t0 = cpu_seconds(pid), time.time()
    dnsperf(port, queries, seconds, do, rate=1000)
    return (cpu_seconds(pid) - cpu0) * 100 / (time.time() - t0)


def latency(port, queries, seconds, do=False):
    """avg and p99 latency in ms from a rate-limited verbose run."""
    out = dnsperf(port, queries, seconds, ["-Q", "20000", "-v"] + (["-D"] if do else []))
    lat = []
    for line in out.splitlines():
        if line.startswith("> "):
            try:
                lat.append(float(line.split()[-1]) * 1000)
            except ValueError:
                pass  # a line without a latency: a timed-out query
    lat.sort()
    if not lat:
        return 0.0, 0.0
    return statistics.fmean(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def run(args):
    ensure_tools()
    if not args.no_build:
        sh(["cargo", "build", "--release", "--quiet"], cwd=REPO)
    gtmd_bin = Path(os.environ.get("GTMD_BIN", REPO / "target/release/gtmd"))
    work = Path(tempfile.mkdtemp(prefix="gtmd-bench-"))
    echo_bin = work / "echo"
    sh(["cc", "-O2", "-o", str(echo_bin), str(REPO / "benches/echo.c")])
    backends = Backends(work)
    servers = server_commands(work, backends, gtmd_bin, echo_bin, args.probe_members)
    order = [s for s in ORDER if s in servers and s in args.servers]
    queries = query_file(work)
    procs = {}
    results = {s: [] for s in order}
    lat, idle, calls, profiles = {}, {}, {}, {}
    try:
        for name in order:
            argv, port, check = servers[name]
            procs[name] = subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.DEVNULL,
                                           stderr=open(work / f"{name}.log", "w"), start_new_session=True)
            if check:
                wait_serving(port, check)
                if name == "gdnsd" or name.startswith("gtmd"):
                    # Both pool members are healthy before measuring (gdnsd needs a few checks).
                    start = time.time()
                    while len(answers(port, check)) < 2 and time.time() - start < 30:
                        time.sleep(0.5)
        for rnd in range(args.rounds):
            for name in order:
                _, port, _ = servers[name]
                pid = procs[name].pid
                gpid = gtmd_pid(pid) if name.startswith("gtmd") else None
                cpu0 = cpu_seconds(pid)
                udp0 = thread_cpu_seconds(gpid, "gtmd-udp") if gpid else 0
                do = ["-D"] if name in SIGNED else []
                r = parse_dnsperf(dnsperf(port, queries, args.seconds, do))
                r["cpu_us"] = (cpu_seconds(pid) - cpu0) * 1e6 / max(r["completed"], 1)
                r["client_us"] = CLIENT["cpu_s"] * 1e6 / max(r["completed"], 1)
                if gpid and not SHAPE["tcp"]:
                    r["udp_us"] = (thread_cpu_seconds(gpid, "gtmd-udp") - udp0) * 1e6 / max(r["completed"], 1)
                r["rss_mb"] = peak_rss_mb(pid)
                results[name].append(r)
                udp = f" (answering threads {r['udp_us']:.2f})" if "udp_us" in r else ""
                print(f"round {rnd + 1} {name:8} {r['qps']:>10.0f} qps  {r['cpu_us']:6.2f} us/answer{udp}  "
                      f"lost {r['lost']}  servfail {r['servfail']}", file=sys.stderr)
        for name in order:
            lat[name] = latency(servers[name][1], queries, max(1, min(args.seconds, 3)), name in SIGNED)
        for rnd in range(args.idle_rounds):
            for name in order:
                do = ["-D"] if name in SIGNED else []
                idle.setdefault(name, []).append(
                    idle_cpu(procs[name].pid, servers[name][1], queries, args.idle_seconds, do))
        if args.syscalls:
            for name in order:
                do = ["-D"] if name in SIGNED else []
                calls[name] = syscalls(procs[name].pid, servers[name][1], queries, args.seconds, do)
        if args.profile:
            for name in order:
                do = ["-D"] if name in SIGNED else []
                profiles[name] = profile(name, procs[name].pid, servers[name][1], queries, args.seconds, do, work)
    finally:
        stop_all(procs.values())
        backends.stop()
    report(order, results, lat, args)
    report_extra(order, idle, calls, args)
    for name, lines in profiles.items():
        print(f"\nWhere {name} spends its CPU (perf record -e cpu-clock, {args.seconds} s, % of its samples)")
        print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


def stop_all(procs):
    """Stops each server's process group: SIGTERM, then SIGKILL after 10 s."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)


def report(order, results, lat, args):
    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    floor = med("echo", "cpu_us") if "echo" in results else None
    ref = med("gdnsd", "cpu_us") if "gdnsd" in results else None
    knot = med("knot", "cpu_us") if "knot" in results else None
    shape = (f"dnsperf -c {SHAPE['clients']} -q {SHAPE['outstanding']}"
             + (" -m tcp" if SHAPE["tcp"] else "")
             + (f" -Q {SHAPE['rate']} (fixed rate)" if SHAPE["rate"] else " (no rate cap)"))
    print(f"\n{args.rounds} rounds x {args.seconds} s, server on CPU 0, {shape} on CPU 1; medians over rounds"
          + (f"; gtmd also probing {args.probe_members} extra members at 1 s" if args.probe_members else ""))
    print("| server | qps | avg ms | p99 ms | lost | SERVFAIL | CPU us/answer | vs Knot | vs floor | vs gdnsd "
          "| peak RSS MB | dnsperf us/answer | both |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in order:
        cpu = med(name, "cpu_us")
        lost = sum(r["lost"] for r in results[name])
        sf = sum(r["servfail"] for r in results[name])
        vf = f"{cpu / floor:.2f}x" if floor else "-"
        vg = f"{cpu / ref:.2f}x" if ref else "-"
        vk = f"{cpu / knot:.2f}x" if knot else "-"
        a, p = lat.get(name, (0, 0))
        client = med(name, "client_us")
        print(f"| {name} | {med(name, 'qps'):.0f} | {a:.3f} | {p:.3f} | {lost} | {sf} | {cpu:.2f} | {vk} | {vf} | {vg} | "
              f"{max(r['rss_mb'] for r in results[name]):.1f} | {client:.2f} | {cpu + client:.2f} |")
    for signed, plain in (("gtmd-signed", "gtmd"), ("knot-signed", "knot"), ("gtmd-signed", "knot-signed")):
        if signed in results and plain in results:
            print(f"\n{signed} (DO=1) vs {plain}: {med(signed, 'cpu_us') / med(plain, 'cpu_us'):.2f}x CPU per answer")
    if "gtmd" in results and "udp_us" in results["gtmd"][0]:
        print(f"\ngtmd's answering threads alone (gtmd-udp): {med('gtmd', 'udp_us'):.2f} us/answer; "
              f"the rest of gtmd (probing, engine, admin): {med('gtmd', 'cpu_us') - med('gtmd', 'udp_us'):.2f} us/answer")


def report_extra(order, idle, calls, args):
    if idle:
        knot = statistics.median(idle["knot"]) if "knot" in idle else None
        print(f"\nCPU at a light 1,000 queries/s ({args.idle_rounds} rounds x {args.idle_seconds} s, medians)")
        print("| server | CPU % of a core | vs Knot |")
        print("| --- | ---: | ---: |")
        for name in order:
            v = statistics.median(idle[name])
            print(f"| {name} | {v:.2f} | {f'{v / knot:.2f}x' if knot else '-'} |")
    if calls:
        print(f"\nSystem calls over one {args.seconds} s run each (perf stat tracepoints)")
        print("| server | answers | syscalls | answers/syscall | recv calls | answers/recv | send calls | waits "
              "| futex |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name in order:
            n, c = calls[name]
            recv = sum(c.get(k, 0) for k in ("recvmmsg", "recvmsg", "recvfrom"))
            send = sum(c.get(k, 0) for k in ("sendmmsg", "sendmsg", "sendto"))
            waits = sum(c.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "ppoll", "poll"))
            allc = c.get("all", 0)
            print(f"| {name} | {n} | {allc} | {n / max(allc, 1):.1f} | {recv} | {n / max(recv, 1):.1f} | {send} "
                  f"| {waits} | {c.get('futex', 0)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--servers", default="echo,knot,nsd,gdnsd,gtmd,gtmd-rrl")
    ap.add_argument("--probe-members", type=int, default=0, help="extra members gtmd probes at 1 s while measured")
    ap.add_argument("--no-build", action="store_true", help="use target/release/gtmd as it is")
    ap.add_argument("--smoke", action="store_true", help="one 1-second round: checks the script runs")
    ap.add_argument("--rate", type=int, help="fixed rate, queries/s (dnsperf -Q); default: as fast as served")
    ap.add_argument("--clients", type=int, help="dnsperf -c (default 4; 8 with --rate)")
    ap.add_argument("--outstanding", type=int, help=f"dnsperf -q (default {OUTSTANDING}; 100 with --rate)")
    ap.add_argument("--tcp", action="store_true",
                    help="over TCP (dnsperf -m tcp): one connection per client, queries pipelined on each")
    ap.add_argument("--idle-rounds", type=int, default=0, help="rounds of CPU at a light 1,000 queries/s")
    ap.add_argument("--idle-seconds", type=int, default=10)
    ap.add_argument("--syscalls", action="store_true", help="count system calls per answer (perf stat)")
    ap.add_argument("--profile", action="store_true",
                    help="sample each server's CPU with perf record and print its hottest functions")
    args = ap.parse_args()
    SHAPE["rate"] = args.rate
    SHAPE["tcp"] = args.tcp
    SHAPE["clients"] = args.clients or (8 if args.rate else 4)
    SHAPE["outstanding"] = args.outstanding or (100 if args.rate else OUTSTANDING)
    if args.smoke:
        args.rounds, args.seconds = 1, 1
    args.servers = args.servers.split(",")
    run(args)


if __name__ == "__main__":
    main()
