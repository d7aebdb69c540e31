"""histetl.source.databento.plan: which chunks are complete (no network), what the pending ones
cost (asked of the API), the budget guard, and the plan as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from histetl.source.databento.client import DatabentoApi
from histetl.source.databento.download import fetch_chunk
from histetl.source.databento.plan import (
    BudgetExceededError,
    check_budget,
    format_plans,
    local_plans,
    price_plans,
)
from tests.source.databento.conftest import RECORDS, job
from tests.support.fake_gateway import FakeGateway


def test_local_plans_lists_every_chunk_missing_and_format_says_to_ask_the_api(
    tmp_path: Path,
) -> None:
    (plan,) = local_plans([job(max_cost_usd=1)], tmp_path / "raw")
    assert [c.status for c in plan.chunks] == ["missing"] * 3
    assert len(plan.pending) == 3
    assert (plan.records, plan.cost_usd, plan.over_budget) == (0, 0.0, False)
    assert format_plans([plan]).splitlines() == [
        "job es_trades: GLBX.MDP3 trades ES.c.0 (continuous), 3 chunks: 3 missing",
        "  trades     2023-12-14..2023-12-15   missing               ? records           -",
        "  trades     2023-12-15..2023-12-16   missing               ? records           -",
        "  trades     2023-12-16..2023-12-17   missing               ? records           -",
        "  to fetch: 3 chunks (budget $1.00; `histetl run JOB_FILE --dry-run` asks the API for "
        "records and cost)",
    ]


def test_priced_plans_count_only_pending_chunks_and_skip_the_cost_of_empty_ones(
    api: DatabentoApi, gw: FakeGateway, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    (done,) = local_plans([job()], raw)
    fetch_chunk(api, raw, done.chunks[0])
    gw.requests.clear()

    plans = local_plans([job()], raw)
    price_plans(plans, api)

    (plan,) = plans
    assert [c.status for c in plan.chunks] == ["complete", "missing", "missing"]
    assert [c.records for c in plan.chunks] == RECORDS
    assert plan.records == RECORDS[1]  # the complete chunk is not fetched again
    assert plan.cost_usd == pytest.approx(RECORDS[1] * 0.0001)
    assert [r.endpoint for r in gw.requests] == [
        "metadata.get_record_count",
        "metadata.get_cost",
        "metadata.get_record_count",  # 0 records: the cost is not asked
    ]
    text = format_plans(plans, show_files=True)
    assert "3 chunks: 1 complete, 2 missing" in text
    assert f"  {plan.chunks[0].chunk.relpath}" in text
    assert text.endswith(
        "  to fetch: 2 chunks, 1,423 records, $0.1423 (budget no limit: within budget)"
    )


def test_force_takes_complete_chunks_as_pending_and_nothing_pending_says_so(
    api: DatabentoApi, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    (plan,) = local_plans([job(end="2023-12-15")], raw)
    fetch_chunk(api, raw, plan.chunks[0])

    (again,) = local_plans([job(end="2023-12-15")], raw)
    assert [c.status for c in again.chunks] == ["complete"]
    assert format_plans([again]).endswith("  nothing to fetch")
    (forced,) = local_plans([job(end="2023-12-15")], raw, force=True)
    assert [c.status for c in forced.chunks] == ["partial"]
    assert forced.records == RECORDS[0]  # from the manifest: no need to ask again


def test_check_budget_refuses_every_job_over_its_limit_with_the_figures(
    api: DatabentoApi, tmp_path: Path
) -> None:
    plans = local_plans(
        [
            job(max_cost_usd=0.25),
            job(name="cheap", max_cost_usd=1),
            job(name="nq", max_cost_usd=0.01),
        ],
        tmp_path / "raw",
    )
    price_plans(plans, api)
    assert [p.over_budget for p in plans] == [True, False, True]

    with pytest.raises(BudgetExceededError) as caught:
        check_budget(plans)

    assert caught.value.where == "max_cost_usd"
    assert caught.value.what == (
        "job es_trades would cost $0.30 for 3 chunks (3,000 records), more than max_cost_usd "
        "$0.25; job nq would cost $0.30 for 3 chunks (3,000 records), more than max_cost_usd "
        "$0.01; nothing was downloaded"
    )
    assert "OVER BUDGET, would be refused" in format_plans(plans[:1])
    check_budget(plans[1:2])  # within budget: no error
