#!/usr/bin/env bash
# The main job on the bundled example, embedded defaults (DuckDB, no servers):
# set up, build the example warehouse, validate and plan the shipped rescue requests.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
mkdir -p .rescue/history
export LAKEHOUSE_DB="$PWD/.rescue/lakehouse.duckdb"
dbt_args=(--project-dir examples/lakehouse --profiles-dir examples/lakehouse --quiet)
if [ ! -f "$LAKEHOUSE_DB" ]; then
  echo "==> building the example warehouse (dbt seed + dbt build) into .rescue/lakehouse.duckdb"
  dbt seed "${dbt_args[@]}"
  dbt build "${dbt_args[@]}"
  cp examples/lakehouse/target/run_results.json ".rescue/history/run_results-initial-build.json"
fi
echo "==> rescue validate rescues/"
rescue validate rescues/
for f in rescues/*.yaml; do
  echo "==> rescue plan $f"
  rescue plan "$f"
done
