#!/usr/bin/env bash
# Benchmark of `nixseal deploy` (figures, not a test). Needs root: it runs in a
# private mount namespace on a fresh ramfs. Prints, for 1000 small secrets, the
# median and minimum of interleaved rounds: a bare single-thread loop reading
# and decrypting the same files with the age crate, the same loop on rayon, a
# first deploy (mount + install), a no-change redeploy, a dry run, and the
# ratios deploy / bare loop. NIXSEAL_BENCH_SECRETS / NIXSEAL_BENCH_RUNS
# override 1000 / 7. The code is bench/deploy.rs (a cargo bench target of
# nixseal-cli, so it runs the release `nixseal` binary it is built with).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -q -p nixseal-cli --bench deploy
