#!/bin/sh
# What names with rules by place cost to build: writes a country database of NETS networks
# (IPv4 /16 to /24 and IPv6 /32 to /48, 200 countries, MaxMind's own writer) and a
# configuration with K names of 20 country rules each, and times `gtmd check-config` on it.
# "same": every name has the same rules (they share one client table); "distinct": each
# name's rules take other countries (a table each, one walk of the database for all). Prints K, wall and CPU seconds and peak RSS (MB).
#   benches/geo_names.sh [NETS] [K...]     (default 100000, K = 1 20)
# Needs perl with libmaxmind-db-writer-perl. GTMD_BIN picks another binary (an A/B).
set -eu
cd "$(dirname "$0")/.."
nets=${1:-100000}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- 1 20
if [ -z "${GTMD_BIN:-}" ]; then
    cargo build --release -q
    GTMD_BIN="$PWD/target/release/gtmd"
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/zones"
printf '$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n' \
    >"$dir/zones/example.test.zone"
python3 benches/geo_dnsperf.py --write-db "$nets" "$dir/geo.mmdb"
echo "database: $nets networks, $(($(stat -c %s "$dir/geo.mmdb") / 1024)) KiB"
printf 'K\trules\twall_s\tcpu_s\trss_mb\n'
for k in "$@"; do
    for kind in same distinct; do
        python3 - "$dir" "$k" "$kind" <<'PY'
import sys
d, k, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pools = ["p%d" % i for i in range(4)]
with open(f"{d}/gtmd.toml", "w") as c:
    c.write('[server]\nlisten = ["127.0.0.1:0"]\nzones_dir = "zones"\n'
            '[admin]\nlisten = "127.0.0.1:0"\n[geo]\ndatabases = ["geo.mmdb"]\n'
            '[checks.t]\ntype = "tcp"\nport = 80\n')
    for i, p in enumerate(pools):
        c.write(f'[pools.{p}]\ncheck = "t"\nmembers = [{{ address = "192.0.2.{i + 1}" }}]\n')
    for j in range(k):
        name = f"n{j}.example.test."
        c.write(f'[names."{name}"]\npools = {pools!r}\npolicy = "topology"\n'.replace("'", '"'))
        for rule in range(20):
            shift = j if kind == "distinct" else 0
            first = pools[rule % 4]
            countries = ", ".join('"C%03d"' % ((rule * 10 + x + shift) % 200) for x in range(10))
            c.write(f'[[names."{name}".topology]]\ncountry = [{countries}]\norder = ["{first}"]\n')
PY
        /usr/bin/time -f "%e %U %S %M" -o "$dir/time" "$GTMD_BIN" check-config "$dir/gtmd.toml" >/dev/null
        read -r wall user sys rss <"$dir/time"
        printf '%s\t%s\t%s\t%s\t%s\n' "$k" "$kind" "$wall" \
            "$(awk "BEGIN { print $user + $sys }")" "$((rss / 1024))"
    done
done
