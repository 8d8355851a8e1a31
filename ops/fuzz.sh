#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside input (fuzz/fuzz_targets), with cargo
# fuzz (libFuzzer) on nightly Rust. Not part of the test command: a run takes long. The seed
# corpora (fuzz/corpus/<target>) run in CI as ordinary tests (fuzz/targets/tests/seeds.rs).
#
#   bash ops/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# New inputs found go to fuzz/corpus-run/<target> (not committed; the committed seeds in
# fuzz/corpus/<target> are read, never written); a crash
# is saved under fuzz/artifacts/<target>/ and stops that target: add it to the corpus as a
# regression seed once fixed. A summary line per target (executions, coverage, result) is
# appended to fuzz/last-run.txt.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_rust
cd "$IOC_ROOT/fuzz"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
rustup toolchain list | grep -q nightly || die "nightly Rust is needed: rustup toolchain install nightly"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz from crates.io"
  cargo install --locked cargo-fuzz >"$IOC_RUN_DIR/cargo-fuzz.log" 2>&1 || die "cargo install cargo-fuzz failed"
fi
: >last-run.txt
status=0
for t in "${targets[@]}"; do
  log "fuzzing $t for ${secs}s"
  mkdir -p "corpus/$t" "corpus-run/$t"
  out="$IOC_RUN_DIR/fuzz-$t.log"
  if cargo +nightly fuzz run "$t" "corpus-run/$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 >"$out" 2>&1; then
    result=ok
  else
    result="FAILED (see $out and fuzz/artifacts/$t)"
    status=1
  fi
  stats=$(grep -E '^#[0-9]+' "$out" | tail -n1)
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -Eo '[0-9]+$' || true)
  echo "$t: ${execs:-?} executions; last: ${stats:-?}; $result" | tee -a last-run.txt
done
exit $status
