#!/usr/bin/env python3
"""Checks the PromQL of every Grafana panel, and the names every query and rule reads.

1. Each panel query (`expr` of a target, rows' nested panels included) of
   deploy/grafana/dashboards/*.json becomes one recording rule of a temporary rules file, and
   `promtool check rules` parses it: a query Prometheus would refuse fails here, not on a
   dashboard at 3 a.m. Grafana's variables are replaced first by what they expand to:
   `$__rate_interval` and friends by a duration, dashboard variables (only used inside
   `=~"..."` matchers) by the regex `.*`.
2. Every `chronicle_*` series the panels and deploy/prometheus/rules.yml name is a family of
   docs/metrics.md (or its `_bucket`, `_sum`, `_count`), and every recorded series they name
   (`level:metric:operations`) is recorded in rules.yml. promtool cannot catch a misspelt
   metric: it parses, and then matches nothing forever.

Standard library only; needs `promtool` on PATH (Debian's `prometheus` package).
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
RULES = ROOT / "deploy/prometheus/rules.yml"
CATALOGUE = ROOT / "docs/metrics.md"

# Grafana's built-in interval variables, replaced by a duration of the same kind.
BUILTIN = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
    "__range_ms": "3600000",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def panels(items):
    for panel in items or []:
        yield panel
        yield from panels(panel.get("panels"))


def expand(expr, variables, where):
    def replace(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTIN:
            return BUILTIN[name]
        if name in variables:
            return ".*"
        raise SystemExit(f"{where}: ${name} is neither a Grafana interval variable nor a variable of the dashboard")

    return VARIABLE.sub(replace, expr)


def queries():
    found = []
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        raise SystemExit(f"no dashboards in {DASHBOARDS}")
    for path in files:
        dashboard = json.loads(path.read_text())
        variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
        for panel in panels(dashboard.get("panels")):
            if panel.get("type") == "row":
                continue
            targets = panel.get("targets") or []
            if not targets:
                raise SystemExit(f"{path.name}: panel {panel.get('id')} ({panel.get('title')!r}) has no query")
            for target in targets:
                where = f"{path.name} panel {panel.get('id')} ({panel.get('title')!r}) query {target.get('refId')}"
                expr = (target.get("expr") or "").strip()
                if not expr:
                    raise SystemExit(f"{where}: empty expr")
                found.append((where, dashboard["uid"], panel["id"], target["refId"], expand(expr, variables, where)))
    return files, found


def catalogue():
    families = set(re.findall(r"^\| `(chronicle_\w+)` \| (?:counter|gauge|histogram) \|", CATALOGUE.read_text(), re.M))
    if not families:
        raise SystemExit(f"{CATALOGUE}: no metric families found in its table")
    histograms = re.findall(r"^\| `(chronicle_\w+)` \| histogram \|", CATALOGUE.read_text(), re.M)
    series = set(families)
    for family in histograms:
        series |= {family + "_bucket", family + "_sum", family + "_count"}
    return series


def names_in(expr):
    """Series names an expression reads: identifiers that are neither functions nor keywords."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_clauses = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*[\[{)\s,]|$)", without_clauses)
    return {t for t in tokens if t.startswith("chronicle_") or ":" in t}


def main():
    promtool = shutil.which("promtool")
    if not promtool:
        raise SystemExit("promtool not found: install Debian's prometheus package (apt-get install prometheus)")

    files, found = queries()
    with tempfile.TemporaryDirectory() as tmp:
        rules_file = Path(tmp) / "dashboard-queries.rules.yml"
        group = {"name": "dashboard-queries", "rules": []}
        for _, uid, panel_id, ref_id, expr in found:
            record = f"dashboard_query:{re.sub(r'[^A-Za-z0-9_]', '_', uid)}:panel_{panel_id}_{ref_id}"
            group["rules"].append({"record": record, "expr": expr})
        # JSON is YAML: no dependency needed to write the rules file.
        rules_file.write_text(json.dumps({"groups": [group]}, indent=2))
        result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            print(output, file=sys.stderr)
            raise SystemExit(f"promtool rejected a panel query of {', '.join(f.name for f in files)}")

    known = catalogue()
    # Comments would otherwise read as part of the expression above them.
    rules_text = re.sub(r"^\s*#.*\n", "", RULES.read_text(), flags=re.M)
    recorded = set(re.findall(r"^\s*- record:\s*(\S+)", rules_text, re.M))
    unknown = []
    for where, *_, expr in found:
        for name in names_in(expr):
            if name not in known and name not in recorded:
                unknown.append(f"{where}: {name}")
    for match in re.finditer(r"^\s*(?:- record|- alert):.*?\n\s*expr:\s*(\|?)(.*?)(?=\n\s*(?:for|labels|annotations|- record|- alert|- name):|\Z)",
                             rules_text, re.M | re.S):
        for name in names_in(match.group(2)):
            if name not in known and name not in recorded:
                unknown.append(f"rules.yml: {name}")
    if unknown:
        print("\n".join(sorted(set(unknown))), file=sys.stderr)
        raise SystemExit("series above are neither in docs/metrics.md nor recorded in rules.yml")

    print(f"dashboard queries: {len(found)} panel queries of {len(files)} dashboards are valid PromQL "
          f"({output.splitlines()[-1].strip()}); every series they and rules.yml read is catalogued or recorded")


if __name__ == "__main__":
    main()
