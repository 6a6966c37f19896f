#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 15) on stable Rust (no sanitizer), after
# installing cargo-fuzz if it is missing. Crashes are saved under fuzz/artifacts/TARGET/ and
# make the script fail. Each run starts from the committed seeds in fuzz/seeds/TARGET/ (valid
# heads, chunked bodies, VAN frames, control messages, MPEG-TS; tests/tests/fuzz_seeds.rs builds
# and checks them; core_events' event programs come from control::core::fuzzing's tests) plus what earlier runs found in fuzz/corpus/TARGET/, where new inputs go
# (git-ignored, so the seeds stay as committed).
#   scripts/fuzz.sh 15             # every target, 15 s each
#   scripts/fuzz.sh 60 chunked     # one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
# One build for all targets, then the timed runs (the build time is not counted against them).
cargo fuzz build --fuzz-dir fuzz --sanitizer none
for target in "${targets[@]}"; do
  echo "fuzz: ${target} for ${seconds}s"
  mkdir -p "fuzz/corpus/${target}"
  if [ ! -d "fuzz/seeds/${target}" ]; then
    echo "fuzz: no seeds for ${target} in fuzz/seeds/${target}" >&2
    exit 1
  fi
  log="$(mktemp)"
  if cargo fuzz run --fuzz-dir fuzz --sanitizer none "${target}" "fuzz/corpus/${target}" \
    "fuzz/seeds/${target}" -- \
    -max_total_time="${seconds}" -print_final_stats=1 >"${log}" 2>&1; then
    grep -E '^(INFO: seed corpus|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "${log}" || tail -n 5 "${log}"
    rm -f "${log}"
  else
    cat "${log}"
    rm -f "${log}"
    echo "fuzz: ${target} FAILED (see the artifact above)" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
