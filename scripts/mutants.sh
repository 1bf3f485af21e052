#!/usr/bin/env bash
# Mutation testing (cargo-mutants, from crates.io) over the pure modules: each mutant (a
# function body replaced, an operator flipped) is built and the crate's tests run against it;
# a mutant the tests do not catch is a gap in the tests (or an equivalent change). Writes the
# counts per module and in all to target/mutants/summary.txt; docs/testing.md lists the
# missed ones and why. Takes a few hours on 2 cores: run by hand, not in CI.
#
#   bash scripts/mutants.sh                 # every module below
#   bash scripts/mutants.sh money props     # only modules whose path contains these words
#
# Needs what scripts/test.sh needs (ClickHouse, the MariaDB shard servers): the crates' own
# integration tests run against every mutant too.
set -euo pipefail
cd "$(dirname "$0")/.."

MODULES=(
    zakaz-core:crates/zakaz-core/src/money.rs
    zakaz-core:crates/zakaz-core/src/time.rs
    zakaz-core:crates/zakaz-core/src/utm.rs
    zakaz-core:crates/zakaz-core/src/calendar.rs
    zakaz-core:crates/zakaz-core/src/checks.rs
    zakaz-core:crates/zakaz-core/src/secret.rs
    zakaz-core:crates/zakaz-core/src/settings.rs
    ingest-direct:crates/ingest-direct/src/report.rs
    ingest-gmail:crates/ingest-gmail/src/report.rs
    ingest-gmail:crates/ingest-gmail/src/mime.rs
    ingest-qtickets:crates/ingest-qtickets/src/model.rs
    ingest-qtickets:crates/ingest-qtickets/src/facts.rs
    camp-queue:crates/camp-queue/src/props.rs
)

if ! command -v cargo-mutants >/dev/null 2>&1; then
    echo "==> installing cargo-mutants"
    cargo install --locked cargo-mutants
fi
bash scripts/mariadb-shards.sh start >/dev/null

out=target/mutants
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
for entry in "${MODULES[@]}"; do
    package=${entry%%:*} file=${entry#*:}
    if [ $# -gt 0 ]; then
        wanted=""
        for word in "$@"; do [[ "$file" == *"$word"* ]] && wanted=1; done
        [ -n "$wanted" ] || continue
    fi
    name=$(basename "$(dirname "$(dirname "$file")")")-$(basename "$file" .rs)
    echo "==> $file"
    # The package's own tests (unit and integration) judge each mutant; a mutant whose tests
    # run 3 times longer than the clean tree's is a timeout (an infinite loop, usually).
    cargo mutants --package "$package" --file "$file" --test-package "$package" \
        --test-tool nextest --baseline run --timeout-multiplier 3 --no-shuffle \
        --output "$out/$name" >"$out/$name.log" 2>&1 || true
    count() { if [ -f "$out/$name/mutants.out/$1.txt" ]; then grep -c . "$out/$name/mutants.out/$1.txt" || true; else echo 0; fi; }
    caught=$(count caught) missed=$(count missed) unviable=$(count unviable) timeout=$(count timeout)
    printf '%-28s caught %4d  missed %4d  timeout %3d  unviable %4d\n' \
        "$name" "$caught" "$missed" "$timeout" "$unviable" | tee -a "$summary"
done
# Viable mutants are those that built; a timeout counts as caught (the tests did not pass).
awk '{c += $3; m += $5; t += $7; u += $9} END {
    v = c + m + t
    printf "all                          caught %4d  missed %4d  timeout %3d  unviable %4d  caught %.1f%% of %d viable\n", c, m, t, u, (v ? 100 * (c + t) / v : 0), v
}' "$summary" | tee -a "$summary"
echo "missed mutants: $out/*/mutants.out/missed.txt"
