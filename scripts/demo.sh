#!/usr/bin/env bash
# make demo: the loopback lab, `dbha run` with its console in the
# background, and one failover drill, which the console then shows with
# its recovery. `scripts/demo.sh down` (make demo-down) stops all of it.
#
# DBHA (./bin/dbha), LAB_DIR (lab), DEMO_LISTEN (127.0.0.1:8080, the
# console's address) and DEMO_CLUSTER (lab-mariadb, the drill's) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."

DBHA=${DBHA:-./bin/dbha}
LAB_DIR=${LAB_DIR:-lab}
LISTEN=${DEMO_LISTEN:-127.0.0.1:8080}
CLUSTER=${DEMO_CLUSTER:-lab-mariadb}
pidfile=$LAB_DIR/demo-run.pid
log=$LAB_DIR/demo-run.log

# ours: the pid in $pidfile is the dbha run this script started, by its
# arguments (a pid reused by another process is left alone).
ours() {
  [ -s "$pidfile" ] || return 1
  local pid cmd
  pid=$(cat "$pidfile")
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"--config $config run"* ]]
}

if [ "${1:-}" = down ]; then
  if [ -d "$LAB_DIR" ]; then
    config=$(realpath "$LAB_DIR")/dbha.yaml
    if ours; then
      pid=$(cat "$pidfile")
      kill -TERM "$pid"
      for _ in $(seq 150); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
      if [ -e "/proc/$pid" ]; then
        echo "demo: dbha run (pid $pid) did not stop within 15 s; killing it"
        kill -KILL "$pid"
      fi
      echo "demo: dbha run (pid $pid) stopped"
    fi
    rm -f "$pidfile"
  fi
  [ -e "$LAB_DIR/lab.json" ] || { echo "demo: no lab in $LAB_DIR"; exit 0; }
  exec "$DBHA" lab down --dir "$LAB_DIR" --purge
fi

"$DBHA" lab up --dir "$LAB_DIR" --console "$LISTEN"
config=$(realpath "$LAB_DIR")/dbha.yaml
if ! grep -q '^  viewer_token_file:' "$config"; then
  echo "demo: the lab in $LAB_DIR was made without a console; run make demo-down first" >&2
  exit 2
fi
LISTEN=$(sed -n 's/^  listen: //p' "$config") # the lab's, should it predate DEMO_LISTEN

if ours; then
  echo "demo: dbha run already runs (pid $(cat "$pidfile"))"
else
  setsid "$DBHA" --config "$config" run >>"$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  echo "demo: dbha run started (pid $!), its log in $log"
fi

# The API answers with the token only; curl reads the header from a file,
# so that the token never shows in a process's arguments.
header=$(mktemp "$LAB_DIR/.auth.XXXXXX")
trap 'rm -f "$header"' EXIT
printf 'Authorization: Bearer %s\n' "$(tr -d '\n' < "$LAB_DIR/secrets/console-operator.pw")" > "$header"
# Ready once the monitor has looked at the cluster for two seconds (8
# cycles of 250 ms): it has shared its observation in Consul by then, by
# which the drill knows to leave the failover to it.
ready=
for _ in $(seq 120); do
  if ! ours; then
    echo "demo: dbha run stopped; the end of its log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  cycles=$(curl -fsS -H @"$header" "http://$LISTEN/api/v1/clusters/$CLUSTER" 2>/dev/null | grep -o '"cycles": *[0-9]*' | tr -dc 0-9 || true)
  if [ "${cycles:-0}" -ge 8 ]; then ready=1; break; fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  echo "demo: dbha run did not watch $CLUSTER within 60 s; see $log" >&2
  exit 1
fi

cat <<EOF

The console: http://$LISTEN/console/
  operator token (may act):  $(cat "$LAB_DIR/secrets/console-operator.pw")
  viewer token (reads only): $(cat "$LAB_DIR/secrets/console-viewer.pw")

A failover drill of $CLUSTER: 8 writers, its primary killed (-9), dbha run
replaces it; then the old primary is restarted and rejoins as a replica.
EOF
status=0
"$DBHA" --config "$config" drill --cluster "$CLUSTER" --runs 1 || status=$?
if [ "$status" = 1 ]; then
	# The drill ran and judged its run (exit 1: a target missed). The lab is
	# asynchronous: a commit acknowledged just before the kill, that neither a
	# replica nor dbha's stream had received, is lost (and rewound on the old
	# primary); `dbha lab up --lossless` loses none. The demo shows it as it is.
	cat <<EOF

The drill's run missed a target (above): in an asynchronous lab, a commit
acknowledged just before the kill that no replica and not dbha's stream had
received is lost, and saved from the old primary when it is rewound.
EOF
	status=0
fi
cat <<EOF

The recovery, its steps, RTO and ledger, and the drill's report:
  http://$LISTEN/console/cluster/$CLUSTER
dbha run goes on in the background (log: $log); make demo-down stops it and the lab.
EOF
exit $status
