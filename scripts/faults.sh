#!/usr/bin/env bash
# make faults: the fault matrix. Brings up a lab of hosts (network
# namespaces, 198.18.0.0/15, as root) for each shape — asynchronous and
# lossless, one manager and three — runs `dbha drill --hosts` for every fault
# against both engines, and writes docs/faults.md and docs/faults.json from
# the drills' own JSON summaries (dbha drill matrix). A drill that fails, or a
# run that does not recover, is in the table; nothing is dropped.
#
#   RUNS=3 (runs per row)  FAULTS="kill host-down ..." (a subset; manager-crash
#   names every manager-crash-STEP row, e.g. FAULTS="manager-crash consul-down")
#   SHAPES="async:1 lossless:1 async:3 lossless:3 guards:1 guards:3"  OUT=docs
#   (guards: asynchronous, with `dbha guard` beside every database server and
#   write leases on)
#
# manager-crash-STEP: the primary's host goes down and the manager that runs
# the recovery is killed (-9) when it reaches STEP, one row per step of a
# failover's plan; with one manager the
# lab restarts it after 1 s, as a service manager would, with three another
# manager must finish the recovery. consul-down: the primary's host goes down
# and the managers' Consul servers are stopped once the recovery started (at
# its first step), for 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
OUT=${OUT:-docs}
SHAPES=${SHAPES:-"async:1 lossless:1 async:3"}
# Each fault as drill flags; the split is the minority one: manager-1 and one
# replica cut off from the primary, the other replica, the clients and the
# other managers (MINORITY and MAJORITY below: with one manager, the minority
# side is {manager-1, replica-1}; with three, manager-2 and manager-3 are on
# the primary's side, which then holds 4 of the 6 voters).
declare -A FLAGS=(
  [kill]="--fault kill"
  [host-down]="--fault host-down"
  [hang]="--fault hang"
  [isolate]="--fault isolate"
  [manager-cut]="--fault manager-cut"
  [loss-5]="--fault loss --percent 5"
  [flap]="--fault flap"
  [split-minority]="--fault split --sides manager-1,replica-1|primary,replica-2,OTHERMANAGERSclients"
  [consul-down]="--fault consul-down --down-for 5s"
)
# The steps of a failover's plan, in order (wait-applied and apply-missing
# appear only when the candidate lacks something; not rows of their own).
STEPS=(lock hook-before stop-following stop-following:2 promote repoint move-writer fence update-readers hook-after unlock)
CRASH=()
for s in "${STEPS[@]}"; do
  FLAGS[manager-crash-$s]="--fault manager-crash --step $s"
  CRASH+=("manager-crash-$s")
done
ORDER=(kill host-down hang isolate split-minority manager-cut loss-5 flap "${CRASH[@]}" consul-down)
# With three managers only the faults where their number matters.
ORDER3=(host-down kill isolate split-minority "${CRASH[@]}" consul-down)
FAULTS=${FAULTS:-}
# selected ROW: FAULTS is empty, names ROW, or names manager-crash and ROW is one of its steps.
selected() {
  [ -z "$FAULTS" ] && return 0
  [[ " $FAULTS " == *" $1 "* ]] && return 0
  [[ $1 == manager-crash-* && " $FAULTS " == *" manager-crash "* ]]
}

[ "$(id -u)" -eq 0 ] || { echo "faults: the lab of hosts needs root (network namespaces)" >&2; exit 2; }
make -s build
work=$(mktemp -d /tmp/dbha-faults.XXXXXX)
chmod 755 "$work" # the database servers run as the lab user
lab=$work/lab
results=$work/results
mkdir -p "$results"
down() { ./bin/dbha lab down --dir "$lab" --purge >/dev/null 2>&1 || true; }
trap down EXIT
echo "faults: results and logs in $work"

for shape in $SHAPES; do
  mode=${shape%%:*} managers=${shape##*:}
  up=(./bin/dbha lab up --hosts --managers "$managers" --dir "$lab")
  [ "$mode" = lossless ] && up+=(--lossless)
  [ "$mode" = guards ] && up+=(--guards)
  echo "faults: lab $mode, $managers manager(s)"
  "${up[@]}" >"$work/up-$mode-$managers.log" 2>&1 || { echo "faults: lab up failed, see $work/up-$mode-$managers.log" >&2; exit 1; }
  others=""
  [ "$managers" -gt 1 ] && others=$(seq -s, -f 'manager-%g' 2 "$managers"),
  list=("${ORDER[@]}")
  [ "$managers" -gt 1 ] && list=("${ORDER3[@]}")
  for engine in mariadb postgres; do
    for f in "${list[@]}"; do
      selected "$f" || continue
      name=$mode-$managers-$engine-$f
      # shellcheck disable=SC2086 # the flags are words
      flags=${FLAGS[$f]//OTHERMANAGERS/$others}
      start=$(date +%s)
      # Exit 1 is a drill that missed its targets: its JSON is a row all the same.
      ./bin/dbha --config "$lab/dbha.yaml" drill --hosts --cluster "lab-$engine" $flags --runs "$RUNS" -o json \
        >"$results/$name.json" 2>"$results/$name.log" || true
      if [ -s "$results/$name.json" ]; then
        echo "faults: $name done in $(( $(date +%s) - start ))s"
      else
        echo "faults: $name wrote no summary (see $results/$name.log)" >&2
        rm -f "$results/$name.json"
      fi
    done
  done
  down
done

shopt -s nullglob
summaries=("$results"/*.json)
[ ${#summaries[@]} -gt 0 ] || { echo "faults: no drill produced a summary" >&2; exit 1; }
cmdline="make faults RUNS=$RUNS SHAPES=\"$SHAPES\"${FAULTS:+ FAULTS=\"$FAULTS\"}"
./bin/dbha drill matrix --command "$cmdline" "${summaries[@]}" >"$OUT/faults.md"
./bin/dbha drill matrix --command "$cmdline" -o json "${summaries[@]}" >"$OUT/faults.json"
echo "faults: wrote $OUT/faults.md and $OUT/faults.json (${#summaries[@]} rows)"
