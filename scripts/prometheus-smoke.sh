#!/usr/bin/env bash
# Scrapes a running Chronicle with a real Prometheus and checks what promtool cannot: that
# every service's /metrics is scrapable as Prometheus parses it, and that every rule of
# deploy/prometheus/rules.yml evaluates without error against the live series.
#
#   scripts/prometheus-smoke.sh [COMMAND_API_URL [QUERY_API_URL [PROJECTOR_URL]]]
#
# Defaults are the run command's addresses (http://127.0.0.1:8080, :8081, :8082).
# PROMETHEUS_PORT picks the port (default: the first free one from 19090); PROMETHEUS_BIN the
# binary (default: prometheus on PATH, Debian's package). Prometheus listens on 127.0.0.1 only
# and keeps its data in a temporary directory that is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

command_api=${1:-http://127.0.0.1:8080}
query_api=${2:-http://127.0.0.1:8081}
projector=${3:-http://127.0.0.1:8082}
prometheus_bin=${PROMETHEUS_BIN:-prometheus}
rules="$PWD/deploy/prometheus/rules.yml"

fail() { echo "prometheus-smoke: $*" >&2; exit 1; }

command -v "$prometheus_bin" >/dev/null ||
    fail "no '$prometheus_bin' binary; install Debian's prometheus package (apt-get install prometheus)"
command -v curl >/dev/null || fail "curl is needed"
command -v python3 >/dev/null || fail "python3 is needed to read the API's JSON"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [[ -n ${PROMETHEUS_PORT:-} ]]; then
    port=$PROMETHEUS_PORT
    port_open "$port" && fail "port $port is already in use"
else
    port=
    for candidate in $(seq 19090 19189); do
        if ! port_open "$candidate"; then port=$candidate; break; fi
    done
    [[ -n $port ]] || fail "no free port in 19090-19189"
fi

# A base URL as Prometheus wants it: scheme, host:port as the target, and the path (a service
# behind a prefix) in front of /metrics.
scheme_of() { [[ $1 == https://* ]] && echo https || echo http; }
target_of() {
    local rest=${1#*://}
    echo "${rest%%/*}"
}
metrics_path_of() {
    local rest=${1#*://} path=""
    [[ $rest == */* ]] && path=/${rest#*/}
    echo "${path%/}/metrics"
}

for url in "$command_api" "$query_api" "$projector"; do
    curl -fsS -o /dev/null --max-time 5 "${url%/}/metrics" ||
        fail "$url/metrics does not answer; start the system first (README, first command)"
done

workdir=$(mktemp -d)
prometheus_pid=
cleanup() {
    if [[ -n $prometheus_pid ]]; then
        kill "$prometheus_pid" 2>/dev/null || true
        wait "$prometheus_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# Same job names as deploy/prometheus/prometheus.yml, so the rules' `up{job=...}` matchers
# see these targets; 1 s intervals so two scrapes and an evaluation take seconds.
cat >"$workdir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $rules
scrape_configs:
  - job_name: command-api
    scheme: $(scheme_of "$command_api")
    metrics_path: $(metrics_path_of "$command_api")
    static_configs: [{targets: ["$(target_of "$command_api")"]}]
  - job_name: query-api
    scheme: $(scheme_of "$query_api")
    metrics_path: $(metrics_path_of "$query_api")
    static_configs: [{targets: ["$(target_of "$query_api")"]}]
  - job_name: projector
    scheme: $(scheme_of "$projector")
    metrics_path: $(metrics_path_of "$projector")
    static_configs: [{targets: ["$(target_of "$projector")"]}]
EOF

"$prometheus_bin" \
    --config.file="$workdir/prometheus.yml" \
    --storage.tsdb.path="$workdir/data" \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn \
    >"$workdir/prometheus.log" 2>&1 &
prometheus_pid=$!
api="http://127.0.0.1:$port/api/v1"
echo "prometheus-smoke: Prometheus $("$prometheus_bin" --version 2>&1 | head -1 | awk '{print $3}') on 127.0.0.1:$port (pid $prometheus_pid)"

# Each check reads an API answer on stdin, prints a verdict and exits 0 when satisfied.
cat >"$workdir/targets.py" <<'PY'
import json, sys
try:
    targets = json.load(sys.stdin)["data"]["activeTargets"]
except (ValueError, KeyError):
    print("no answer from the API yet")
    sys.exit(1)
jobs = {"command-api", "query-api", "projector"}
missing = sorted(jobs - {t["labels"]["job"] for t in targets})
bad = [f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t['lastError']}".strip()
       for t in targets if t["health"] != "up"]
if missing or bad or len(targets) != len(jobs):
    print("targets not all up: " + "; ".join(bad + [f"{job}: no target" for job in missing]))
    sys.exit(1)
print("targets: " + ", ".join(f"{t['labels']['job']} {t['scrapeUrl']} up" for t in targets))
PY
cat >"$workdir/rules.py" <<'PY'
import calendar, json, sys, time
try:
    groups = json.load(sys.stdin)["data"]["groups"]
except (ValueError, KeyError):
    print("no answer from the API yet")
    sys.exit(1)
rules = [rule for group in groups for rule in group["rules"]]
expected, since = int(sys.argv[1]), int(sys.argv[2])
evaluated = lambda r: calendar.timegm(time.strptime(r["lastEvaluation"][:19], "%Y-%m-%dT%H:%M:%S"))
stale = [r["name"] for r in rules if evaluated(r) <= since]
if stale:
    print(f"{len(stale)} rules not evaluated since every target was up, e.g. {stale[0]}")
    sys.exit(1)
not_ok = [f"{r['name']}: {r['health']} {r.get('lastError', '')}".strip()
          for r in rules if r["health"] != "ok"]
if len(rules) != expected or not_ok:
    print(f"{len(rules)} of {expected} rules loaded; not ok: " + "; ".join(not_ok[:5]))
    sys.exit(1)
active = sorted({r["name"] for r in rules if r["type"] == "alerting" and r["state"] != "inactive"})
print(f"rules: {len(rules)} in {len(groups)} groups, every one health ok; alerts pending or firing: "
      + (", ".join(active) if active else "none"))
PY

expected_rules=$(grep -cE '^\s*- (record|alert):' "$rules")

# Waits up to $2 seconds for check $1 (GET $api/$1, then $1.py with the other arguments) to pass;
# the last verdict is printed either way.
wait_for() {
    local name=$1 limit=$2 verdict=""
    for _ in $(seq 1 "$limit"); do
        kill -0 "$prometheus_pid" 2>/dev/null || { cat "$workdir/prometheus.log" >&2; fail "prometheus exited"; }
        if verdict=$(curl -fsS --max-time 2 "$api/$name" 2>/dev/null | python3 "$workdir/$1.py" "${@:3}" 2>&1); then
            echo "prometheus-smoke: $verdict"
            return 0
        fi
        sleep 1
    done
    echo "prometheus-smoke: ${verdict:-no answer from $api/$name}" >&2
    cat "$workdir/prometheus.log" >&2
    return 1
}

# Health is "unknown" until a target's first scrape and a rule's first evaluation; a few
# seconds suffice at 1 s intervals, the limits only bound a broken run.
status=0
# Rules are judged on evaluations after every target was up, so that an alert such as
# ChronicleTargetDown reports the scraped system, not the second before its first scrape.
wait_for targets 30 || status=1
wait_for rules 30 "$expected_rules" "$(date +%s)" || status=1
if [[ $status -ne 0 ]]; then
    fail "FAILED"
fi
echo "prometheus-smoke: OK"
