"""A lead-generation agent, written as a customer would write it: the official OpenAI SDK for
the models, three outside services marked as tools, and no ironhost code in the call path.

For each company in leads.csv (ranked by intent score) it looks the company up on LinkedIn,
enriches it (Clearbit-style), crawls its website, asks a small model whether it fits, has a
reasoning model write a research brief from the site, and has a third model draft the opening
line of an outreach email. It writes the qualified leads to a CSV file and prints a summary.

Run it under ironhost (from this folder, which holds its ironhost.toml):

    ironhost start agent.py --budget 50
    ironhost start agent.py --budget 50 -- --pace 30m     # spread over 30 minutes for a talk

See README.md for what happens at leads 34, 67 and 85, and how to move those triggers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import ironhost
import openai
from openai import AsyncOpenAI

from services import (
    LIVE_AS_OF,
    SECTIONS,
    ClearbitAPI,
    Company,
    Latency,
    LinkedInAPI,
    NotFound,
    RateLimited,
    SiteCrawler,
)

HERE = Path(__file__).resolve().parent

# Exit codes besides 0 (all leads processed).
EXIT_OUTPUT = 1  # the results could not be written
EXIT_INPUT = 2  # bad arguments or input files
EXIT_BUDGET = 3  # stopped: the budget does not cover the next call
EXIT_INTERRUPTED = 130  # Ctrl-C: what was done is written

#: LinkedIn's median answer time, for the time the open circuit saved.
LINKEDIN_MEDIAN_S = 0.140


def parse_duration(text: str) -> float:
    """`30m`, `90s`, `1h` or plain seconds, as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"`{text}` is not a duration such as 30m, 90s or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def arguments(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lead_gen", description=__doc__.split("\n\n")[0])
    p.add_argument("--leads", type=Path, default=HERE / "leads.csv",
                   help="the companies to work through (default: leads.csv here)")
    p.add_argument("--limit", type=int, default=None, help="only the first N leads")
    p.add_argument("--out", type=Path, default=Path("qualified_leads.csv"),
                   help="where to write the results (default: ./qualified_leads.csv)")
    p.add_argument("--pace", type=parse_duration, default=0.0,
                   help="spread the run over this long (30m for a live talk; default: "
                        "as fast as the services answer)")
    p.add_argument("--linkedin-quota", type=int, default=33,
                   help="LinkedIn lookups allowed per window before it answers 429 "
                        "(default 33: the rate limit hits at lead 34; -1 for none)")
    p.add_argument("--linkedin-window", type=parse_duration, default=3600.0,
                   help="how long LinkedIn's quota window lasts (default 1h)")
    p.add_argument("--research-min-intent", type=int, default=20,
                   help="leads with at least this intent score get a deep-research brief")
    p.add_argument("--max-pages", type=int, default=18, help="site pages read per company")
    p.add_argument("--latency-scale", type=float, default=1.0,
                   help="multiply the simulated services' latency (0: answer at once)")
    p.add_argument("--snapshot", type=Path, default=HERE / "linkedin_snapshot.json",
                   help="the LinkedIn export used when the live API cannot answer")
    p.add_argument("--qualify-model", default="gpt-4o-mini")
    p.add_argument("--research-model", default="o1")
    p.add_argument("--draft-model", default="gpt-4o")
    a = p.parse_args(argv)
    if a.limit is not None and a.limit < 1:
        p.error(f"--limit must be at least 1, not {a.limit}")
    if a.linkedin_window <= 0:
        p.error("--linkedin-window must be more than 0")
    if a.linkedin_quota < -1:
        p.error(f"--linkedin-quota must be -1 (no quota) or more, not {a.linkedin_quota}")
    if a.max_pages < 1:
        p.error(f"--max-pages must be at least 1, not {a.max_pages}")
    if a.latency_scale < 0:
        p.error(f"--latency-scale must not be negative, not {a.latency_scale}")
    return a


