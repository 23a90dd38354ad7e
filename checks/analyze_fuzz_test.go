package checks

import (
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// FuzzAnalyze drives Analyze with arbitrary evidence. It must never panic,
// and it must never declare the primary dead (or ask for a recovery) while
// any replica reports a live, fresh link to it, or any other path hears
// it; and a recovery needs a replica that lost the primary: its link down,
// or silent past link_dead_after and three of the heartbeat periods it
// promises.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{2, 1, 0, 1, 1, 0, 0, 0})
	f.Add([]byte{9, 0, 0, 0, 0, 0, 3, 3, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		next := func() int {
			if len(b) == 0 {
				return 0
			}
			v := int(b[0])
			b = b[1:]
			return v
		}
		ev := scene()
		ev.Manager = ManagerView{
			TCP: ProbeResult{OK: next()%2 == 0}, SQL: ProbeResult{OK: next()%3 == 0, TimedOut: next()%2 == 0},
			Failures: next() % 8,
		}
		if next()%2 == 0 {
			ev.Manager.HungSince = t0.Add(-time.Duration(next()) * 100 * time.Millisecond)
		}
		for _, a := range []string{rep1, rep2} {
			ev.Links[a] = LinkView{Reachable: next()%4 != 0, Source: []string{prim, rep1, ""}[next()%3],
				Connected: next()%2 == 0, LastHeard: t0.Add(-time.Duration(next()) * 100 * time.Millisecond),
				Heartbeat: time.Duration(next()%4) * 250 * time.Millisecond}
		}
		if next()%2 == 0 {
			ev.Stream = &StreamView{Connected: next()%2 == 0, Primary: prim, LastMessage: t0.Add(-time.Duration(next()) * 100 * time.Millisecond)}
		}
		if next()%2 == 0 {
			ev.Peers = []PeerView{{Manager: "p", Primary: prim, At: t0.Add(-time.Duration(next()) * time.Second), Reaches: next()%2 == 0}}
		}
		if next()%3 == 0 {
			ev.Snapshot.Problems = []topology.Problem{{Code: topology.ReplicationStopped, Instance: rep1}}
		}
		p := DefaultPolicy()
		findings := Analyze(ev, p, t0)

		alive := false
		for _, v := range Votes(ev, p) {
			alive = alive || v.Verdict == Alive
		}
		lost := false
		for _, l := range ev.Links {
			silence := t0.Sub(l.LastHeard)
			follows := l.Reachable && l.Source == prim
			lost = lost || (follows && !l.Connected && !l.Halted) ||
				(follows && l.Connected && l.Heartbeat > 0 && silence > p.LinkDeadAfter && silence > MissedHeartbeats*l.Heartbeat)
		}
		for _, fd := range findings {
			if alive && (fd.Action == Recover || fd.Code == DeadPrimary || fd.Code == DeadPrimaryAndSomeReplicas) {
				t.Fatalf("%s while a path says the primary is alive: %+v", fd.Code, ev)
			}
			if fd.Action == Recover && !lost {
				t.Fatalf("%s while no replica lost the primary: %+v", fd.Code, ev.Links)
			}
			if q := CountQuorum(ev, p); fd.Action == Recover && 2*len(q.Lost) <= q.Voters {
				t.Fatalf("%s without a strict majority of voters: %s", fd.Code, q)
			}
			for a, l := range ev.Links {
				fresh := l.Reachable && l.Source == prim && l.Connected && t0.Sub(l.LastHeard) <= p.LinkDeadAfter
				if fresh && fd.Action == Recover {
					t.Fatalf("%s while replica %s has a live link", fd.Code, a)
				}
			}
		}
	})
}
