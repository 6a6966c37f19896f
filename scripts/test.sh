#!/usr/bin/env bash
# Runs every test: unit, property and end-to-end (the latter start the release binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --release --bins
cargo test --workspace --release "$@"
