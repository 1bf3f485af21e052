#!/usr/bin/env bash
# Cargo target runner for the shifted test pass (scripts/test.sh): runs one test binary with
# the wall clock ZAKAZ_SHIFT_DAYS days ahead (libfaketime). The offset form (`+Nd`) keeps the
# clock running and is the same in every process a test starts (the `@` start form restarts
# the clock at its start instant in each child, so a binary a test runs would be behind the
# test). Only the test process and what it starts are shifted; cargo and nextest are not
# (cargo hangs under libfaketime). Monotonic clocks are left alone: timeouts stay real.
set -euo pipefail
: "${ZAKAZ_SHIFT_DAYS:?set ZAKAZ_SHIFT_DAYS}"
export FAKETIME_DONT_FAKE_MONOTONIC=1
exec faketime -f "+${ZAKAZ_SHIFT_DAYS}d" "$@"
