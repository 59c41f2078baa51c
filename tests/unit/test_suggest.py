"""Did-you-mean for model names (suggest.py): pure, over the example project's names."""

from __future__ import annotations

import pytest

from rescue_runner.model import NodeInfo, ProjectGraph
from rescue_runner.suggest import bare_name, did_you_mean, distance, nearest

NAMES = {
    "stg_orders": ("lakehouse", "staging", "stg_orders"),
    "stg_payments": ("lakehouse", "staging", "stg_payments"),
    "int_orders": ("lakehouse", "intermediate", "int_orders"),
    "int_customer_orders": ("lakehouse", "intermediate", "int_customer_orders"),
    "mart_revenue": ("lakehouse", "marts", "mart_revenue"),
}
GRAPH = ProjectGraph({f"model.lakehouse.{n}": NodeInfo(f"model.lakehouse.{n}", n, "model", fqn=fqn)
                      for n, fqn in NAMES.items()}, {}, "sha256:test")


@pytest.mark.parametrize(("selector", "hint"), [
    ("int_ordrs", "`int_orders`"),
    ("int_odrers+", "`int_orders+`"),  # a swap counts once
    ("2+stg_paymnts+", "`2+stg_payments+`"),  # operators kept, ready to paste
    ("@int_orderz", "`@int_orders`"),
    ("mart", "`marts`"),  # fqn folders are names too
    ("fqn:int_ordrs", "`fqn:int_orders`"),
    ("Int_Orders", "`int_orders`"),
])
def test_suggests_the_nearest_names(selector: str, hint: str) -> None:
    assert did_you_mean(selector, GRAPH) == f" Did you mean {hint}?"


def test_several_suggestions_nearest_first() -> None:
    assert nearest("stg_order", ["stg_orders", "stg_ordersx", "int_orders"]) == ["stg_orders", "stg_ordersx"]
    assert did_you_mean("int_order", GRAPH) == " Did you mean `int_orders`?"


@pytest.mark.parametrize("selector", ["tag:finance", "path:models/x", "int_*", "completely_else",
                                      "int_orders,tag:x", "source:raw.orders+"])
def test_no_suggestion_for_non_names_or_far_words(selector: str) -> None:
    assert did_you_mean(selector, GRAPH) == ""


def test_bare_name_and_distance() -> None:
    assert bare_name("3+int_orders+2") == "int_orders"
    assert bare_name("tag:x") is None
    assert distance("int_orders", "int_ordrs", 3) == 1
    assert distance("abcdef", "uvwxyz", 2) == 3  # capped at limit + 1
