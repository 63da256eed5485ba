"""Code answers (MBPP style), compared by behaviour (../shared/SLM-MUX.md §3).

A program's canonical answer is what it *does* on the task's example inputs: each test ``assert EXPR == X``
has its left side EXPR evaluated, and the outputs (repr, or the exception's type) together are the answer.
Programs that behave the same vote together; the reference solution's behaviour is the reference answer,
so "right" means "behaves like the reference on every test" — which is "passes the asserts".

Model-written code never runs in this process: each program runs in the sandbox (``edgemux/sandbox``): a fresh
interpreter in an empty temporary directory, with a timeout, limits, no network and no new processes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ..sandbox.runner import Limits, run_python

__all__ = ["extract_program", "run_tests", "signature", "signatures"]

TIMEOUT_S = 5.0
_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)

# Runs in the sandbox: load the program, evaluate the test inputs, report their reprs. The program's own
# prints go to /dev/null (fd 1 is redirected before it runs), and the report is written to the saved
# descriptor, so printing a result line is not a way to forge one.
_HARNESS = r"""
import io, json, os, sys
report = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
sys.stdout = io.StringIO()
def send(row):
    os.write(report, (json.dumps(row) + "\n").encode())
    os._exit(0)
scope = {"__name__": "__edgemux__"}
try:
    exec(compile(PROGRAM, "<answer>", "exec"), scope)
except BaseException as e:
    send({"error": type(e).__name__})
outputs = []
for expression in EXPRESSIONS:
    try:
        outputs.append(repr(eval(expression, scope)))
    except BaseException as e:
        outputs.append("raised " + type(e).__name__)
send({"outputs": outputs})
"""


def extract_program(text: str) -> str | None:
    """The code of a sample: the last fenced block (```python … ```), else the text itself when it reads
    as Python. None when there is no code."""
    blocks = _FENCE.findall(text)
    candidate = blocks[-1] if blocks else text
    candidate = candidate.strip("\n")
    if not candidate.strip():
        return None
    try:
        ast.parse(candidate)
    except SyntaxError:
        return None
    return candidate


def _expressions(tests: Sequence[str]) -> list[str]:
    """The left sides of ``assert LEFT == RIGHT`` (the whole condition for other asserts)."""
    out = []
    for test in tests:
        try:
            node = ast.parse(test.strip()).body[0]
        except (SyntaxError, IndexError):
            out.append("None")
            continue
        if isinstance(node, ast.Assert):
            test_expr = node.test
            if isinstance(test_expr, ast.Compare) and len(test_expr.ops) == 1 and isinstance(test_expr.ops[0], ast.Eq):
                out.append(ast.unparse(test_expr.left))
            else:
                out.append(ast.unparse(test_expr))
        else:
            out.append(ast.unparse(node))
    return out


@lru_cache(maxsize=4096)
def _run(program: str, expressions: tuple[str, ...]) -> tuple[str, ...] | None:
    source = _HARNESS.replace("PROGRAM", repr(program), 1).replace("EXPRESSIONS", repr(list(expressions)), 1)
    run = run_python(source, Limits(timeout_s=TIMEOUT_S))
    if run.status == "timeout":
        return ("timed out",)
    lines = run.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if run.ok and len(lines) == 1 else {"error": run.status}
    except json.JSONDecodeError:
        return None
    if not isinstance(result, dict) or "error" in result or not isinstance(result.get("outputs"), list):
        return None  # the program does not even load: no answer
    return tuple(str(o) for o in result["outputs"])


def run_tests(program: str, tests: Sequence[str]) -> tuple[str, ...] | None:
    """The program's outputs on the tests' inputs (None when it does not load)."""
    return _run(program, tuple(_expressions(tests)))


def signature(text: str, tests: Sequence[str], *, is_program: bool = False) -> str | None:
    """The canonical answer of a sample (or of a reference program): a short hash of its behaviour."""
    program = text if is_program else extract_program(text)
    if program is None:
        return None
    outputs = run_tests(program, tests)
    if outputs is None:
        return None
    return hashlib.sha1(json.dumps(outputs).encode()).hexdigest()[:16]


def signatures(texts: Sequence[str], tests: Sequence[str], workers: int = 4) -> list[str | None]:
    """Signatures of many samples of one task, run in parallel subprocesses."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda t: signature(t, tests), texts))
