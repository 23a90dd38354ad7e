package checks

import (
	"fmt"
	"slices"
	"time"
)

// Path names an independent way of knowing whether the primary is alive.
type Path string

const (
	PathManager  Path = "manager"  // dbha → primary: TCP connect and SQL round trip
	PathReplica  Path = "replica"  // one replica's own replication link to the primary
	PathStream   Path = "stream"   // dbha's change stream from the primary
	PathPeer     Path = "peer"     // another dbha manager's observation
	PathExternal Path = "external" // the operator's check command
)

// Verdict is what one path says about the primary.
type Verdict string

const (
	Alive   Verdict = "alive"
	Dead    Verdict = "dead"
	Unknown Verdict = "unknown" // the path cannot tell (not reachable, not yet enough failures)
)

// Vote is one path's verdict with the reason, shown to operators and kept
// in audit records.
type Vote struct {
	Path    Path    `json:"path"`
	Source  string  `json:"source"` // instance or manager the vote comes from
	Verdict Verdict `json:"verdict"`
	Detail  string  `json:"detail"`
}

// Votes turns evidence into one vote per path and source, in a stable
// order: manager, replicas (by address), stream, peers, external.
func Votes(ev Evidence, p Policy) []Vote {
	out := []Vote{managerVote(ev, p)}
	addrs := make([]string, 0, len(ev.Links))
	for a := range ev.Links {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		if v, ok := replicaVote(a, ev.Links[a], ev.Primary, ev.At, p); ok {
			out = append(out, v)
		}
	}
	if ev.Stream != nil {
		out = append(out, streamVote(*ev.Stream, ev.Primary, ev.At, p))
	}
	for _, peer := range ev.Peers {
		if v, ok := peerVote(peer, ev.Primary, ev.At, p); ok {
			out = append(out, v)
		}
	}
	if ev.External != nil {
		v := Vote{Path: PathExternal, Source: "check command", Verdict: Dead, Detail: ev.External.Detail}
		if ev.External.Alive {
			v.Verdict = Alive
		}
		out = append(out, v)
	}
	return out
}

func managerVote(ev Evidence, p Policy) Vote {
	m := ev.Manager
	v := Vote{Path: PathManager, Source: "dbha", Verdict: Unknown}
	switch {
	case m.SQL.OK:
		v.Verdict, v.Detail = Alive, fmt.Sprintf("SQL answered in %.1fms", float64(m.SQL.Latency)/1e6)
	case !m.HungSince.IsZero():
		hung := ev.At.Sub(m.HungSince)
		v.Detail = fmt.Sprintf("TCP connects but SQL has not answered for %v", hung.Round(time.Millisecond))
		if hung >= p.HungDeadAfter {
			v.Verdict = Dead
		}
	case m.Failures >= p.Failures:
		v.Verdict = Dead
		v.Detail = fmt.Sprintf("%d consecutive probes failed since %s: %s", m.Failures, m.FailingSince.Format(time.TimeOnly), firstError(m.SQL.Error, m.TCP.Error))
	default:
		v.Detail = fmt.Sprintf("%d failed probe(s), %d needed: %s", m.Failures, p.Failures, firstError(m.SQL.Error, m.TCP.Error))
	}
	return v
}

// replicaVote: a replica that follows the primary vouches for it while its
// link is connected and has heard from it within LinkDeadAfter, and votes
// dead once its link is down, or once it has been silent past
// LinkDeadAfter and past MissedHeartbeats of the heartbeat period it
// promises: a live primary, even idle, is never silent that long. A link
// that promises no period says nothing once silent. Replicas of other
// sources say nothing about this primary.
func replicaVote(addr string, l LinkView, primary string, now time.Time, p Policy) (Vote, bool) {
	v := Vote{Path: PathReplica, Source: addr, Verdict: Unknown}
	silent := now.Sub(l.LastHeard)
	switch {
	case !l.Reachable:
		v.Detail = "dbha cannot reach this replica: " + l.Error
		return v, true
	case l.Source != primary && !(l.Halted && l.Source == ""):
		return v, false
	case !l.Connected && l.Halted:
		v.Detail = "replication is halted on this replica: its link says nothing about the primary"
	case !l.Connected:
		v.Verdict, v.Detail = Dead, "replication link is down: "+orNothing(l.Error)
	case l.LastHeard.IsZero():
		v.Verdict, v.Detail = Alive, "replication link is connected"
	case silent <= p.LinkDeadAfter:
		v.Verdict = Alive
		v.Detail = fmt.Sprintf("link connected, heard %v ago", silent.Round(time.Millisecond))
	case l.Heartbeat <= 0:
		v.Detail = fmt.Sprintf("link connected but silent for %v; it promises no heartbeat period, so silence proves nothing",
			silent.Round(time.Millisecond))
	case silent <= MissedHeartbeats*l.Heartbeat:
		v.Detail = fmt.Sprintf("link connected but silent for %v, within %d of its %v heartbeat periods",
			silent.Round(time.Millisecond), MissedHeartbeats, l.Heartbeat)
	default:
		v.Verdict = Dead
		v.Detail = fmt.Sprintf("link connected but silent for %v: more than %d of its %v heartbeat periods",
			silent.Round(time.Millisecond), MissedHeartbeats, l.Heartbeat)
	}
	return v, true
}

func streamVote(s StreamView, primary string, now time.Time, p Policy) Vote {
	v := Vote{Path: PathStream, Source: "dbha stream", Verdict: Unknown}
	switch {
	case s.Primary != "" && s.Primary != primary:
		v.Detail = "the stream follows " + s.Primary
	case !s.Connected:
		v.Verdict, v.Detail = Dead, "disconnected: "+orNothing(s.Error)
	case now.Sub(s.LastMessage) > p.StreamStale:
		v.Verdict = Dead
		v.Detail = fmt.Sprintf("connected but silent for %v", now.Sub(s.LastMessage).Round(time.Millisecond))
	default:
		v.Verdict = Alive
		v.Detail = fmt.Sprintf("heard %v ago", now.Sub(s.LastMessage).Round(time.Millisecond))
	}
	return v
}

func peerVote(peer PeerView, primary string, now time.Time, p Policy) (Vote, bool) {
	if peer.Primary != primary || now.Sub(peer.At) > p.PeerFresh {
		return Vote{}, false
	}
	v := Vote{Path: PathPeer, Source: peer.Manager, Verdict: Dead, Detail: peer.Detail}
	if peer.Reaches {
		v.Verdict = Alive
	}
	return v, true
}

func firstError(errs ...string) string {
	for _, e := range errs {
		if e != "" {
			return e
		}
	}
	return "no error given"
}

func orNothing(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}

// tally counts verdicts per path.
type tally struct {
	manager                                   Verdict
	replicasAlive, replicasDead, replicasNone int
	othersAlive, othersDead                   int
}

func count(vs []Vote) tally {
	var t tally
	for _, v := range vs {
		switch v.Path {
		case PathManager:
			t.manager = v.Verdict
		case PathReplica:
			switch v.Verdict {
			case Alive:
				t.replicasAlive++
			case Dead:
				t.replicasDead++
			default:
				t.replicasNone++
			}
		default:
			switch v.Verdict {
			case Alive:
				t.othersAlive++
			case Dead:
				t.othersDead++
			}
		}
	}
	return t
}
