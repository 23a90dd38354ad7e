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
	hb   = 250 * time.Millisecond
)

// scene builds evidence for a primary and two replicas, healthy unless a
// case changes it: each replica's link promises a 250 ms heartbeat and
// heard one half a second ago.
func scene() Evidence {
	up := LinkView{Reachable: true, Source: prim, Connected: true, LastHeard: t0.Add(-500 * time.Millisecond), Heartbeat: hb}
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

// silent makes every replica's link connected but silent for d.
func silent(ev *Evidence, d time.Duration) {
	for a, l := range ev.Links {
		l.Connected, l.Error, l.LastHeard = true, "", t0.Add(-d)
		ev.Links[a] = l
	}
}

// hung makes dbha's probes of the primary time out while TCP connects,
// for n cycles of a second each (the probe timeout).
func hung(ev *Evidence, n int) {
	since := t0.Add(-time.Duration(n-1) * time.Second)
	ev.Manager = ManagerView{TCP: ProbeResult{OK: true}, SQL: ProbeResult{TimedOut: true, Error: "i/o timeout"},
		Failures: n, FailingSince: since, HungSince: since}
}

// vanished makes dbha's probes of the primary time out, TCP connect
// included (a host gone without a word), for n cycles of a second each.
func vanished(ev *Evidence, n int) {
	ev.Manager = ManagerView{TCP: ProbeResult{TimedOut: true, Error: "i/o timeout"}, SQL: ProbeResult{TimedOut: true, Error: "i/o timeout"},
		Failures: n, FailingSince: t0.Add(-time.Duration(n-1) * time.Second)}
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
		{"dead primary and an unreachable replica: 2 of 4 voters are no majority", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: false, Error: "refused"}
			ev.Snapshot.Problems = []topology.Problem{{Code: topology.InstanceUnreachable, Instance: rep2, Message: "refused"}}
		}, []string{"DeadPrimaryNoQuorum@" + prim, "ReplicaUnreachable@" + rep2}, false},
		{"minority split: {dbha, replica 1} cut from {primary, replica 2}", func(ev *Evidence) {
			vanished(ev, 4)
			ev.Links[rep1] = LinkView{Reachable: true, Source: prim, Connected: true, LastHeard: t0.Add(-1500 * time.Millisecond), Heartbeat: hb}
			ev.Links[rep2] = LinkView{Error: "i/o timeout"}
		}, []string{"DeadPrimaryNoQuorum@" + prim}, false},
		{"three managers: primary and one replica's host lost, both peers agree", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: false, Error: "refused"}
			ev.Voters = Voters{Self: "m1", Managers: []string{"m1", "m2", "m3"}}
			ev.Peers = []PeerView{{Manager: "m2", At: t0, Primary: prim}, {Manager: "m3", At: t0, Primary: prim}}
		}, []string{"DeadPrimaryAndSomeReplicas@" + prim}, true},
		{"three managers: one peer silent is one vote short", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: false, Error: "refused"}
			ev.Voters = Voters{Self: "m1", Managers: []string{"m1", "m2", "m3"}}
			ev.Peers = []PeerView{{Manager: "m2", At: t0, Primary: prim}, {Manager: "m3", At: t0.Add(-time.Minute), Primary: prim}}
		}, []string{"DeadPrimaryNoQuorum@" + prim}, false},
		{"a manager outside the membership does not vote", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: false, Error: "refused"}
			ev.Peers = []PeerView{{Manager: "stranger", At: t0, Primary: prim}}
		}, []string{"DeadPrimaryNoQuorum@" + prim}, false},
		{"a witness makes the majority", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: false, Error: "refused"}
			ev.Voters.Managers = []string{"dbha", "m2"}
			ev.Voters.Self = "dbha"
			ev.Peers = []PeerView{{Manager: "m2", At: t0, Primary: prim}}
			ev.External = &ExternalView{At: t0}
		}, []string{"DeadPrimaryAndSomeReplicas@" + prim}, true},
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
		{"one replica halted, the other lost the primary: a halted link is no vote", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: true, Source: prim, Halted: true}
		}, []string{"DeadPrimaryNoQuorum@" + prim}, false},
		{"one replica halted, a witness agrees", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: true, Source: prim, Halted: true}
			ev.External = &ExternalView{At: t0}
		}, []string{"DeadPrimaryAndSomeReplicas@" + prim}, true},
		{"replica of another source says nothing, and is no vote", func(ev *Evidence) {
			killed(ev)
			ev.Links[rep2] = LinkView{Reachable: true, Source: rep1, Connected: true, LastHeard: t0}
		}, []string{"DeadPrimaryNoQuorum@" + prim}, false},
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
		{"hung primary: every replica's link dropped, dead before hung_dead_after", func(ev *Evidence) {
			hung(ev, 2)
			for a, l := range ev.Links {
				l.Connected = false
				ev.Links[a] = l
			}
		}, []string{"DeadPrimary@" + prim}, true},
		{"hung primary: links dropped, one replica unreachable: wait for hung_dead_after", func(ev *Evidence) {
			hung(ev, 2)
			ev.Links[rep1] = LinkView{Reachable: true, Source: prim, Error: "timeout reading from master"}
			ev.Links[rep2] = LinkView{Error: "refused"}
		}, []string{"PrimaryHung@" + prim}, false},
		{"hung primary: heartbeats stopped on every link", func(ev *Evidence) {
			hung(ev, 2)
			silent(ev, 1500*time.Millisecond)
		}, []string{"DeadPrimary@" + prim}, true},
		{"hung primary: one probe timed out is not enough", func(ev *Evidence) {
			hung(ev, 1)
			silent(ev, 1500*time.Millisecond)
		}, nil, false},
		{"hung primary: one link still heartbeating", func(ev *Evidence) {
			hung(ev, 2)
			silent(ev, 1500*time.Millisecond)
			ev.Links[rep2] = LinkView{Reachable: true, Source: prim, Connected: true, LastHeard: t0.Add(-300 * time.Millisecond), Heartbeat: hb}
		}, []string{"PrimaryHung@" + prim}, false},
		{"hung primary: dbha's stream still hears it", func(ev *Evidence) {
			hung(ev, 2)
			silent(ev, 1500*time.Millisecond)
			ev.Stream = &StreamView{Connected: true, Primary: prim, LastMessage: t0.Add(-300 * time.Millisecond)}
		}, []string{"PrimaryHung@" + prim}, false},
		{"hung primary: links silent, within three of their long heartbeat periods", func(ev *Evidence) {
			hung(ev, 3)
			silent(ev, 5*time.Second)
			for a, l := range ev.Links {
				l.Heartbeat = 2 * time.Second
				ev.Links[a] = l
			}
		}, []string{"PrimaryHung@" + prim}, false},
		{"hung primary: links that promise no heartbeat confirm nothing", func(ev *Evidence) {
			hung(ev, 5)
			silent(ev, 10*time.Second)
			for a, l := range ev.Links {
				l.Heartbeat = 0
				ev.Links[a] = l
			}
		}, []string{"PrimaryHung@" + prim}, false},
		{"vanished primary: dbha times out, heartbeats stopped on every link", func(ev *Evidence) {
			vanished(ev, 2)
			silent(ev, 1500*time.Millisecond)
		}, []string{"DeadPrimary@" + prim}, true},
		{"vanished primary: links silent, not yet past link_dead_after", func(ev *Evidence) {
			vanished(ev, 2)
			silent(ev, 900*time.Millisecond)
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"vanished primary: one link silent past its heartbeats, the other replica unreachable", func(ev *Evidence) {
			vanished(ev, 2)
			silent(ev, 1500*time.Millisecond)
			ev.Links[rep2] = LinkView{Error: "refused"}
		}, []string{"DeadPrimaryNoQuorum@" + prim}, false},
		{"manager cut: dbha times out, every link heartbeating", func(ev *Evidence) {
			vanished(ev, 9)
			silent(ev, 200*time.Millisecond)
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"manager cut, idle primary, links at the server's default heartbeat: no confirmation", func(ev *Evidence) {
			vanished(ev, 9)
			silent(ev, 1500*time.Millisecond)
			for a, l := range ev.Links {
				l.Heartbeat = 30 * time.Second // slave_net_timeout/2, never set by dbha
				ev.Links[a] = l
			}
		}, []string{"UnreachablePrimary@" + prim}, false},
		{"partitioned dbha, idle replicas silent, no heartbeat promised: no confirmation", func(ev *Evidence) {
			vanished(ev, 9)
			silent(ev, 30*time.Second)
			for a, l := range ev.Links {
				l.Heartbeat = 0
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
	cases := []struct {
		name   string
		change func(p *Policy)
		want   []string // words the error must hold; none: valid
	}{
		{"failures and hung_dead_after", func(p *Policy) { p.Failures, p.HungDeadAfter = 0, time.Millisecond },
			[]string{"failures", "hung_dead_after"}},
		{"link_dead_after within three heartbeats", func(p *Policy) { p.LinkDeadAfter = 750 * time.Millisecond },
			[]string{"link_dead_after (750ms) must exceed 3 heartbeat periods (750ms)"}},
		{"stream_stale within three heartbeats", func(p *Policy) { p.Heartbeat = time.Second; p.LinkDeadAfter = 4 * time.Second },
			[]string{"stream_stale (1s) must exceed 3 heartbeat periods (3s)"}},
		{"heartbeat finer than MariaDB's milliseconds", func(p *Policy) { p.Heartbeat = 250500 * time.Microsecond },
			[]string{"heartbeat must be a whole number of milliseconds"}},
		{"no heartbeat", func(p *Policy) { p.Heartbeat = 0 }, []string{"heartbeat must be a positive duration"}},
		{"a longer heartbeat with thresholds to match", func(p *Policy) {
			p.Heartbeat, p.LinkDeadAfter, p.StreamStale = time.Second, 3500*time.Millisecond, 4*time.Second
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			tc.change(&p)
			err := p.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestBackupVerifyFailed: a backup that failed its last verification is a
// warning, and critical when it is the newest one; never verified is not a
// failure, and one that verifies again clears the finding.
func TestBackupVerifyFailed(t *testing.T) {
	yes, no := true, false
	b := func(id string, v *bool) BackupView {
		return BackupView{ID: id, Source: rep1, Finished: t0, Verified: v, VerifiedAt: t0, Detail: "checksum mismatch"}
	}
	cases := []struct {
		name string
		done []BackupView
		want Severity // "" for no finding
	}{
		{"none", nil, ""},
		{"all verified", []BackupView{b("a", &yes), b("b", &yes)}, ""},
		{"never verified", []BackupView{b("a", nil), b("b", nil)}, ""},
		{"an older one fails", []BackupView{b("a", &no), b("b", &yes)}, Warning},
		{"the newest fails", []BackupView{b("a", &yes), b("b", &no)}, Critical},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := scene()
			ev.Backups = &BackupsView{ReadAt: t0, Done: c.done}
			var got []Finding
			for _, f := range Analyze(ev, DefaultPolicy(), t0) {
				if f.Code == BackupVerifyFailed {
					got = append(got, f)
				}
			}
			if c.want == "" {
				if len(got) > 0 {
					t.Fatalf("finding %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Severity != c.want {
				t.Fatalf("findings %+v, want one %s", got, c.want)
			}
			if !strings.Contains(got[0].Summary, "checksum mismatch") || !strings.Contains(got[0].Summary, "1 of 2 backups") {
				t.Errorf("summary %q does not say which backup failed and why", got[0].Summary)
			}
		})
	}
}

// TestRelevel: a configured level replaces the analysis's, for that code
// only, without touching the input.
func TestRelevel(t *testing.T) {
	in := []Finding{{Code: ReplicaLagging, Severity: Warning}, {Code: DeadPrimary, Severity: Critical}}
	out := Relevel(in, map[Code]Severity{ReplicaLagging: Critical, BackupFailed: Info})
	if out[0].Severity != Critical || out[1].Severity != Critical || in[0].Severity != Warning {
		t.Fatalf("relevelled %+v from %+v", out, in)
	}
	if !slices.Contains(Codes(), ReplicaLagging) || !slices.Contains(Codes(), Recovered) || !slices.IsSorted(Codes()) {
		t.Errorf("Codes() = %v", Codes())
	}
	for _, s := range []string{"info", "warning", "critical"} {
		if l, err := ParseSeverity(s); err != nil || string(l) != s {
			t.Errorf("ParseSeverity(%q) = %q, %v", s, l, err)
		}
	}
	if _, err := ParseSeverity("page"); err == nil {
		t.Error("ParseSeverity accepted \"page\"")
	}
}

// TestFailoverPaused: a paused cluster says so, a warning; critical once
// its primary is lost, beside the DeadPrimary that no recovery follows.
func TestFailoverPaused(t *testing.T) {
	ev := scene()
	ev.Paused = &PauseView{By: "alice", At: t0, Reason: "kernel upgrade", Lift: "dbha resume --cluster c"}
	find := func(ev Evidence) (Finding, bool) {
		for _, f := range Analyze(ev, DefaultPolicy(), t0) {
			if f.Code == FailoverPaused {
				return f, true
			}
		}
		return Finding{}, false
	}
	f, ok := find(ev)
	if !ok || f.Severity != Warning || !strings.Contains(f.Summary, "alice") || !strings.Contains(f.Summary, "dbha resume --cluster c") {
		t.Fatalf("paused, healthy: %+v, %v", f, ok)
	}
	killed(&ev)
	f, ok = find(ev)
	if !ok || f.Severity != Critical {
		t.Fatalf("paused, primary dead: %+v, %v; want critical", f, ok)
	}
	if !slices.ContainsFunc(Analyze(ev, DefaultPolicy(), t0), func(f Finding) bool { return f.Code == DeadPrimary }) {
		t.Error("the pause hid DeadPrimary")
	}
	ev.Paused = nil
	if _, ok := find(ev); ok {
		t.Error("FailoverPaused without a pause")
	}
}

func TestReplicaInconsistent(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	ev := Evidence{At: t0, Inconsistent: map[string]string{"db3:3306": "differs from the primary db1:3306 in shop.orders (dbha checksum at 2026-12-06T03:00:00Z)",
		"db2:3306": "differs from the primary db1:3306 in shop.items (dbha checksum at 2026-12-06T03:00:00Z)"}}
	var got []Finding
	for _, f := range Analyze(ev, DefaultPolicy(), t0) {
		if f.Code == ReplicaInconsistent {
			got = append(got, f)
		}
	}
	if len(got) != 2 || got[0].Instance != "db2:3306" || got[1].Instance != "db3:3306" || got[0].Severity != Warning ||
		!strings.Contains(got[1].Summary, "shop.orders") {
		t.Fatalf("findings %+v", got)
	}
	ev.Inconsistent = nil
	for _, f := range Analyze(ev, DefaultPolicy(), t0) {
		if f.Code == ReplicaInconsistent {
			t.Fatalf("a finding without a known difference: %+v", f)
		}
	}
}
