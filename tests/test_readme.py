"""The README's API example runs as written and prints what its comments say."""
import contextlib
import io
import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_python_example_runs_and_prints_what_it_claims():
    text = open(README, encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has a python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    printed = out.getvalue()
    for claim in re.findall(r"print\(.*\)\s+# (?:-> )?(.+)", blocks[0]):
        assert claim.strip() in printed, f"README claims {claim!r}, the example printed {printed!r}"
