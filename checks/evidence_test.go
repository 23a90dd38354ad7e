package checks

import (
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// cycle builds one observation: the primary answers SQL or not, the TCP
// probe connects or not, and each replica reports a heartbeat count.
func cycle(at time.Time, sqlOK, sqlTimeout, tcpOK bool, heartbeats ...int64) Observation {
	s := topology.Snapshot{Cluster: "c", Primary: prim, Instances: []topology.Instance{
		{Addr: prim, Reachable: sqlOK, TimedOut: sqlTimeout, Role: topology.RolePrimary},
	}}
	for i, hb := range heartbeats {
		s.Instances = append(s.Instances, topology.Instance{Addr: []string{rep1, rep2}[i], Reachable: true, Role: topology.RoleReplica,
			Replication: &topology.Replication{Source: prim, IORunning: true, Heartbeats: hb}})
	}
	return Observation{At: at, Snapshot: s, TCP: ProbeResult{OK: tcpOK}}
}

func TestTrackerCountsConsecutiveFailures(t *testing.T) {
	var tr Tracker
	steps := []struct {
		obs          Observation
		failures     int
		failingSince time.Time
		hungSince    time.Time
	}{
		{cycle(t0, true, false, true), 0, time.Time{}, time.Time{}},
		{cycle(t0.Add(1*time.Second), false, false, false), 1, t0.Add(time.Second), time.Time{}},
		{cycle(t0.Add(2*time.Second), false, true, true), 2, t0.Add(time.Second), t0.Add(2 * time.Second)},
		{cycle(t0.Add(3*time.Second), false, true, true), 3, t0.Add(time.Second), t0.Add(2 * time.Second)},
		{cycle(t0.Add(4*time.Second), false, false, false), 4, t0.Add(time.Second), time.Time{}},
		{cycle(t0.Add(5*time.Second), true, false, true), 0, time.Time{}, time.Time{}},
	}
	for i, st := range steps {
		var ev Evidence
		tr, ev = tr.Observe(st.obs)
		m := ev.Manager
		if m.Failures != st.failures || !m.FailingSince.Equal(st.failingSince) || !m.HungSince.Equal(st.hungSince) {
			t.Fatalf("step %d: failures %d since %v hung %v; want %d since %v hung %v",
				i, m.Failures, m.FailingSince, m.HungSince, st.failures, st.failingSince, st.hungSince)
		}
	}
}

func TestTrackerLearnsWhenReplicasHeard(t *testing.T) {
	var tr Tracker
	var ev Evidence
	tr, ev = tr.Observe(cycle(t0, true, false, true, 10, 7))
	if !ev.Links[rep1].LastHeard.Equal(t0) {
		t.Fatalf("first sight: last heard %v, want %v", ev.Links[rep1].LastHeard, t0)
	}
	tr, ev = tr.Observe(cycle(t0.Add(2*time.Second), true, false, true, 11, 7))
	if !ev.Links[rep1].LastHeard.Equal(t0.Add(2*time.Second)) || !ev.Links[rep2].LastHeard.Equal(t0) {
		t.Fatalf("after a heartbeat on rep1 only: %v / %v", ev.Links[rep1].LastHeard, ev.Links[rep2].LastHeard)
	}
	// The engine's own timestamp (PostgreSQL) wins.
	obs := cycle(t0.Add(3*time.Second), true, false, true, 11, 7)
	obs.Snapshot.Instances[2].Replication.LastMessage = t0.Add(2500 * time.Millisecond)
	_, ev = tr.Observe(obs)
	if !ev.Links[rep2].LastHeard.Equal(t0.Add(2500 * time.Millisecond)) {
		t.Fatalf("LastMessage not used: %v", ev.Links[rep2].LastHeard)
	}
}

func TestTrackerKeepsTheLastKnownPrimary(t *testing.T) {
	var tr Tracker
	tr, _ = tr.Observe(cycle(t0, true, false, true, 1))
	obs := cycle(t0.Add(time.Second), false, false, false, 1)
	obs.Snapshot.Primary = "" // nobody answers as primary now
	_, ev := tr.Observe(obs)
	if ev.Primary != prim || ev.Manager.Failures != 1 {
		t.Fatalf("primary %q failures %d; want the last known %s with 1 failure", ev.Primary, ev.Manager.Failures, prim)
	}
}

func TestTrackerResetsOnANewPrimary(t *testing.T) {
	var tr Tracker
	tr, _ = tr.Observe(cycle(t0, false, false, false, 1))
	tr, _ = tr.Observe(cycle(t0.Add(time.Second), false, false, false, 1))
	obs := cycle(t0.Add(2*time.Second), false, false, false)
	obs.Snapshot.Primary = rep1
	obs.Snapshot.Instances = append(obs.Snapshot.Instances, topology.Instance{Addr: rep1, Reachable: false})
	_, ev := tr.Observe(obs)
	if ev.Primary != rep1 || ev.Manager.Failures != 1 {
		t.Fatalf("new primary %q failures %d; want %s counted afresh", ev.Primary, ev.Manager.Failures, rep1)
	}
}
