#!/bin/sh
# Token signals for the k = 5 runs recorded before the engine kept them (issue 25): each sample's tokens
# teacher-forced after its prompt, at prompt speed. Resumable: rerun after a kill. Starts from the committed
# snapshot (*.rescored.jsonl.gz) when the plain file is not here (a fresh clone). Ordered by what the
# issue-25 targets need first: the default profile's GSM8K members, then ARC (with each answer letter's
# probability against the other letters), TriviaQA. Open questions: only
# the members that ever give an exact answer (the 0.5B coder and smollm2 answer in sentences: 0 exact answers);
# ARC: the members the arc profile chooses from; GSM8K chain of thought: the 1.5B (in default) and smollm2 (gsm8k).
set -e
cd "$(dirname "$0")/.."
for f in gsm8k-dev-pot-k5 gsm8k-dev-k5 arc-dev-k5 triviaqa-dev-k5 nq-open-dev-k5 math-dev-k5; do
  [ -f "bench/runs/$f.jsonl" ] || gunzip -k "bench/runs/$f.jsonl.gz"
  [ -f "bench/runs/$f.rescored.jsonl" ] || [ ! -f "bench/runs/$f.rescored.jsonl.gz" ] || gunzip -k "bench/runs/$f.rescored.jsonl.gz"
done
python bench/rescore_signals.py --runs bench/runs/gsm8k-dev-pot-k5.jsonl --tasks bench/tasks/gsm8k-dev.jsonl --out bench/runs/gsm8k-dev-pot-k5.rescored.jsonl
python bench/rescore_signals.py --runs bench/runs/gsm8k-dev-k5.jsonl --tasks bench/tasks/gsm8k-dev.jsonl --out bench/runs/gsm8k-dev-k5.rescored.jsonl --models qwen2.5-coder-1.5b,smollm2-135m
python bench/rescore_signals.py --runs bench/runs/arc-dev-k5.jsonl --tasks bench/tasks/arc-challenge-dev.jsonl --out bench/runs/arc-dev-k5.rescored.jsonl --models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b,gemma3-270m
python bench/rescore_signals.py --runs bench/runs/triviaqa-dev-k5.jsonl --tasks bench/tasks/triviaqa-dev.jsonl --out bench/runs/triviaqa-dev-k5.rescored.jsonl --models qwen2.5-coder-1.5b,gemma3-270m
python bench/rescore_signals.py --runs bench/runs/nq-open-dev-k5.jsonl --tasks bench/tasks/nq-open-dev.jsonl --out bench/runs/nq-open-dev-k5.rescored.jsonl --models qwen2.5-coder-1.5b,gemma3-270m
python bench/rescore_signals.py --runs bench/runs/math-dev-k5.jsonl --tasks bench/tasks/math-dev.jsonl --out bench/runs/math-dev-k5.rescored.jsonl