def load_leads(path: Path) -> List[Company]:
    need = ["lead_id", "company", "domain", "industry", "country", "employees",
            "intent_score", "site_pages"]
    leads = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
            for row in reader:
                n = reader.line_num
                empty = [c for c in need if row.get(c) in (None, "")]
                if empty:
                    raise ValueError(f"{path}:{n}: no value for {', '.join(empty)}")
                try:
                    leads.append(Company(
                        lead_id=row["lead_id"], name=row["company"], domain=row["domain"],
                        industry=row["industry"], country=row["country"],
                        employees=int(row["employees"]), intent_score=int(row["intent_score"]),
                        site_pages=int(row["site_pages"]),
                    ))
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: {e}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV file: {e}") from None
    if not leads:
        raise ValueError(f"{path}: no leads")
    return leads


def clock() -> str:
    return time.strftime("%H:%M:%S")


def say(text: str) -> None:
    print(f"[{clock()}] {text}", flush=True)


def money(usd: float) -> str:
    return f"${usd:,.2f}"


def spend_line() -> str:
    s = ironhost.current()
    if s.budget_usd is None:
        return f"{money(s.cost_usd)} spent"
    return f"{money(s.cost_usd)} / {money(s.budget_usd)}"


@dataclass
class Lead:
    company: Company
    tier: str = ""
    linkedin_source: str = ""
    decision_maker: str = ""
    fit: str = ""
    brief: str = ""
    opener: str = ""
    cost_usd: float = 0.0
    seconds: float = 0.0
    error: str = ""


def lead_fallback(lead: Lead) -> Optional[str]:
    """What served the lead's LinkedIn profile when the live API could not: "cache" (the
    export) or "placeholder"; None when the live API did."""
    if lead.linkedin_source.startswith("cache"):
        return "cache"
    if lead.linkedin_source == "placeholder":
        return "placeholder"
    return None


@dataclass
class Run:
    """What the agent saw, for its summary."""

    done: List[Lead] = field(default_factory=list)
    rate_limited_at: List[str] = field(default_factory=list)
    blocked: int = 0
    circuit_seen_at: Optional[str] = None
    redactions_seen: List[str] = field(default_factory=list)
    budget_90_at: Optional[str] = None
    stopped: Optional[str] = None
    interrupted: bool = False


