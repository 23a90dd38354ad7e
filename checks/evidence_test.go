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

// TestTrackerLinkMarks: when the tracker takes a replica to have heard from
// its source. A link that just came up, or now follows another source, has
// just heard from it (it connected): counters left from before say
// nothing about this source. A moving binlog read position is hearing too.
func TestTrackerLinkMarks(t *testing.T) {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		at     time.Time
		change func(r *topology.Replication)
		want   time.Time // rep1's LastHeard
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"silent link keeps its mark", []step{
			{at(0), nil, at(0)},
			{at(1), nil, at(0)},
			{at(2), nil, at(0)},
		}},
		{"repointed: counters unchanged, another source", []step{
			{at(0), nil, at(0)},
			{at(1), nil, at(0)},
			{at(2), func(r *topology.Replication) { r.Source = rep2 }, at(2)},
			{at(3), func(r *topology.Replication) { r.Source = rep2 }, at(2)},
		}},
		{"IO thread reconnected", []step{
			{at(0), nil, at(0)},
			{at(1), func(r *topology.Replication) { r.IORunning = false }, at(0)},
			{at(2), func(r *topology.Replication) { r.IORunning = false }, at(0)},
			{at(3), nil, at(3)},
		}},
		{"read position moves inside a long transaction", []step{
			{at(0), func(r *topology.Replication) { r.SourceLogPos = "bin.000001:400" }, at(0)},
			{at(1), func(r *topology.Replication) { r.SourceLogPos = "bin.000001:90000" }, at(1)},
			{at(2), func(r *topology.Replication) { r.SourceLogPos = "bin.000001:90000" }, at(1)},
		}},
		{"the engine's time wins when later", []step{
			{at(0), nil, at(0)},
			{at(2), func(r *topology.Replication) { r.LastMessage = at(1.5) }, at(1.5)},
		}},
		{"the engine's time, when it has one, wins over a move seen late", []step{
			{at(0), func(r *topology.Replication) { r.LastMessage = at(0) }, at(0)},
			{at(2), func(r *topology.Replication) { r.SourceLogPos, r.LastMessage = "bin.000001:900", at(1.2) }, at(1.2)},
			{at(3), func(r *topology.Replication) { r.SourceLogPos, r.LastMessage = "bin.000001:900", at(1.2) }, at(1.2)},
		}},
		{"the engine's time, when earlier, does not undo a reconnect", []step{
			{at(0), func(r *topology.Replication) { r.IORunning = false }, time.Time{}},
			{at(1), func(r *topology.Replication) { r.LastMessage = at(-30) }, at(1)},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tr Tracker
			for i, st := range tc.steps {
				obs := cycle(st.at, true, false, true, 10)
				if st.change != nil {
					st.change(obs.Snapshot.Instances[1].Replication)
				}
				var ev Evidence
				tr, ev = tr.Observe(obs)
				if got := ev.Links[rep1].LastHeard; !got.Equal(st.want) {
					t.Fatalf("step %d: last heard %v, want %v", i, got.Sub(t0), st.want.Sub(t0))
				}
			}
		})
	}
}

// TestTrackerHeartbeatPeriod: a link's period is the shorter of the
// replica's own and the primary's keepalive period; the primary's is
// remembered while it cannot answer, and forgotten for a new primary.
func TestTrackerHeartbeatPeriod(t *testing.T) {
	withPeriods := func(o Observation, keepalive, replica time.Duration) Observation {
		o.Snapshot.Instances[0].Keepalive = topology.Duration(keepalive)
		o.Snapshot.Instances[1].Replication.Heartbeat = topology.Duration(replica)
		return o
	}
	var tr Tracker
	var ev Evidence
	tr, ev = tr.Observe(withPeriods(cycle(t0, true, false, true, 1), 0, 250*time.Millisecond))
	if got := ev.Links[rep1].Heartbeat; got != 250*time.Millisecond {
		t.Fatalf("MariaDB: the replica's period %v, want 250ms", got)
	}
	tr, ev = tr.Observe(withPeriods(cycle(t0.Add(time.Second), true, false, true, 1), 500*time.Millisecond, 2*time.Second))
	if got := ev.Links[rep1].Heartbeat; got != 500*time.Millisecond {
		t.Fatalf("PostgreSQL: %v, want the primary's keepalive, 500ms", got)
	}
	tr, ev = tr.Observe(withPeriods(cycle(t0.Add(2*time.Second), false, true, true, 1), 0, 2*time.Second))
	if got := ev.Links[rep1].Heartbeat; got != 500*time.Millisecond {
		t.Fatalf("primary hung: %v, want its keepalive remembered, 500ms", got)
	}
	obs := withPeriods(cycle(t0.Add(3*time.Second), false, false, false, 1), 0, 2*time.Second)
	obs.Snapshot.Primary = rep2
	obs.Snapshot.Instances = append(obs.Snapshot.Instances, topology.Instance{Addr: rep2})
	_, ev = tr.Observe(obs)
	if got := ev.Links[rep1].Heartbeat; got != 2*time.Second {
		t.Fatalf("new primary not reached yet: %v, want the replica's own 2s", got)
	}
}
