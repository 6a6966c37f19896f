#!/usr/bin/env bash
# Runs every test: first the unit tests in debug, so that the debug_assert!s (pool, window
# position packing, reactor) run too; then unit, property and end-to-end tests in release (the
# end-to-end tests start the release binaries). A test that cannot run here (a tool missing;
# outside CI only, under CI that is a failure) writes a line to $VAN_SKIPS_FILE: cargo test
# shows it as "ok" and hides its output, so the skips are listed at the end, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
VAN_SKIPS_FILE="$(mktemp)"
export VAN_SKIPS_FILE
report_skips() {
  if [ -s "${VAN_SKIPS_FILE}" ]; then
    echo "test.sh: $(wc -l <"${VAN_SKIPS_FILE}") test(s) SKIPPED, not run:"
    sed 's/^/  /' "${VAN_SKIPS_FILE}"
  else
    echo "test.sh: no test skipped"
  fi
  rm -f "${VAN_SKIPS_FILE}"
}
trap report_skips EXIT
cargo test --workspace --lib --bins "$@"
cargo build --workspace --release --bins
# The control protocol and core build alone, without the pnc service stack (what the dataplane
# and a proxy-side agent link), and with the proxy client only.
cargo build -p control --no-default-features
cargo build -p control --no-default-features --features proxy-client
cargo test --workspace --release "$@"
