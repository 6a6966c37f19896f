#!/usr/bin/env bash
# Runs every test: unit, property and end-to-end (the latter start the release binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --release --bins
# The control protocol and core build alone, without the pnc service stack (what the dataplane
# and a proxy-side agent link), and with the proxy client only.
cargo build -p control --no-default-features
cargo build -p control --no-default-features --features proxy-client
cargo test --workspace --release "$@"