class Agent:
    def __init__(self, args: argparse.Namespace, leads: List[Company]) -> None:
        self.args = args
        self.leads = leads
        by_name = {c.name: c for c in leads}
        scale = args.latency_scale
        quota = None if args.linkedin_quota < 0 else args.linkedin_quota
        self.linkedin = LinkedInAPI(by_name, quota, args.linkedin_window,
                                    Latency("linkedin", LINKEDIN_MEDIAN_S * 1000, scale),
                                    as_of=LIVE_AS_OF)
        self.clearbit = ClearbitAPI(by_name, Latency("clearbit", 110, scale))
        self.crawler = SiteCrawler(by_name, Latency("crawler", 160, scale))
        self.snapshot_date, self.snapshot = load_snapshot(args.snapshot)
        self.llm = AsyncOpenAI()
        self.run = Run()

        # The tools: each call goes through ironhost's policies (circuit breaker, PII).
        @ironhost.tool("linkedin_lookup")
        async def linkedin_lookup(company: str) -> dict:
            try:
                return await self.linkedin.lookup(company)
            except RateLimited as e:
                raise ironhost.ToolError(str(e), kind="rate-limited") from e

        @ironhost.tool("clearbit_enrich")
        async def clearbit_enrich(domain: str) -> dict:
            return await self.clearbit.enrich(domain)

        @ironhost.tool("fetch_site")
        async def fetch_site(domain: str, section: str, max_pages: int) -> list:
            return await self.crawler.crawl(domain, section, max_pages)

        self.linkedin_lookup = linkedin_lookup
        self.clearbit_enrich = clearbit_enrich
        self.fetch_site = fetch_site

    # ---- the fallback chain for LinkedIn: live API, last month's export, a placeholder ----

    async def linkedin_profile(self, lead: Lead) -> dict:
        c = lead.company
        try:
            profile = await self.linkedin_lookup(c.name)
            lead.linkedin_source = "live"
            return profile
        except ironhost.CircuitOpen:
            self.run.blocked += 1
            if self.run.circuit_seen_at is None:
                self.run.circuit_seen_at = c.lead_id
                say(f"{c.lead_id} LinkedIn's circuit is open: ironhost blocks the calls; "
                    f"lookups go to the {self.snapshot_date} export until it recovers")
        except ironhost.ToolError as e:
            if e.kind != "rate-limited":
                raise
            self.run.rate_limited_at.append(c.lead_id)
            say(f"{c.lead_id} LinkedIn rate-limited ({e}): using the {self.snapshot_date} export")
        cached = self.snapshot.get(c.name)
        if cached is not None:
            lead.linkedin_source = f"cache {self.snapshot_date}"
            return cached
        lead.linkedin_source = "placeholder"
        say(f"{c.lead_id} {c.name} is not in the export either: placeholder profile")
        return {"company": c.name, "decision_makers": [], "source": "placeholder"}

    # ---- one lead ---------------------------------------------------------------------------

    async def process(self, lead: Lead) -> None:
        c = lead.company
        a = self.args
        deep = c.intent_score >= a.research_min_intent
        lead.tier = "A" if c.intent_score >= 60 else ("B" if deep else "C")
        lookups = [self.linkedin_profile(lead), self.clearbit_enrich(c.domain)]
        if deep:
            lookups += [self.fetch_site(c.domain, s, a.max_pages) for s in SECTIONS]
        # Wait for all of them even when one fails, so nothing of this lead runs on later.
        found = await asyncio.gather(*lookups, return_exceptions=True)
        failed = next((f for f in found if isinstance(f, BaseException)), None)
        if failed is not None:
            raise failed
        profile, firmo, sections = found[0], found[1], found[2:]
        people = profile.get("decision_makers") or []
        if people:
            lead.decision_maker = f"{people[0]['name']} ({people[0]['title']})"

        answer = await self.llm.chat.completions.create(
            model=a.qualify_model,
            max_tokens=80,
            messages=[
                {"role": "system", "content": "You qualify B2B leads for a sales team. "
                 "Say in one sentence whether the company fits and why."},
                {"role": "user", "content": f"Qualify lead {c.lead_id}: {c.name}.\n"
                 f"LinkedIn: {json.dumps(profile)}\nFirmographics: {json.dumps(firmo)}"},
            ],
        )
        lead.fit = answer.choices[0].message.content or ""

        if deep:
            # One research call per site section (each about 12,000 tokens), in turn; the brief
            # is their notes together.
            notes = []
            for section, pages in zip(SECTIONS, sections):
                notes.append(await self.research(c, section, pages))
            lead.brief = " ".join(notes)

        stream = await self.llm.chat.completions.create(
            model=a.draft_model,
            max_tokens=120,
            stream=True,
            messages=[
                {"role": "system", "content": "You write short, specific outreach emails."},
                {"role": "user", "content":
                 f"Draft the opening line of an outreach email for lead {c.lead_id} "
                 f"({c.name}, {c.industry}, {c.country}). Fit: {lead.fit} Brief: {lead.brief}"},
            ],
        )
        parts = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        lead.opener = "".join(parts)
        if "_REDACTED]" in lead.opener:
            self.run.redactions_seen.append(c.lead_id)
            say(f"{c.lead_id} the model's answer held personal data; ironhost redacted it "
                f"before the agent saw it: \"{lead.opener}\"")

    async def research(self, c: Company, section: str, pages: list) -> str:
        site = "\n\n".join(f"# {p['url']}\n{p['text']}" for p in pages)
        answer = await self.llm.chat.completions.create(
            model=self.args.research_model,
            max_completion_tokens=1000,
            messages=[{"role": "user", "content":
                       f"Research notes on {c.name} for lead {c.lead_id}: their priorities, "
                       f"buying signals and likely objections, from the {section} pages of "
                       f"their website below.\n\n{site}"}],
        )
        return answer.choices[0].message.content or ""

    async def work(self) -> None:
        started = time.monotonic()
        try:
            await self.leads_in_turn(started)
        finally:
            self.elapsed = time.monotonic() - started

    async def leads_in_turn(self, started: float) -> None:
        total = len(self.leads)
        slot = self.args.pace / total if self.args.pace else 0.0
        ironhost.progress(0, total, "leads")
        for n, company in enumerate(self.leads, start=1):
            lead = Lead(company)
            before = ironhost.current().cost_usd
            t0 = time.monotonic()
            try:
                await self.process(lead)
            except ironhost.BudgetExceeded as e:
                self.run.stopped = company.lead_id
                self.note_budget(company)
                say(f"{company.lead_id} {e}")
                say(f"stopping at lead {company.lead_id}: {spend_line()} spent and the next "
                    f"call would pass the budget")
                break
            except ironhost.PolicyDenied as e:
                lead.error = str(e)
                say(f"{company.lead_id} {company.name}: refused by ironhost: {e}")
            except (ironhost.ToolError, NotFound, openai.APIError) as e:
                lead.error = f"{type(e).__name__}: {e}"
                say(f"{company.lead_id} {company.name}: failed: {lead.error}")
            lead.seconds = time.monotonic() - t0
            # The lead as a unit of work: the control plane shows the success rate per lead,
            # leads per hour, seconds per lead and how many the LinkedIn fallbacks served.
            ironhost.unit_done(not lead.error, seconds=lead.seconds,
                               fallback=lead_fallback(lead), unit="leads")
            status = ironhost.current()
            lead.cost_usd = status.cost_usd - before
            self.run.done.append(lead)
            ironhost.progress(n, total, "leads")
            outcome = "failed" if lead.error else f"tier {lead.tier} | LinkedIn {lead.linkedin_source}"
            say(f"{n} / {total} leads | {company.lead_id} {company.name} | {outcome} | "
                f"{spend_line()}")
            self.note_budget(company)
            if slot:
                await asyncio.sleep(max(0.0, started + n * slot - time.monotonic()))

    def note_budget(self, company: Company) -> None:
        """Say when spend first reaches 90% of the budget, where the budget policy warns."""
        s = ironhost.current()
        if self.run.budget_90_at is None and s.budget_usd and s.cost_usd >= 0.9 * s.budget_usd:
            self.run.budget_90_at = company.lead_id
            say(f"{company.lead_id} spend passed 90% of the budget "
                f"({money(s.cost_usd)} / {money(s.budget_usd)}): the budget policy warns here")

    def finish(self) -> int:
        """The summary, then the results file; the exit code."""
        self.summary(len(self.leads))
        try:
            write_results(self.args.out, self.run.done)
        except OSError as e:
            print(f"lead_gen: cannot write the results to {self.args.out}: {e}", file=sys.stderr)
            return EXIT_OUTPUT
        if self.run.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_BUDGET if self.run.stopped else 0

    # ---- the summary --------------------------------------------------------------------------

    def summary(self, total: int) -> None:
        s = ironhost.current()
        m = s.metrics
        run = self.run
        done = len(run.done)
        # Per lead, as the host counted the units this agent reported (the dashboard's figures).
        units = m.get("units") or {}
        print(f"\n== lead generation summary ({s.agent_id}) ==")
        stop = f" (stopped by the budget at lead {run.stopped})" if run.stopped else ""
        if run.interrupted:
            stop = " (interrupted)"
        rows = [("leads processed", f"{done} / {total}{stop}")]
        rows.append(("success rate", f"{100 * units['success_rate']:.0f}% ({units['ok']}/{units['done']})"
                     if units else "-"))
        by_model = sorted(m["cost_by_model"].items(), key=lambda kv: -kv[1])
        rows.append(("cost by model", ", ".join(f"{k} {money(v)}" for k, v in by_model) or "-"))
        used = f" ({100 * s.cost_usd / s.budget_usd:.1f}% used)" if s.budget_usd else ""
        rows.append(("total cost", spend_line() + used))
        rows.append(("average per lead",
                     f"{money(s.cost_usd / done)} avg/lead" if done else "-"))
        via_cache = sum(1 for lead in run.done if lead.linkedin_source.startswith("cache"))
        via_placeholder = sum(1 for lead in run.done if lead.linkedin_source == "placeholder")
        fallback = via_cache + via_placeholder
        if run.rate_limited_at or run.blocked:
            first = run.rate_limited_at[0] if run.rate_limited_at else "-"
            rows.append(("circuit breaker",
                         f"LinkedIn rate-limited from lead {first} "
                         f"({len(run.rate_limited_at)} errors); {run.blocked} calls blocked "
                         f"while its circuit was open"))
            rows.append(("", f"{fallback} leads via fallback: {via_cache} from the "
                             f"{self.snapshot_date} export "
                             f"({100 * via_cache / max(fallback, 1):.1f}%), "
                             f"{via_placeholder} placeholder"))
            rows.append(("", f"{run.blocked} calls to the failing API never made: about "
                             f"{run.blocked * LINKEDIN_MEDIAN_S:.1f} s of waiting saved"))
        else:
            rows.append(("circuit breaker", "no failures"))
        where = f" (at lead {', '.join(run.redactions_seen)})" if run.redactions_seen else ""
        rows.append(("PII redactions", f"{m['pii_findings']}{where}"))
        if run.budget_90_at:
            rows.append(("budget warning", f"at lead {run.budget_90_at} (spend passed 90%)"))
        hours = self.elapsed / 3600
        rows.append(("throughput", f"{done / hours:,.0f} leads/hour ({done} leads in "
                                   f"{self.elapsed:.1f} s)" if done and hours else "-"))
        llm50, llm95 = m["latency_p50_ms"], m["latency_p95_ms"]
        lead50, lead95 = (units.get("seconds") or {}).get("p50"), (units.get("seconds") or {}).get("p95")
        lat = []
        if llm50 is not None:
            lat.append(f"LLM calls p50 {llm50:.0f} ms, p95 {llm95:.0f} ms")
        if lead50 is not None:
            lat.append(f"per lead p50 {lead50:.2f} s, p95 {lead95:.2f} s")
        rows.append(("latency", "; ".join(lat) or "-"))
        rows.append(("results", str(self.args.out)))
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
        sys.stdout.flush()


