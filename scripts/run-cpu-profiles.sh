#!/usr/bin/env bash
# Run every recipe's `cpu` profile (the budgets that show each answer on a 2-core CPU), one sweep at a time, and
# write each report into results/<spec stem>/. Resumable: a second call skips finished runs and continues
# interrupted ones. Usage: scripts/run-cpu-profiles.sh [SPEC_STEM ...]   (default: all recipes, in order)
# OUT=runs/quiet puts the run folders and their store there instead of runs/: a second, separate set of runs, e.g.
# to time a recipe again on a quiet machine when its first runs shared the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
CNNLAB=${CNNLAB:-.venv/bin/cnnlab}
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs}
stems=("$@")
if [ ${#stems[@]} -eq 0 ]; then
  stems=($(ls experiments/*.yaml | xargs -n1 basename | sed 's/\.yaml$//'))
fi
for stem in "${stems[@]}"; do
  spec=experiments/$stem.yaml
  echo "=== $(date -u +%FT%TZ) $stem"
  analysis=()
  if grep -q '^analysis:' "$spec"; then analysis=(--analysis); fi
  "$CNNLAB" sweep "$spec" --profile cpu --out "$OUT" --data-root "$DATA" "${analysis[@]}" || echo "=== $stem: some runs failed or are left (rerun to resume)"
  "$CNNLAB" report "$spec" --profile cpu --runs-out "$OUT" --out "results/$stem/report.html"
done
echo "=== $(date -u +%FT%TZ) done"
