#!/usr/bin/env bash
# Which client costs PostgreSQL its CPU: samples every backend's CPU time (utime + stime from
# /proc) over SECONDS (default 8) and adds it up by the process on the other end of each
# backend's connection (matched by client port with `ss -tnp`). Run as root on the database's
# own machine, while a load runs (PERFORMANCE.md, "Lag with sampled probes").
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres).
set -euo pipefail
seconds=${1:-8}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# This server's processes only (another cluster on the machine has its own).
pids=$(psql -Atc "SELECT pid FROM pg_stat_activity")
snap() {
    for pid in $pids; do
        [ -r "/proc/$pid/stat" ] && echo "$pid $(awk '{print $14 + $15}' "/proc/$pid/stat")"
    done
}
snap > "$work/before"
ss -tnp > "$work/sockets"
sleep "$seconds"
snap > "$work/after"
psql -Atc "SELECT pid, coalesce(client_port, -1), backend_type, left(regexp_replace(query, '\s+', ' ', 'g'), 60)
             FROM pg_stat_activity" > "$work/activity"
python3 - "$work" "$seconds" "$(getconf CLK_TCK)" "$PGPORT" <<'PY'
import collections, re, sys
work, seconds, tick, port = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def ticks(name):
    return {p: int(t) for p, t in (line.split() for line in open(f"{work}/{name}") if line.strip())}
before, after = ticks("before"), ticks("after")
activity = {}
for line in open(f"{work}/activity"):
    fields = line.rstrip("\n").split("|", 3)
    if len(fields) == 4:
        activity[fields[0]] = fields
clients = {}
for line in open(f"{work}/sockets"):
    m = re.search(r"127\.0\.0\.1:(\d+)\s+\S+:" + port + r'\s+users:\(\("([^"]+)"', line)
    if m:
        clients[m.group(1)] = m.group(2)
by_client, rows = collections.Counter(), []
for pid, end in after.items():
    used = end - before.get(pid, end)
    _, client_port, kind, query = activity.get(pid, [pid, "-1", "?", ""])
    who = clients.get(client_port, kind if kind != "client backend" else "unknown client")
    by_client[who] += used
    rows.append((used, pid, who, query))
cores = lambda t: t / tick / seconds
print(f"PostgreSQL processes: {cores(sum(by_client.values())):.2f} cores over {seconds:.0f} s")
for who, used in by_client.most_common():
    print(f"  {who:32} {cores(used):.3f} cores")
print("busiest backends (cores, pid, client, last statement):")
for used, pid, who, query in sorted(rows, reverse=True)[:10]:
    print(f"  {cores(used):.3f}  {pid:>7}  {who:14} {query}")
PY
