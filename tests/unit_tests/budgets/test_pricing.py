"""Prices from genai-prices' offline snapshot, user overrides, and no silent zeros."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest

from langroute import RouterConfigError
from langroute.budgets import check_prices
from langroute.pipeline import ModelRef, Usage

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MINI = ModelRef("cheap", provider_model="gpt-4o-mini", provider="openai")


def test_a_known_model_is_priced_by_genai_prices_with_cached_tokens():
    prices = check_prices([MINI])
    usage = Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=4_000)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=4_000),
        "gpt-4o-mini", provider_id="openai", genai_request_timestamp=NOW).total_price
    assert prices.cost(MINI, usage, NOW) == expected
    assert prices.source("cheap") == "genai-prices:openai/gpt-4o-mini"
    # Cached input is cheaper than fresh input: the split matters.
    fresh = prices.cost(MINI, Usage(input_tokens=10_000, output_tokens=2_000), NOW)
    assert expected < fresh


def test_reasoning_tokens_are_part_of_output_not_charged_twice():
    o3 = ModelRef("thinker", provider_model="o3-mini", provider="openai")
    prices = check_prices([o3])
    plain = prices.cost(o3, Usage(input_tokens=1000, output_tokens=500), NOW)
    reasoning = prices.cost(o3, Usage(input_tokens=1000, output_tokens=500,
                                      reasoning_tokens=400), NOW)
    assert plain == reasoning > 0


def test_an_override_wins_over_the_table_and_prices_unknown_models():
    mystery = ModelRef("mystery", provider_model="acme-9000")
    prices = check_prices([MINI, mystery], {
        "cheap": {"input_mtok": 1.0, "output_mtok": 3.0, "cache_read_mtok": 0.5},
        "acme-9000": {"input_mtok": 2, "output_mtok": 4},
    })
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=500_000)
    # 500k fresh x $1 + 500k cached x $0.5 + 1M out x $3
    assert prices.cost(MINI, usage, NOW) == Decimal("3.75")
    assert prices.cost(mystery, Usage(input_tokens=500_000, output_tokens=250_000), NOW) == 2
    assert prices.source("mystery") == "override:acme-9000"


def test_a_genai_prices_model_price_is_accepted_as_override():
    from genai_prices.types import ModelPrice

    prices = check_prices([MINI], {"cheap": ModelPrice(input_mtok=Decimal(1),
                                                       output_mtok=Decimal(1))})
    assert prices.cost(MINI, Usage(input_tokens=1_000_000), NOW) == 1


def test_unknown_models_are_all_named_at_construction():
    refs = [MINI, ModelRef("a", provider_model="no-such-model-xyz"), ModelRef("b")]
    with pytest.raises(RouterConfigError) as error:
        check_prices(refs)
    message = str(error.value)
    assert "'a'" in message and "no-such-model-xyz" in message
    assert "'b'" in message and "provider model id is unknown" in message
    assert "cheap" not in message


def test_a_framework_provider_name_unknown_to_the_table_still_finds_the_model():
    ref = ModelRef("g", provider_model="gpt-4o-mini", provider="azure_openai_custom")
    assert check_prices([ref]).cost(ref, Usage(input_tokens=1000), NOW) > 0


@pytest.mark.parametrize("prices, match", [
    ({"cheap": {"input_mtok": 1.0}}, "needs \\['output_mtok'\\]"),
    ({"cheap": {"input_mtok": 1, "output_mtok": -1}}, ">= 0"),
    ({"cheap": {"input_mtok": 1, "output_mtok": float("nan")}}, ">= 0"),
    ({"cheap": {"input_mtok": 1, "output_mtok": 1, "per_call": 3}}, "unknown keys"),
    ({"cheap": 0.5}, "must be a dict"),
    ([("cheap", 1)], "prices must be a dict"),
])
def test_bad_overrides_are_clear_errors(prices, match):
    with pytest.raises(RouterConfigError, match=match):
        check_prices([MINI], prices)
