package checks

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

const (
	prim = "10.0.0.1:3306"
	rep1 = "10.0.0.2:3306"
	rep2 = "10.0.0.3:3306"
)

// scene builds evidence for a primary and two replicas, healthy unless a
// case changes it.
func scene() Evidence {
	up := LinkView{Reachable: true, Source: prim, Connected: true, LastHeard: t0.Add(-500 * time.Millisecond)}
	return Evidence{
		At:      t0,
		Primary: prim,
		Snapshot: topology.Snapshot{Cluster: "c", Primary: prim, Instances: []topology.Instance{
			{Addr: prim, Reachable: true, Role: topology.RolePrimary},
			{Addr: rep1, Reachable: true, Role: topology.RoleReplica},
			{Addr: rep2, Reachable: true, Role: topology.RoleReplica},
		}},
		Manager: ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{OK: true}},
		Links:   map[string]LinkView{rep1: up, rep2: up},
	}
}

func killed(ev *Evidence) {
	ev.Manager = ManagerView{TCP: ProbeResult{Error: "connection refused"}, SQL: ProbeResult{Error: "connection refused"},
		Failures: 2, FailingSince: t0.Add(-250 * time.Millisecond)}
	for a, l := range ev.Links {
		l.Connected, l.Error = false, "error reconnecting to master: Connection refused"
		ev.Links[a] = l
	}
}

func codesOf(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Code)+"@"+f.Instance)
	}
	return out
}

