#!/bin/sh
# The shipped validation runs (issue: selection profiles): the embedded pool, k = 5, on 100 GSM8K and 150
# ARC-Challenge dev questions. Resumable: rerun the same command after a kill and it picks up where it stopped.
# Hours on a 2-core CPU; minutes on a GPU (add --gpu-layers -1).
set -e
cd "$(dirname "$0")/.."
# Resume from the committed snapshot when the plain file is not here (a fresh clone).
for f in bench/runs/gsm8k-dev-k5 bench/runs/arc-dev-k5; do
  [ -f "$f.jsonl" ] || [ ! -f "$f.jsonl.gz" ] || gunzip -k "$f.jsonl.gz"
done
POOL=qwen2.5-coder-1.5b,qwen2.5-coder-0.5b,gemma3-270m,smollm2-135m
COMMON="--models $POOL -k 5 --temperature 0.3 --n-ctx 2048 $*"
edgemux collect --tasks bench/tasks/gsm8k-dev.jsonl --limit 100 --max-tokens 384 $COMMON --out bench/runs/gsm8k-dev-k5.jsonl
edgemux collect --tasks bench/tasks/arc-challenge-dev.jsonl --limit 150 --max-tokens 256 $COMMON --out bench/runs/arc-dev-k5.jsonl
