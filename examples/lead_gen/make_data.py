"""Regenerates the demo's data: `leads.csv` (100 synthetic companies, ranked by intent score)
and `linkedin_snapshot.json` (last month's export of their LinkedIn pages, the agent's cache).

The companies are invented; their domains are under `.example`, which is reserved and never
resolves. Run `python make_data.py` after changing this file; the output is deterministic.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from services import Company, linkedin_profile

HERE = Path(__file__).resolve().parent
SNAPSHOT_DATE = "2026-10-15"
# Companies founded after the snapshot was taken: the cache has no page for them.
NOT_IN_SNAPSHOT = {"L-072"}

PREFIXES = [
    "Bright", "Harbor", "North", "Blue", "Iron", "Silver", "Clear", "Summit", "Cedar", "Nova",
    "Quartz", "Pine", "Atlas", "Beacon", "Copper", "Delta", "Ember", "Falcon", "Granite", "Helix",
]
SUFFIXES = [
    "wave", "line", "field", "stone", "path", "gate", "point", "bridge", "leaf", "works",
]
KINDS = {
    "Analytics": "Software", "Freight": "Logistics", "Health": "Healthcare",
    "Pay": "Financial services", "Robotics": "Manufacturing", "Labs": "Software",
    "Energy": "Energy", "Insure": "Insurance", "Retail": "Retail", "Cloud": "Software",
}
COUNTRIES = ["Poland", "Germany", "Netherlands", "United Kingdom", "France", "Spain", "Sweden",
             "United States", "Canada", "Ireland"]


def companies() -> list[Company]:
    r = random.Random(20251121)
    names: set[str] = set()
    out = []
    while len(out) < 100:
        stem = r.choice(PREFIXES) + r.choice(SUFFIXES)
        kind = r.choice(list(KINDS))
        name = f"{stem} {kind}"
        if name in names:
            continue
        names.add(name)
        out.append((name, f"{stem.lower()}-{kind.lower()}.example", KINDS[kind]))
    # Ranked by the marketing team's intent score, best first.
    scores = sorted((r.randint(12, 99) for _ in out), reverse=True)
    rows = []
    for i, ((name, domain, industry), score) in enumerate(zip(out, scores), start=1):
        rows.append(Company(
            lead_id=f"L-{i:03d}",
            name=name,
            domain=domain,
            industry=industry,
            country=r.choice(COUNTRIES),
            employees=r.randint(50, 500),
            intent_score=score,
            site_pages=r.randint(12, 18),
        ))
    return rows


def main() -> None:
    rows = companies()
    with open(HERE / "leads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lead_id", "company", "domain", "industry", "country", "employees",
                    "intent_score", "site_pages"])
        for c in rows:
            w.writerow([c.lead_id, c.name, c.domain, c.industry, c.country, c.employees,
                        c.intent_score, c.site_pages])
    snapshot = {
        "exported": SNAPSHOT_DATE,
        "profiles": {c.name: linkedin_profile(c, SNAPSHOT_DATE)
                     for c in rows if c.lead_id not in NOT_IN_SNAPSHOT},
    }
    (HERE / "linkedin_snapshot.json").write_text(json.dumps(snapshot, indent=1) + "\n")


if __name__ == "__main__":
    main()