func TestAnalyze(t *testing.T) {
	p := DefaultPolicy()
	cases := []struct {
		name    string
		change  func(ev *Evidence)
		want    []string
		recover bool
	}{
		{"healthy", func(*Evidence) {}, nil, false},
		{"killed primary: every path agrees", killed, []string{"DeadPrimary@" + prim}, true},
		{"one failed probe is not enough", func(ev *Evidence) {
			killed(ev)
			ev.Manager.Failures = 1
		}, nil, false},
		{"dbha partitioned from a live primary", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{Error: "i/o timeout", TimedOut: true}, SQL: ProbeResult{Error: "i/o timeout", TimedOut: true}, Failures: 5}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"one replica still hears the primary", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: true, Source: prim, Connected: true, LastHeard: t0.Add(-time.Second)}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"the stream still hears the primary", func(ev *Evidence) {
			killed(ev)
			ev.Stream = &StreamView{Connected: true, Primary: prim, LastMessage: t0.Add(-time.Second)}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"a peer still reaches the primary", func(ev *Evidence) {
			killed(ev)
			ev.Peers = []PeerView{{Manager: "dbha-2", At: t0.Add(-time.Second), Primary: prim, Reaches: true}}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"a stale peer is no evidence", func(ev *Evidence) {
			killed(ev)
			ev.Peers = []PeerView{{Manager: "dbha-2", At: t0.Add(-time.Hour), Primary: prim, Reaches: true}}
		}, []string{"DeadPrimary@" + prim}, true},
		{"the external check says alive", func(ev *Evidence) {
			killed(ev)
			ev.External = &ExternalView{Alive: true, At: t0}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"the stream and the external check agree it is dead", func(ev *Evidence) {
			killed(ev)
			ev.Stream = &StreamView{Connected: false, Primary: prim, Error: "EOF"}
			ev.External = &ExternalView{Alive: false, At: t0}
		}, []string{"DeadPrimary@" + prim}, true},
		{"dead primary and an unreachable replica", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: false, Error: "refused"}
			ev.Snapshot.Problems = []topology.Problem{{Code: topology.InstanceUnreachable, Instance: rep2, Message: "refused"}}
		}, []string{"DeadPrimaryAndSomeReplicas@" + prim, "ReplicaUnreachable@" + rep2}, true},
		{"no replica reachable cannot confirm", func(ev *Evidence) {
			killed(ev)
			ev.Links = map[string]LinkView{rep1: {Error: "refused"}, rep2: {Error: "refused"}}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"no replicas at all cannot confirm", func(ev *Evidence) {
			killed(ev)
			ev.Links = map[string]LinkView{}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"replicas told to stop receiving confirm nothing", func(ev *Evidence) {
			killed(ev)
			for a, l := range ev.Links {
				l.Halted, l.Error = true, ""
				ev.Links[a] = l
			}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"one replica halted, the other lost the primary", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: true, Source: prim, Halted: true}
		}, []string{"DeadPrimaryAndSomeReplicas@" + prim}, true},
		{"replica of another source says nothing", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: true, Source: rep1, Connected: true, LastHeard: t0}
		}, []string{"DeadPrimary@" + prim}, true},
		{"hung primary, replicas still hear it", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{TimedOut: true, Error: "i/o timeout"},
				Failures: 6, HungSince: t0.Add(-1500 * time.Millisecond)}
		}, []string{"PrimaryHung@" + prim}, false},
		{"hung primary not yet long enough", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{TimedOut: true}, Failures: 1, HungSince: t0.Add(-200 * time.Millisecond)}
		}, nil, false},
		{"hung primary: replicas timed out their links, past the dead threshold", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{TimedOut: true}, Failures: 16, HungSince: t0.Add(-4 * time.Second)}
			for a, l := range ev.Links {
				l.Connected, l.Error = false, "Lost connection: timeout reading from master"
				ev.Links[a] = l
			}
		}, []string{"DeadPrimary@" + prim}, true},
		{"hung primary: links dropped but not yet the dead threshold", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{TimedOut: true}, Failures: 8, HungSince: t0.Add(-2 * time.Second)}
			for a, l := range ev.Links {
				l.Connected = false
				ev.Links[a] = l
			}
		}, []string{"PrimaryHung@" + prim}, false},
		{"hung primary: silent links confirm nothing", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{TimedOut: true}, Failures: 16, HungSince: t0.Add(-4 * time.Second)}
			for a, l := range ev.Links {
				l.LastHeard = t0.Add(-10 * time.Second)
				ev.Links[a] = l
			}
		}, []string{"PrimaryHung@" + prim}, false},
		{"partitioned dbha, idle replicas silent: no confirmation", func(ev *Evidence) {
			ev.Manager = ManagerView{TCP: ProbeResult{TimedOut: true}, SQL: ProbeResult{TimedOut: true}, Failures: 9}
			for a, l := range ev.Links {
				l.LastHeard = t0.Add(-30 * time.Second)
				ev.Links[a] = l
			}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"topology problems carry over", func(ev *Evidence) {
			ev.Snapshot.Problems = []topology.Problem{
				{Code: topology.TwoWritablePrimaries, Message: "both"},
				{Code: topology.ErrantTransactions, Instance: rep1, Message: "0-2-5"},
				{Code: topology.ReplicationStopped, Instance: rep2, Message: "applying is No"},
			}
		}, []string{"TwoWritablePrimaries@", "ErrantTransactions@" + rep1, "ReplicationStopped@" + rep2}, false},
		{"read-only primary", func(ev *Evidence) {
			ev.Snapshot.Problems = []topology.Problem{{Code: topology.NoWritablePrimary, Instance: prim, Message: "read_only"}}
		}, []string{"NoWritablePrimary@" + prim}, false},
		{"a dead primary's replicas are not reported stopped", func(ev *Evidence) {
			killed(ev)
			ev.Snapshot.Problems = []topology.Problem{{Code: topology.ReplicationStopped, Instance: rep1, Message: "Connecting"}}
		}, []string{"DeadPrimary@" + prim}, true},
		{"lagging replica", func(ev *Evidence) {
			sec := 45.0
			ev.Snapshot.Instances[1].Lag = &topology.Lag{Seconds: &sec, Transactions: 5}
			ev.Snapshot.Instances[2].Lag = &topology.Lag{Transactions: 5000}
		}, []string{"ReplicaLagging@" + rep1, "ReplicaLagging@" + rep2}, false},
		{"no primary known", func(ev *Evidence) {
			killed(ev)
			ev.Primary = ""
		}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := scene()
			tc.change(&ev)
			got := Analyze(ev, p, t0)
			if !slices.Equal(codesOf(got), tc.want) {
				t.Fatalf("findings = %v, want %v\n%+v", codesOf(got), tc.want, got)
			}
			recover := slices.ContainsFunc(got, func(f Finding) bool { return f.Action == Recover })
			if recover != tc.recover {
				t.Errorf("recover = %v, want %v", recover, tc.recover)
			}
			for _, f := range got {
				if f.Summary == "" || f.Severity == "" {
					t.Errorf("finding without summary or severity: %+v", f)
				}
			}
		})
	}
}

func TestDeadPrimaryCarriesTheEvidence(t *testing.T) {
	ev := scene()
	killed(&ev)
	ev.Stream = &StreamView{Primary: prim, Error: "EOF"}
	f := Analyze(ev, DefaultPolicy(), t0)[0]
	var paths []string
	for _, v := range f.Votes {
		paths = append(paths, string(v.Path)+":"+v.Source+":"+string(v.Verdict))
	}
	want := []string{"manager:dbha:dead", "replica:" + rep1 + ":dead", "replica:" + rep2 + ":dead", "stream:dbha stream:dead"}
	if !slices.Equal(paths, want) {
		t.Fatalf("votes = %v, want %v", paths, want)
	}
	if !strings.Contains(f.Votes[0].Detail, "2 consecutive probes failed") || !strings.Contains(f.Votes[1].Detail, "Connection refused") {
		t.Errorf("vote details do not say what was seen: %+v", f.Votes)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	bad := DefaultPolicy()
	bad.Failures, bad.HungDeadAfter = 0, time.Millisecond
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "failures") || !strings.Contains(err.Error(), "hung_dead_after") {
		t.Fatalf("Validate = %v", err)
	}
}
