"""Cache-write and reasoning prices (issue 15): each token at its own price when the book sets
one, else at the input or output price; and events and facts stored before them still load."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.pricing import Price, PriceBook, Usage
from domain.usage import ROW_COLUMNS, RequestMetered, UsageSource, facts_of

AT = datetime(2026, 1, 1, tzinfo=UTC)
NANO = 10**9


def price(**terms) -> Price:
    return Price("m", 1, AT, input_per_million=NANO, output_per_million=2 * NANO, **terms)


def test_cache_writes_and_reasoning_cost_the_input_and_output_prices_unless_set():
    usage = Usage(1_000_000, 1_000_000, cached_tokens=0, cache_write_tokens=1_000_000,
                  reasoning_tokens=1_000_000)
    assert price().cost(usage) == 3 * NANO
    assert price(cache_write_per_million=NANO * 5 // 4, reasoning_per_million=3 * NANO).cost(usage) == \
        NANO * 5 // 4 + 3 * NANO


def test_every_kind_of_token_is_billed_once_at_its_price():
    terms = price(cached_input_per_million=NANO // 10, cache_write_per_million=NANO * 5 // 4,
                  reasoning_per_million=3 * NANO)
    usage = Usage(10_000, 2_000, cached_tokens=4_000, cache_write_tokens=3_000, reasoning_tokens=500)
    # 3 000 uncached at $1, 4 000 read at $0.10, 3 000 written at $1.25, 1 500 out at $2, 500 at $3
    assert terms.cost(usage) == (3_000 * 1_000 + 4_000 * 100 + 3_000 * 1_250 + 1_500 * 2_000 + 500 * 3_000)


@given(prompt=st.integers(0, 10**7), completion=st.integers(0, 10**6), share=st.floats(0, 1),
       write_price=st.integers(0, 10 * NANO), reasoning_price=st.integers(0, 10 * NANO))
def test_the_worst_case_is_never_below_the_cost_of_any_split_of_the_same_tokens(
        prompt, completion, share, write_price, reasoning_price):
    terms = price(cached_input_per_million=NANO // 10, cache_write_per_million=write_price,
                  reasoning_per_million=reasoning_price)
    written, reasoning = int(prompt * share), int(completion * share)
    usage = Usage(prompt, completion, cache_write_tokens=written, reasoning_tokens=reasoning)
    assert terms.worst_case_cost(prompt, completion) >= terms.cost(usage)


@pytest.mark.parametrize("counts", [dict(cached_tokens=6, cache_write_tokens=5),
                                    dict(reasoning_tokens=11), dict(cache_write_tokens=-1)])
def test_parts_that_exceed_their_whole_are_refused(counts):
    with pytest.raises(DomainError):
        Usage(10, 10, **counts)


def test_a_price_set_before_the_new_prices_existed_still_loads():
    book = PriceBook(model="m")
    book.set_price(effective_from=AT, input_per_million=NANO, output_per_million=2 * NANO)
    events = book.collect_events()
    for event in events:  # as an older release stored it: without the two attributes
        event.__dict__.pop("cache_write_per_million", None)
        event.__dict__.pop("reasoning_per_million", None)
    loaded = None
    for event in events:
        loaded = event.mutate(loaded)
    [old] = loaded.prices
    assert (old.cache_write_per_million, old.reasoning_per_million) == (None, None)
    assert old.cost(Usage(1_000_000, 0, cache_write_tokens=1_000_000)) == NANO


def test_a_new_price_is_recorded_when_only_a_new_price_changes():
    book = PriceBook(model="m")
    book.set_price(effective_from=AT, input_per_million=NANO, output_per_million=2 * NANO)
    again = book.set_price(effective_from=AT, input_per_million=NANO, output_per_million=2 * NANO,
                           reasoning_per_million=3 * NANO)
    assert again.version == 2 and book.price_at(AT).reasoning_per_million == 3 * NANO


def test_a_fact_stored_before_the_new_token_columns_loads_with_none_of_them():
    fact = RequestMetered("e1", AT, "k", "u", None, "m", "/v1/chat/completions", 10, 5, 2, 3, 200,
                          UsageSource.UPSTREAM, 1, 123)
    old_columns = [c for c in ROW_COLUMNS if c not in ("cache_write_tokens", "reasoning_tokens")]
    old_row = [value for column, value in zip(ROW_COLUMNS, fact.to_row(), strict=True)
               if column in old_columns]
    [loaded] = facts_of(old_columns, [old_row])
    assert loaded == fact and (loaded.cache_write_tokens, loaded.reasoning_tokens) == (0, 0)
