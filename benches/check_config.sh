#!/bin/sh
# How `gtmd check-config` scales with members: writes a configuration with N members (half in
# one pool, the rest in pools of 100 with a region each; a name per ten pools, weighted,
# failover and all policies) and times `gtmd check-config` on it, for each N given. Prints N,
# wall and CPU seconds (the CPU time is the steadier figure on a shared machine) and peak RSS.
#   benches/check_config.sh [N...]      (default 10000 100000 1000000)
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q --features cluster
gtmd="$PWD/target/release/gtmd"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
[ $# -gt 0 ] || set -- 10000 100000 1000000
mkdir "$dir/zones"
printf '$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n' \
    >"$dir/zones/example.test.zone"
for n in "$@"; do
    python3 - "$dir" "$n" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
# Half the members in one pool, the rest in pools of 100, each pool its own region and
# each ten pools a name.
sizes = [n // 2] + [100] * ((n - n // 2) // 100)
if sum(sizes) < n:
    sizes.append(n - sum(sizes))
with open(f"{d}/gtmd.toml", "w") as c:
    c.write('[server]\nlisten = ["127.0.0.1:0"]\nzones_dir = "zones"\n'
            '[admin]\nlisten = "127.0.0.1:0"\n'
            '[checks.t]\ntype = "tcp"\nport = 80\n')
    i = 0
    for p, size in enumerate(sizes):
        c.write(f'[pools.p{p}]\ncheck = "t"\nregion = "r{p}"\nmembers = [\n')
        for i in range(i, i + size):
            c.write(f'  {{ name = "m{i}", address = "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" }},\n')
        i += 1
        c.write(']\n')
        c.write(f'[regions.r{p}]\nremove_below = "50%"\n')
    policies = ["weighted", "failover", "all"]
    for g in range(0, len(sizes), 10):
        ps = ", ".join(f'"p{p}"' for p in range(g, min(len(sizes), g + 10)))
        c.write(f'[names."n{g}.example.test."]\npools = [{ps}]\npolicy = "{policies[g // 10 % 3]}"\n')
PY
    out=$( { /usr/bin/time -f "%e %M %U %S" "$gtmd" check-config "$dir/gtmd.toml" >/dev/null; } 2>&1 ) || {
        echo "$n members: check-config failed: $out"; continue; }
    secs=$(echo "$out" | tail -1 | cut -d' ' -f1)
    kb=$(echo "$out" | tail -1 | cut -d' ' -f2)
    cpu=$(echo "$out" | tail -1 | awk '{ print $3 + $4 }')
    echo "$n members: $secs s wall, $cpu s CPU (user + sys), peak RSS $((kb / 1024)) MB"
done
