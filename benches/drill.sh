#!/bin/sh
# The fault drill's long form: tests/drill.rs run for SECONDS (default 600) against the gtmd
# binary: backends killed, hung and restored every 4 s, a reload per cycle, slowloris
# connections and malformed packets on the side, with queries over UDP and TCP throughout.
# Prints answers per second, failures, late answers and the RSS of gtmd after each cycle.
set -e
cd "$(dirname "$0")/.."
GTMD_DRILL_SECS="${1:-600}" exec cargo test --release --test drill -- --nocapture
