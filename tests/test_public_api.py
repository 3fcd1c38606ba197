import importlib
import subprocess
import sys

import tokencost


def test_every_public_name_resolves_to_its_module():
    # Import every submodule first: a submodule named like a public function (tokencost/estimate.py
    # vs tokencost.estimate()) would replace the function on the package once imported.
    import pkgutil

    for info in pkgutil.walk_packages(tokencost.__path__, "tokencost."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in tokencost.__all__:
        value = getattr(tokencost, name)
        module = importlib.import_module(f"tokencost.{tokencost._API[name]}")
        assert getattr(module, name) is value
        assert name in getattr(module, "__all__", [name]), f"{name} missing from its module's __all__"
    assert set(tokencost.__all__) <= set(dir(tokencost))


def test_unknown_attribute_is_an_attribute_error():
    try:
        tokencost.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_loads_no_submodule():
    code = "import sys, tokencost; print(sorted(m for m in sys.modules if m.startswith('tokencost.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_library_round_trip_without_cli():
    msgs = [{"role": "user", "content": "hello"}]
    n = tokencost.count_prompt_tokens(msgs, model="gpt-4")
    est = tokencost.estimate(msgs, "gpt-4", completion_tokens=10)
    assert est.prompt_tokens == n
    price = tokencost.price_for("gpt-4")
    assert est.total_cost_usd == price.cost(n, 10).total
