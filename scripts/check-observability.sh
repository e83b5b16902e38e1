#!/usr/bin/env bash
# Checks the observability assets with the real tools, offline, from a fresh clone:
#   - the Prometheus scrape config and the alerting rules (promtool check config / rules),
#   - the rules' unit tests: every alert fires and stays silent (promtool test rules),
#   - every dashboard panel's PromQL, and that rules and panels only read catalogued series
#     (scripts/check-dashboard-queries.py, promtool again),
#   - every dashboard against Grafana's published schema (@grafana/schema types, tsc),
#   - every alert's severity, annotations and runbook page (scripts/check-runbooks.py),
#   - when CHECK_METRICS_URLS names running services' /metrics (space-separated), each scrape
#     against the metric catalogue and promtool check metrics (scripts/check-metrics-scrape.py).
# Runs every check even after a failure, so one run lists every problem; exits 1 if any failed.
# Needs promtool (Debian's prometheus package), python3, and Node 20 with npm; `npm ci` runs
# once, when deploy/grafana/check/node_modules is missing (npm registry needed then).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

if ! command -v promtool >/dev/null; then
    echo "check-observability: promtool not found; install Debian's prometheus package" \
        "(apt-get install prometheus), which provides promtool 2.42" >&2
    exit 2
fi
for tool in python3 node npm; do
    command -v "$tool" >/dev/null || { echo "check-observability: $tool not found" >&2; exit 2; }
done

failed=()
run() {
    local name=$1
    shift
    echo "== $name: $*"
    if "$@"; then
        echo "   ok"
    else
        echo "   FAILED: $name" >&2
        failed+=("$name")
    fi
}

grafana_check() {
    (
        cd deploy/grafana/check || exit 1
        if [[ ! -d node_modules ]]; then
            npm ci --no-audit --no-fund || exit 1
        fi
        npm run --silent check
    )
}

run "scrape config" promtool check config deploy/prometheus/prometheus.yml
run "alerting rules" promtool check rules deploy/prometheus/rules.yml
run "rule tests" promtool test rules deploy/prometheus/rules_test.yml
run "dashboard PromQL" python3 scripts/check-dashboard-queries.py
run "dashboard schema" grafana_check
run "runbooks" python3 scripts/check-runbooks.py
if [[ -n "${CHECK_METRICS_URLS:-}" ]]; then
    # shellcheck disable=SC2086 # one argument per URL
    run "metrics scrapes" python3 scripts/check-metrics-scrape.py $CHECK_METRICS_URLS
fi

if ((${#failed[@]})); then
    echo "check-observability: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "check-observability: all checks passed"
