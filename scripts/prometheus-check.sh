#!/usr/bin/env bash
# Scrapes a running Chronicle with a real Prometheus (Debian's `prometheus` package, installed
# with apt when missing) on 127.0.0.1, evaluating deploy/prometheus/rules.yml, and asserts that
# every target is up and every rule's health is ok, through Prometheus's HTTP API.
#
#   scripts/prometheus-check.sh [command-api addr] [query-api addr] [projector addr]
#
# Defaults are the smoke run's addresses (scripts/smoke.sh calls it). PROMETHEUS_PORT (default
# 19090) is where it listens; it stops when the check ends.
set -euo pipefail
cd "$(dirname "$0")/.."

command_api=${1:-127.0.0.1:18080}
query_api=${2:-127.0.0.1:18081}
projector=${3:-127.0.0.1:18082}
port=${PROMETHEUS_PORT:-19090}

if ! command -v prometheus >/dev/null; then
    apt-get install -y -qq prometheus >/dev/null
fi

dir=$(mktemp -d)
cp deploy/prometheus/rules.yml "$dir/rules.yml"
# deploy/prometheus/prometheus.yml discovers compose replicas through Docker's DNS; here the
# targets are static, with the same job names (the `service` label of the metrics).
cat >"$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - rules.yml
scrape_configs:
  - job_name: command-api
    static_configs: [{targets: ["$command_api"]}]
  - job_name: query-api
    static_configs: [{targets: ["$query_api"]}]
  - job_name: projector
    static_configs: [{targets: ["$projector"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$port"]}]
YAML
promtool check config "$dir/prometheus.yml" >/dev/null

prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" >"$dir/prometheus.log" 2>&1 &
prom=$!
stop_prometheus() { kill "$prom" 2>/dev/null || true; wait "$prom" 2>/dev/null || true; rm -rf "$dir"; }
trap stop_prometheus EXIT

# Up to 60 s for every target to be scraped and every rule group to be evaluated once.
api="http://127.0.0.1:$port/api/v1"
verdict=""
for _ in $(seq 1 60); do
    sleep 1
    targets=$(curl -fsS "$api/targets?state=active" 2>/dev/null) || continue
    rules=$(curl -fsS "$api/rules" 2>/dev/null) || continue
    if verdict=$(python3 - "$targets" "$rules" <<'PY'
import json, sys
targets = json.loads(sys.argv[1])["data"]["activeTargets"]
groups = json.loads(sys.argv[2])["data"]["groups"]
problems = []
jobs = {t["labels"]["job"] for t in targets}
for job in ("command-api", "query-api", "projector", "prometheus"):
    if job not in jobs:
        problems.append(f"no target for job {job}")
for t in targets:
    if t["health"] != "up":
        problems.append(f"target {t['scrapeUrl']} is {t['health']}: {t.get('lastError', '')}")
rules = [r for g in groups for r in g["rules"]]
if not rules:
    problems.append("no rules loaded")
for r in rules:
    if r.get("health") != "ok":
        problems.append(f"rule {r['name']} is {r.get('health')}: {r.get('lastError', '')}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{len(targets)} targets up, {len(rules)} rules healthy")
PY
    ); then
        echo "prometheus: $verdict"
        exit 0
    fi
done
echo "prometheus check failed:" >&2
echo "$verdict" >&2
tail -20 "$dir/prometheus.log" >&2
exit 1
