"""Plans: which chunks of each job are complete, which must be fetched, and what they cost; the
budget guard; the plan as text."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from histetl.errors import SourceError
from histetl.jobs import Chunk, JobSpec, RawDir, plan_chunks
from histetl.source.databento.download import Manifest, chunk_states

if TYPE_CHECKING:
    from histetl.source.databento.client import DatabentoApi


class BudgetExceededError(SourceError):
    """A job would cost more than its max_cost_usd; nothing was downloaded."""


# -- plans ------------------------------------------------------------------------------------


@dataclass
class ChunkPlan:
    chunk: Chunk
    status: str  # complete | partial | missing -> downloaded | failed
    records: int | None = None
    cost_usd: float | None = None
    manifest: Manifest | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def pending(self) -> bool:
        return self.status in ("partial", "missing")


@dataclass
class JobPlan:
    job: JobSpec
    chunks: list[ChunkPlan] = field(default_factory=list)

    @property
    def pending(self) -> list[ChunkPlan]:
        return [c for c in self.chunks if c.pending]

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd or 0.0 for c in self.pending)

    @property
    def records(self) -> int:
        return sum(c.records or 0 for c in self.pending)

    @property
    def over_budget(self) -> bool:
        limit = self.job.max_cost_usd
        return limit is not None and self.cost_usd > limit + 1e-9


def local_plans(
    jobs: list[JobSpec], raw_dir: RawDir, force: bool = False, today: dt.date | None = None
) -> list[JobPlan]:
    """Every chunk of the jobs with its status under raw_dir; no request to the API (an
    s3:// raw_dir is listed once)."""
    chunks = {job.name: plan_chunks(job, today) for job in jobs}
    states = iter(chunk_states(raw_dir, [c for job in jobs for c in chunks[job.name]]))
    plans = []
    for job in jobs:
        plan = JobPlan(job)
        for chunk in chunks[job.name]:
            state = next(states)
            status = "partial" if force and state.status == "complete" else state.status
            records = state.manifest.records if state.manifest else None
            cost = state.manifest.cost_usd if state.manifest else None
            plan.chunks.append(ChunkPlan(chunk, status, records, cost, state.manifest))
        plans.append(plan)
    return plans


def price_plans(plans: list[JobPlan], api: DatabentoApi) -> None:
    """Ask the API for the record count and cost of every pending chunk."""
    for plan in plans:
        for item in plan.pending:
            item.records = api.record_count(item.chunk)
            item.cost_usd = api.cost(item.chunk) if item.records else 0.0


def check_budget(plans: list[JobPlan]) -> None:
    over = [p for p in plans if p.over_budget]
    if over:
        details = "; ".join(
            f"job {p.job.name} would cost ${p.cost_usd:,.2f} for {len(p.pending)} chunks "
            f"({p.records:,} records), more than max_cost_usd ${p.job.max_cost_usd:,.2f}"
            for p in over
        )
        raise BudgetExceededError(
            f"{details}; nothing was downloaded",
            where="max_cost_usd",
            hint="raise max_cost_usd, narrow symbols, schemas or dates, and check the plan "
            "with --dry-run",
        )


def format_plans(plans: list[JobPlan], show_files: bool = False) -> str:
    """A plain-text plan: per job a summary line, then one line per chunk."""
    lines = []
    for plan in plans:
        job = plan.job
        statuses: dict[str, int] = {}
        for c in plan.chunks:
            statuses[c.status] = statuses.get(c.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in statuses.items())
        budget = f"${job.max_cost_usd:,.2f}" if job.max_cost_usd is not None else "no limit"
        lines.append(
            f"job {job.name}: {job.dataset} {','.join(job.schema_list)} "
            f"{','.join(job.symbols)} ({job.stype_in}), {len(plan.chunks)} chunks: {summary}"
        )
        for c in plan.chunks:
            records = f"{c.records:,}" if c.records is not None else "?"
            cost = f"${c.cost_usd:,.4f}" if c.cost_usd is not None else "-"
            extra = f"  {c.chunk.relpath}" if show_files else ""
            lines.append(
                f"  {c.chunk.schema:<10} {_span(c.chunk):<24} {c.status:<10} "
                f"{records:>12} records {cost:>11}{extra}"
            )
        if plan.pending and any(c.records is None for c in plan.pending):
            lines.append(
                f"  to fetch: {len(plan.pending)} chunks (budget {budget}; "
                "`histetl run JOB_FILE --dry-run` asks the API for records and cost)"
            )
        elif plan.pending:
            verdict = "OVER BUDGET, would be refused" if plan.over_budget else "within budget"
            lines.append(
                f"  to fetch: {len(plan.pending)} chunks, {plan.records:,} records, "
                f"${plan.cost_usd:,.4f} (budget {budget}: {verdict})"
            )
        else:
            lines.append("  nothing to fetch")
    return "\n".join(lines)


def _span(chunk: Chunk) -> str:
    return chunk.label.rsplit(" ", 1)[-1]
