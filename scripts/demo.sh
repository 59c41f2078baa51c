#!/usr/bin/env bash
# The main job on the bundled example, embedded defaults (DuckDB, no servers):
# set up, build the example warehouse, validate and plan the shipped rescue requests, then the
# whole story in a throwaway git repository: a request merged on main, `rescue apply --wait`
# rebuilding it batch by batch (Prefect in-process, DuckDB), `rescue status` and `rescue log`
# telling what happened from the audit branch. Re-running starts the story afresh.
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

# ---- the story: merged on main -> applied in batches -> told by the audit trail ----------
demo="$PWD/.rescue/demo"
rid=2026-11-23-int-orders-hotfix
echo
echo "==> a throwaway repository in .rescue/demo: repo/ (this project) pushing to a bare origin.git/"
rm -rf "$demo"
mkdir -p "$demo/repo/examples" "$demo/repo/rescues" "$demo/repo/.rescue"
git init -q --bare -b main "$demo/origin.git"
git -C "$demo/repo" init -q -b main
cp -R examples/lakehouse "$demo/repo/examples/"
rm -rf "$demo/repo/examples/lakehouse/target" "$demo/repo/examples/lakehouse/logs"
cp rescue.yaml "$demo/repo/"
cp -R .rescue/history "$demo/repo/.rescue/"   # run history for the estimates (not in git)
printf '.rescue/\n*.duckdb\nexamples/*/target/\nexamples/*/logs/\n' > "$demo/repo/.gitignore"
# The shipped hotfix request, with a 6-second pause between batches so the demo shows one quickly.
sed 's/pause_minutes: 1/pause_minutes: 0.1/' "rescues/$rid.yaml" > "$demo/repo/rescues/$rid.yaml"
demo_git() { git -C "$demo/repo" -c user.name=demo -c user.email=demo@example.com "$@"; }
demo_git add -A
demo_git commit -q -m "dbt project and rescue.yaml"
demo_git remote add origin "$demo/origin.git"
demo_git push -q origin main
echo "    main: $(demo_git log --oneline -1)  (the request is merged: approved)"

cd "$demo/repo"
unset PREFECT_API_URL   # embedded: the batches run in this process, recorded in .rescue/runs-local
export DBT_QUIET=true   # dbt's own output is in each run's artifacts (.rescue/runs/<flow run id>/)
echo
echo "==> rescue apply --dry-run   (decisions only: no lock, nothing recorded or run)"
rescue apply --dry-run
echo
echo "==> rescue apply --wait      (cron runs plain \`rescue apply\` every few minutes)"
rescue apply --wait --poll 1 2> "$demo/apply.log" || { cat "$demo/apply.log" >&2; exit 1; }
echo "    (Prefect's log: .rescue/demo/apply.log)"
echo
echo "==> rescue apply              (again: nothing left to do, in a fraction of a second)"
rescue apply
echo
echo "==> rescue status"
rescue status
echo
echo "==> rescue status --format json"
rescue status --format json
echo
echo "==> rescue log"
rescue log
echo
echo "==> the audit branch on origin: one commit per event"
git --no-pager -C "$demo/repo" log --oneline -5 origin/rescue-audit
