#!/bin/sh
# Reloads under load: gtmd serves a zone of NAMES A records and a pool of MEMBERS TCP-checked
# members while dnsperf sends QPS queries a second for 12 s and `gtmd ctl reload` runs once a
# second. Prints each reload's wall time and dnsperf's summary (lost queries, rcodes).
#   benches/reload.sh [NAMES] [MEMBERS] [QPS]     (defaults 10000 100 20000; needs dnsperf)
set -eu
cd "$(dirname "$0")/.."
names="${1:-10000}" members="${2:-100}" qps="${3:-20000}"
cargo build --release -q
gtmd="$PWD/target/release/gtmd"
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
mkdir "$dir/zones"
python3 - "$dir" "$names" "$members" <<'EOF'
import sys
d, names, members = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f"{d}/zones/big.test.zone", "w") as z:
    z.write("$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n")
    for i in range(names):
        z.write(f"h{i} IN A 198.18.{i // 256 % 256}.{i % 256}\n")
ms = ", ".join(
    f'{{ name = "m{i}", address = "198.19.{i // 256}.{i % 256}", probe_address = "127.0.0.1", probe_port = 28053 }}'
    for i in range(members))
with open(f"{d}/gtmd.toml", "w") as c:
    c.write(f'[server]\nlisten = ["127.0.0.1:25353"]\nzones_dir = "zones"\n[admin]\nlisten = "127.0.0.1:28053"\n'
            f'[checks.t]\ntype = "tcp"\nport = 28053\ninterval = "1s"\n[pools.app]\ncheck = "t"\nmembers = [{ms}]\n'
            f'[names."app.big.test."]\npools = ["app"]\nmax_answers = 4\n')
with open(f"{d}/queries", "w") as q:
    for i in range(names):
        q.write(f"h{i}.big.test A\napp.big.test A\n")
EOF
"$gtmd" --config "$dir/gtmd.toml" 2>"$dir/gtmd.log" &
pid=$!
until "$gtmd" ctl --admin 127.0.0.1:28053 status >/dev/null 2>&1; do sleep 0.2; done
sleep 1
(
    for i in 1 2 3 4 5 6 7 8 9 10; do
        sleep 1
        s=$(date +%s.%N)
        "$gtmd" ctl --admin 127.0.0.1:28053 reload >/dev/null
        e=$(date +%s.%N)
        echo "reload $i: $(echo "$e - $s" | bc) s"
    done
) &
dnsperf -s 127.0.0.1 -p 25353 -d "$dir/queries" -l 12 -Q "$qps" -c 4 |
    grep -E "Queries (sent|completed|lost)|Response codes|Average Latency"
wait %2 2>/dev/null || true
