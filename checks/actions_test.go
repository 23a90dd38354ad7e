package checks

import (
	"testing"

	"github.com/dbha/dbha/topology"
)

// TestActions is the action column of the rule table: which findings make
// dbha change something, and how. The daemon dispatches on nothing else.
func TestActions(t *testing.T) {
	want := map[Code]Action{
		DeadPrimary:                Recover,
		DeadPrimaryAndSomeReplicas: Recover,
		DeadPrimaryNoQuorum:        Report,
		PrimaryHung:                Report,
		UnreachablePrimary:         Report,
		TwoWritablePrimaries:       Enforce,
		NoWritablePrimary:          Enforce,
		InstanceDetached:           Enforce,
		RewindRefused:              Report,
		RejoinFailed:               Report,
		RecoveryBlocked:            Report,
		RecoveryStopped:            Report,
		ErrantTransactions:         Report,
		ReplicationStopped:         Report,
		ReplicaUnreachable:         Report,
		ReplicaLagging:             Report,
		BackupVerifyFailed:         Report,
		FailoverPaused:             Report,
		ReplicaInconsistent:        Report,
	}
	seen := map[Code]bool{}
	for _, r := range rules {
		seen[r.code] = true
		t.Run(string(r.code), func(t *testing.T) {
			w, ok := want[r.code]
			if !ok {
				t.Fatalf("rule %s has no expected action in this table: add it", r.code)
			}
			if r.action != w {
				t.Errorf("action = %q, want %q", r.action, w)
			}
		})
	}
	for c := range want {
		if !seen[c] {
			t.Errorf("%s is expected but no rule makes it", c)
		}
	}
}

// TestProblemsBecomeFindings: the topology problems the daemon acts on
// reach it as findings carrying their action.
func TestProblemsBecomeFindings(t *testing.T) {
	cases := []struct {
		name    string
		problem topology.ProblemCode
		code    Code
	}{
		{"two writable primaries", topology.TwoWritablePrimaries, TwoWritablePrimaries},
		{"no writable primary", topology.NoWritablePrimary, NoWritablePrimary},
		{"detached instance", topology.InstanceDetached, InstanceDetached},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := Evidence{Snapshot: topology.Snapshot{Problems: []topology.Problem{{Code: tc.problem, Instance: "db2:3306", Message: "m"}}}}
			got := Analyze(ev, DefaultPolicy(), t0)
			if len(got) != 1 || got[0].Code != tc.code || got[0].Action != Enforce || got[0].Instance != "db2:3306" {
				t.Fatalf("findings = %+v, want one %s on db2:3306 calling for enforce", got, tc.code)
			}
		})
	}
}