def load_snapshot(path: Path) -> Tuple[str, Dict[str, dict]]:
    """The LinkedIn export: its date and its profiles by company name."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the LinkedIn export {path}: {e}") from None
    if not (isinstance(data, dict) and isinstance(data.get("exported"), str)
            and isinstance(data.get("profiles"), dict)):
        raise ValueError(f"the LinkedIn export {path}: expected an object with "
                         f"\"exported\" (a date) and \"profiles\" (by company name)")
    return data["exported"], data["profiles"]


def check_writable(path: Path) -> None:
    """Fail now, not after the run, if the results cannot be written to `path`."""
    path = path.resolve()
    if path.is_dir():
        raise ValueError(f"--out {path}: is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".qualified_leads.", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"--out {path}: cannot write there: {e}") from None


def write_results(path: Path, leads: List[Lead]) -> None:
    """Write the CSV whole or not at all: a temporary file renamed into place."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".qualified_leads.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["lead_id", "company", "domain", "tier", "linkedin_source",
                        "decision_maker", "fit", "opener", "cost_usd", "seconds", "error"])
            for lead in leads:
                c = lead.company
                w.writerow([c.lead_id, c.name, c.domain, lead.tier, lead.linkedin_source,
                            lead.decision_maker, lead.fit, lead.opener,
                            f"{lead.cost_usd:.6f}", f"{lead.seconds:.3f}", lead.error])
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: List[str]) -> int:
    args = arguments(argv)
    try:
        leads = load_leads(args.leads)
    except (OSError, ValueError) as e:
        print(f"lead_gen: {e}", file=sys.stderr)
        return EXIT_INPUT
    if args.limit:
        leads = leads[: args.limit]
    try:
        check_writable(args.out)
        agent = Agent(args, leads)
    except ValueError as e:
        print(f"lead_gen: {e}", file=sys.stderr)
        return EXIT_INPUT
    try:
        asyncio.run(agent.work())
    except KeyboardInterrupt:
        agent.run.interrupted = True
        say("interrupted: the summary and the results cover the leads finished so far")
    return agent.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
