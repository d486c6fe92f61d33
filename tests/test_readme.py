"""The README's Python examples run as written and print what their comments say (those that import torch only
where torch is installed)."""
import contextlib
import importlib.util
import io
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCKS = re.findall(r"```python\n(.*?)```", open(README, encoding="utf-8").read(), re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2, "the API example and the PyTorch bridge"


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_readme_python_example_runs_and_prints_what_it_claims(k):
    block = BLOCKS[k]
    if re.search(r"^import torch", block, re.M) and importlib.util.find_spec("torch") is None:
        pytest.skip("this README example uses torch, which is not installed (make ci installs it)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, f"README.md python block {k + 1}", "exec"), {})
    printed = out.getvalue()
    claims = re.findall(r"print\(.*\)\s+# (?:-> )?(.+)", block)
    assert claims, "each example prints something it claims"
    for claim in claims:
        assert claim.strip() in printed, f"README claims {claim!r}, the example printed {printed!r}"
