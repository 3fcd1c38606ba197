import types

import tokencost


def test_all_matches_public_names():
    public = {n for n, v in vars(tokencost).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert set(tokencost.__all__) == public


def test_library_round_trip_without_cli():
    msgs = [{"role": "user", "content": "hello"}]
    n = tokencost.count_prompt_tokens(msgs, model="gpt-4")
    est = tokencost.estimate(msgs, "gpt-4", completion_tokens=10)
    assert est.prompt_tokens == n
    price = tokencost.price_for("gpt-4")
    assert est.total_cost_usd == price.cost(n, 10).total
