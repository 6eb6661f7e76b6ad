"""The core never loads LangChain or LlamaIndex: they are the edges' business."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE_IMPORTS = [
    "import langroute.routers",
    "import langroute; langroute.load_outcomes",
    "import langroute.pipeline",
    "import langroute.evaluation",
    "from langroute import SWRouter, calibrate_threshold, EscalationLadder, RoutingDecision",
]


@pytest.mark.parametrize("statement", CORE_IMPORTS)
def test_core_imports_load_no_framework(statement):
    code = (f"{statement}\nimport sys\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('langchain_core', 'langchain', 'llama_index'))\nprint(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_the_langchain_edge_is_still_one_attribute_away():
    code = ("import langroute, sys\nassert 'langchain_core' not in sys.modules\n"
            "cls = langroute.RoutedChatModel\nassert 'langchain_core' in sys.modules\n"
            "print(cls.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "RoutedChatModel"


def test_public_names_are_exported_once_and_resolve():
    import langroute
    from langroute import _exceptions

    assert len(langroute.__all__) == len(set(langroute.__all__))
    assert all(hasattr(langroute, name) for name in langroute.__all__)
    errors = {name for name in _exceptions.__all__}
    assert errors <= set(langroute.__all__)
    for name in errors:
        assert issubclass(getattr(langroute, name), langroute.LangrouteError)
