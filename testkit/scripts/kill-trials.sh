#!/usr/bin/env bash
# Kills provisiond at random moments under a standard-mode device that writes, flushes
# and reads back, N times (default 100), and checks after every restart that each
# flushed byte is there: examples/tests/crash.rs, flushed_standard_mode_writes_survive_killed_servers.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROVISION_KILL_TRIALS="${1:-100}" cargo test -p provision-examples --test crash \
  flushed_standard_mode_writes_survive_killed_servers -- --nocapture
