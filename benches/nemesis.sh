#!/bin/sh
# The randomized nemesis for N minutes (default 30) on the fault lab of tests/nemesis.rs:
# three etcd members, three instances, two backend regions and a Knot secondary in network
# namespaces, faults and heals from a seed, and the checker over the whole history. Prints
# the seed and the summary table (queries sent and failed, violations per invariant with
# their total time, faults injected by kind, alerts expected and received, serials seen); a
# violation fails the run and leaves the history in target/tmp/nemesis-seed-SEED.history.
#   benches/nemesis.sh [MINUTES]        (needs root, ip, nft, etcd, etcdctl, knotd)
#   GTMD_NEMESIS_SEED=SEED benches/nemesis.sh 5     replays a seed
set -eu
cd "$(dirname "$0")/.."
GTMD_NEMESIS_MINUTES="${1:-${GTMD_NEMESIS_MINUTES:-30}}"
export GTMD_NEMESIS_MINUTES
exec cargo test --release --features cluster --test nemesis -- \
    --ignored --nocapture --exact the_long_nemesis_run_breaks_no_invariant
