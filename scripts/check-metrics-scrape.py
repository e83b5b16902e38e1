#!/usr/bin/env python3
"""Checks live /metrics answers against the metric catalogue, docs/metrics.md.

Usage: check-metrics-scrape.py URL_OR_FILE...

For each scrape: `promtool check metrics` reports nothing; every family has # HELP and # TYPE;
every family carries the chronicle_ prefix and has a row in the catalogue with the same type,
label names and HELP text; a histogram's buckets are the catalogue's. The Rust scrape tests
(test-support's `exposition`) hold each service to the same rules; this is for a running system
(the smoke run, or by hand: `scripts/check-metrics-scrape.py http://127.0.0.1:8080/metrics`).
Exits 1 when a scrape departs from the catalogue, 2 when a scrape cannot be read.
"""

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def catalogue():
    """Families and buckets of docs/metrics.md, by name."""
    rows, buckets, section = {}, {}, ""
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("| `chronicle_"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = cells[0].strip("`")
        if section == "Families":
            labels = {label.strip().strip("`") for label in cells[2].split(",")} - {""}
            rows[name] = {"type": cells[1], "labels": labels, "help": cells[3]}
        elif section.startswith("Histogram buckets"):
            buckets[name] = {float(bound) for bound in cells[1].split(",")}
    for name, bounds in buckets.items():
        rows[name]["buckets"] = bounds
    return rows


def read(source):
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as answer:
            return answer.read().decode()
    return Path(source).read_text()


def problems(text, rows):
    families, found = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line[7:].split(" ", 1)
            family = families.setdefault(parts[0], {"labels": set(), "bounds": set()})
            family["help" if line.startswith("# HELP") else "type"] = parts[1] if len(parts) > 1 else ""
            continue
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if not match:
            found.append(f"malformed sample: {line}")
            continue
        name = match.group(1)
        owner = max(
            (f for f in families if name == f or name in (f + "_bucket", f + "_sum", f + "_count")),
            key=len,
            default=None,
        )
        if owner is None or "type" not in families[owner]:
            found.append(f"sample before its # TYPE: {line}")
            continue
        for label, value in LABEL.findall(match.group(3) or ""):
            if label == "le":
                families[owner]["bounds"].add(value)
            else:
                families[owner]["labels"].add(label)
    for name, family in sorted(families.items()):
        if not family.get("help"):
            found.append(f"{name}: no # HELP")
        if "type" not in family:
            found.append(f"{name}: no # TYPE")
            continue
        if not name.startswith("chronicle_"):
            found.append(f"{name}: not prefixed with chronicle_")
            continue
        row = rows.get(name)
        if row is None:
            found.append(f"{name}: not in docs/metrics.md")
            continue
        if family["type"] != row["type"]:
            found.append(f"{name}: type {family['type']}, catalogue {row['type']}")
        if family["labels"] != row["labels"]:
            found.append(f"{name}: labels {sorted(family['labels'])}, catalogue {sorted(row['labels'])}")
        if family.get("help") != row["help"]:
            found.append(f"{name}: HELP {family.get('help')!r}, catalogue {row['help']!r}")
        bounds = {float(b) for b in family["bounds"] if b != "+Inf"}
        if row["type"] == "histogram" and bounds and bounds != row.get("buckets"):
            found.append(f"{name}: buckets {sorted(bounds)}, catalogue {sorted(row.get('buckets', []))}")
    return found


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows, failed = catalogue(), False
    for source in sys.argv[1:]:
        try:
            text = read(source)
        except OSError as error:
            print(f"{source}: cannot read: {error}", file=sys.stderr)
            return 2
        found = problems(text, rows)
        promtool = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        said = (promtool.stdout + promtool.stderr).strip()
        if said or promtool.returncode != 0:
            found.append(f"promtool check metrics: {said or promtool.returncode}")
        if found:
            failed = True
            print(f"{source}:", *found, sep="\n  ", file=sys.stderr)
        else:
            families = sum(1 for line in text.splitlines() if line.startswith("# TYPE "))
            print(f"{source}: {families} families, all catalogued; promtool clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
