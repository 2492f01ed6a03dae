#!/usr/bin/env bash
# Issue 30, step 4: which head ranks the SFT start policy's own samples by knowledge, within a prompt?
#   (a) the quick head (runs/quick/rm: mlp, layer 15, completion mean, on the quick pairs);
#   (b) the same spec on the quick pairs merged with pairs sampled from the SFT start itself
#       (`data build --policy`, with the right_vs_wrong contrast);
#   (c) (b) plus sycophancy pairs from the SFT start (correct a false claim > agree; confirm a true one > contradict).
# Chosen on the `select` people (highest minimum within-prompt AUROC over made-up, real, false premise), reported
# on the `check` people: two disjoint quarters of the held-out people, both disjoint from the campaign's `eval` half.
# Needs runs/quick (`latentrm run --preset quick`). About 50 min on 2 cores. Small JSON results land next to this file.
set -euo pipefail
OUT=results/head-compare
RUN=runs/head-compare
SFT=runs/quick/warm_start/baseline-sft/policy
LATENTRM=${LATENTRM:-latentrm}
mkdir -p "$RUN" "$OUT"

# Pairs from the SFT start, on the quick preset's training people and sizes.
$LATENTRM data build --policy "$SFT" --contrasts right_vs_wrong --n-real 50 --n-fake 50 --samples 2 \
    --pairs-per-prompt 4 --max-new-tokens 40 --batch-size 32 --out "$RUN/data-sft"
$LATENTRM data build --recipe sycophancy --policy "$SFT" --n-real 50 --samples 2 --pairs-per-prompt 4 \
    --max-new-tokens 40 --batch-size 32 --out "$RUN/data-syc"
$LATENTRM data merge runs/quick/data/pairs.parquet "$RUN/data-sft/pairs.parquet" --out "$RUN/pairs-b.parquet"
$LATENTRM data merge "$RUN/pairs-b.parquet" "$RUN/data-syc/pairs.parquet" --out "$RUN/pairs-c.parquet"

# The quick head's spec (sweep's choice) on each pairs file.
for h in b c; do
    $LATENTRM rm train --pairs "$RUN/pairs-$h.parquet" --run-dir "$RUN" --out-name "rm-$h" \
        --layer 15 --pooling mean --head mlp --epochs 200 --seed 0
done

# The same samples of the SFT start for every head: the people held out of (c)'s pairs, the widest set.
for part in select check; do
    for h in a b c; do
        rm_dir="$RUN/rm-$h"; [ "$h" = a ] && rm_dir=runs/quick/rm
        # the samples are the SFT start's, whatever the head: reuse head a's (the cache is per output folder)
        if [ "$h" != a ]; then mkdir -p "$RUN/onpolicy-$part-$h/samples"; cp -n "$RUN/onpolicy-$part-a/samples/"*.jsonl \
            "$RUN/onpolicy-$part-$h/samples/"; fi
        $LATENTRM rm onpolicy --rm "$rm_dir" --policy "$SFT" --pairs "$RUN/pairs-c.parquet" --people "$part" \
            --n-real 20 --n-fake 20 --n-false-premise 10 --samples 8 --run-dir "$RUN" --name "onpolicy-$part-$h"
        cp "$RUN/onpolicy-$part-$h/onpolicy.json" "$OUT/onpolicy-$part-$h.json"
    done
done
