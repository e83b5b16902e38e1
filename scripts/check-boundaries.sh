#!/usr/bin/env bash
# Checks the crate boundaries of docs/decisions/0006-crate-boundaries.md from the resolved
# dependency graph (`cargo tree`, offline, nothing is built):
#
# - `events` links no database driver, so a RabbitMQ consumer of our events does not either;
# - each crate of ours imports only the crates of ours it may (no import runs back up, services
#   never import each other);
# - `test-support` is only ever a dev-dependency.
#
# Exits 1 naming every rule broken.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() {
    echo "crate boundaries: $*" >&2
    failed=1
}

tree() { cargo tree --offline --locked "$@"; }

# The whole graph `events` links (normal and build dependencies, any depth).
drivers=$(tree -p events -e normal,build --prefix none |
    awk '{print $1}' | grep -E '^(sqlx|tokio-postgres|postgres|libpq|lapin)' | sort -u || true)
if [[ -n "$drivers" ]]; then
    fail "events links a database or broker driver: $(echo $drivers)"
fi

# Which crates of ours each crate may import (normal dependencies; tests may use more).
declare -A allowed=(
    [events]=""
    [event-store]="events"
    [service-kit]="auth events event-store"
    [auth]=""
    [command-api]="events event-store service-kit auth"
    [projector]="events event-store service-kit"
    [query-api]="events event-store service-kit auth"
    [chronicle]="events event-store service-kit auth command-api projector query-api"
    [bench]="events event-store service-kit auth command-api projector query-api"
    [test-support]="events service-kit auth"
    [faults]="events event-store auth"
)
members=$(tree --workspace -e normal --depth 0 --prefix none | awk '{print $1}' | sort -u)
for member in $members; do
    if [[ -z "${allowed[$member]+set}" ]]; then
        fail "$member is not in scripts/check-boundaries.sh: say what it may import"
        continue
    fi
    # Direct dependencies that are workspace members: cargo prints them with their path.
    ours=$(tree -p "$member" -e normal --depth 1 --prefix none | tail -n +2 | grep ' (/' | awk '{print $1}' || true)
    for dependency in $ours; do
        if [[ " ${allowed[$member]} " != *" $dependency "* ]]; then
            fail "$member imports $dependency, which it may not (allowed: ${allowed[$member]:-nothing of ours})"
        fi
    done
done

# test-support reaches a crate only through dev-dependencies: inverted, its tree of normal and
# build edges is itself alone (it is a member, so cargo always prints it).
dependents=$(tree --workspace -e normal,build -i test-support --prefix none | tail -n +2 | awk '{print $1}' | sort -u)
if [[ -n "$dependents" ]]; then
    fail "test-support is a normal or build dependency of: $(echo $dependents)"
fi

if ((failed)); then
    exit 1
fi
echo "crate boundaries hold: events links no database driver; every import runs down"
