#!/usr/bin/env python3
"""Checks that every alert of deploy/prometheus/rules.yml can be acted on: it has a severity
of `critical` or `warning`, a summary and a description, a `runbook_url` of
`docs/runbooks/<alertname>.md`, that page exists with the four sections a responder needs, and
the runbook index lists it; and that no page is left for an alert that no longer exists.
promtool checks that rules parse, not that someone woken at night finds the page.

Standard library only: the alert blocks are read with regular expressions, since rules.yml
keeps one layout (alert, expr, for, labels, annotations).
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/prometheus/rules.yml"
RUNBOOKS = ROOT / "docs/runbooks"
SECTIONS = ("## What it means", "## Confirm", "## What to do", "## Verify")


def alerts(text):
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^\s*- alert:\s*(\S+)\s*$", text, re.M)]
    ends = [m.start() for m in re.finditer(r"^\s*- (?:alert|record):|^  - name:", text, re.M)]
    for start, name in starts:
        end = min([e for e in ends if e > start] + [len(text)])
        yield name, text[start:end]


def main():
    problems = []
    index = (RUNBOOKS / "README.md").read_text()
    names = []
    for name, block in alerts(RULES.read_text()):
        names.append(name)
        severity = re.search(r"^\s*severity:\s*(\S+)", block, re.M)
        if not severity or severity.group(1) not in ("critical", "warning"):
            problems.append(f"{name}: labels.severity must be critical or warning")
        for annotation in ("summary", "description"):
            if not re.search(rf"^\s*{annotation}:\s*\S", block, re.M):
                problems.append(f"{name}: no annotations.{annotation}")
        url = re.search(r"^\s*runbook_url:\s*(\S+)", block, re.M)
        expected = f"docs/runbooks/{name}.md"
        if not url or url.group(1).strip("'\"") != expected:
            problems.append(f"{name}: annotations.runbook_url must be {expected}")
        page = RUNBOOKS / f"{name}.md"
        if not page.exists():
            problems.append(f"{name}: no runbook {page.relative_to(ROOT)}")
        else:
            text = page.read_text()
            if not text.startswith(f"# {name}\n"):
                problems.append(f"{page.name}: must start with '# {name}'")
            problems += [f"{page.name}: no section '{s}'" for s in SECTIONS if s not in text]
        if f"[{name}]({name}.md)" not in index:
            problems.append(f"{name}: not listed in docs/runbooks/README.md")
    if not names:
        problems.append(f"no alerts found in {RULES}")
    for page in sorted(RUNBOOKS.glob("*.md")):
        if page.name != "README.md" and page.stem not in names:
            problems.append(f"{page.name}: no alert of that name in rules.yml")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"runbooks: {len(names)} alerts, each with a severity, a summary, a description and a runbook "
          f"page (indexed, with its four sections) at its runbook_url")


if __name__ == "__main__":
    main()
