#!/bin/sh
# Starts one etcd on 127.0.0.1:2379 with its data in a temporary directory (removed when it
# stops). Debian: apt install etcd-server etcd-client. Stop it with Ctrl-C.
set -eu
data=$(mktemp -d "${TMPDIR:-/tmp}/gtmd-etcd.XXXXXX")
trap 'rm -rf "$data"' EXIT INT TERM
etcd --name gtmd-example --data-dir "$data" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster gtmd-example=http://127.0.0.1:2380 --log-level warn
