package checks

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Voters says who, besides the cluster's database instances, may vote on
// whether its primary is lost: the dbha managers that watch it and an
// optional witness (the cluster's check_command, run from elsewhere). The
// membership is fixed by configuration, never learnt from who happens to
// answer: a side of a partition must not shrink the count to a majority
// of itself.
type Voters struct {
	// Managers names every manager that watches the cluster
	// (manager.members), this one included; empty: this one alone.
	Managers []string `json:"managers,omitempty"`
	// Self is this manager's name (manager.name).
	Self string `json:"self,omitempty"`
	// Witness: the cluster has a check_command, one voter more.
	Witness bool `json:"witness,omitempty"`
}

// WitnessVoter names the check command among the voters.
const WitnessVoter = "check command"

// Quorum is the count behind an automatic failover: every voter, what it
// says of the primary from fresh evidence, and how many must say it is
// lost. A voter that cannot be asked (an unreachable replica, a silent
// peer), or cannot tell (a halted link, a silence within its heartbeats),
// or is the primary itself, is Silent: it is never a vote for "lost".
type Quorum struct {
	Voters int      `json:"voters"`
	Needed int      `json:"needed"`
	Lost   []string `json:"lost"`
	Alive  []string `json:"alive"`
	Silent []string `json:"silent"`
}

// Held reports whether a strict majority of the voters says the primary
// is lost.
func (q Quorum) Held() bool { return q.Needed > 0 && len(q.Lost) >= q.Needed }

// String is the count as operators read it: "3 of 4 voters say the
// primary is lost, 3 needed (lost: ...; alive: ...; silent: ...)".
func (q Quorum) String() string {
	var parts []string
	for _, g := range []struct {
		name string
		who  []string
	}{{"lost", q.Lost}, {"alive", q.Alive}, {"silent", q.Silent}} {
		if len(g.who) > 0 {
			parts = append(parts, g.name+": "+strings.Join(g.who, ", "))
		}
	}
	return fmt.Sprintf("%d of %d voters say the primary is lost, %d needed (%s)",
		len(q.Lost), q.Voters, q.Needed, strings.Join(parts, "; "))
}

// CountQuorum counts the voters of ev's cluster. The voters are the
// primary (which never votes itself lost), every other instance of the
// snapshot (its replica vote), each manager of the membership (this one
// by its own paths, the others by their fresh published observations),
// and the witness. It is pure.
func CountQuorum(ev Evidence, p Policy) Quorum {
	return newAnalysis(ev, p, ev.At).q
}

func (a *analysis) quorum() Quorum {
	var q Quorum
	put := func(who string, v Verdict) {
		q.Voters++
		switch v {
		case Dead:
			q.Lost = append(q.Lost, who)
		case Alive:
			q.Alive = append(q.Alive, who)
		default:
			q.Silent = append(q.Silent, who)
		}
	}
	replica := map[string]Verdict{}
	for _, v := range a.votes {
		if v.Path == PathReplica {
			replica[v.Source] = v.Verdict
		}
	}
	if a.ev.Primary != "" {
		put(a.ev.Primary, Unknown)
	}
	for _, in := range a.ev.Snapshot.Instances {
		if in.Addr != a.ev.Primary {
			put(in.Addr, replica[in.Addr])
		}
	}
	vs := a.ev.Voters
	put(cmp.Or(vs.Self, "dbha"), a.selfVerdict())
	for _, m := range vs.Managers {
		if m != vs.Self {
			put(m, a.peerVerdict(m))
		}
	}
	if vs.Witness || a.ev.External != nil {
		v := Unknown
		if x := a.ev.External; x != nil {
			v = Dead
			if x.Alive {
				v = Alive
			}
		}
		put(WitnessVoter, v)
	}
	q.Needed = q.Voters/2 + 1
	return q
}

// selfVerdict is this manager's vote: lost when its own probes say dead
// (or the primary is hung and forsaken), alive when its probes or its
// change stream still hear the primary.
func (a *analysis) selfVerdict() Verdict {
	stream := Unknown
	for _, v := range a.votes {
		if v.Path == PathStream {
			stream = v.Verdict
		}
	}
	switch {
	case a.t.manager == Alive || stream == Alive:
		return Alive
	case a.t.manager == Dead || a.hungAndForsaken():
		return Dead
	}
	return Unknown
}

// peerVerdict is another member's vote: its fresh published observation
// of the same primary, or silence.
func (a *analysis) peerVerdict(name string) Verdict {
	i := slices.IndexFunc(a.ev.Peers, func(pv PeerView) bool { return pv.Manager == name })
	if i < 0 {
		return Unknown
	}
	v, ok := peerVote(a.ev.Peers[i], a.ev.Primary, a.now, a.p)
	if !ok {
		return Unknown
	}
	return v.Verdict
}

// Shape says whether a cluster, as it stands, could fail over on its own
// if it lost its primary now, and how many other voters it could lose
// besides. A voter can confirm a loss when it is a manager or the witness,
// or a replica that dbha reaches and that follows the primary over a link
// that is not halted. It is pure.
type Shape struct {
	Voters int `json:"voters"`
	Needed int `json:"needed"`
	// Confirmers are the voters that could say the primary is lost.
	Confirmers []string `json:"confirmers"`
	// Candidates are the replicas that follow the primary.
	Candidates int `json:"candidates"`
	// CanFailOver: enough confirmers and at least one candidate.
	CanFailOver bool `json:"can_fail_over"`
	// Spare is how many confirmers may be lost with the primary and still
	// leave a majority; negative when the cluster cannot fail over.
	Spare   int    `json:"spare"`
	Summary string `json:"summary"`
}

// ShapeOf judges ev's cluster (see Shape).
func ShapeOf(ev Evidence) Shape {
	a := &analysis{ev: ev}
	q := a.quorum() // for the membership and the count only
	s := Shape{Voters: q.Voters, Needed: q.Needed}
	for _, in := range ev.Snapshot.Instances {
		if in.Addr == ev.Primary || !in.Reachable || in.Replication == nil {
			continue
		}
		if in.Replication.Source == ev.Primary && !in.Replication.Halted {
			s.Confirmers = append(s.Confirmers, in.Addr)
			s.Candidates++
		}
	}
	s.Confirmers = append(s.Confirmers, cmp.Or(ev.Voters.Self, "dbha"))
	for _, m := range ev.Voters.Managers {
		if m != ev.Voters.Self {
			s.Confirmers = append(s.Confirmers, m)
		}
	}
	if ev.Voters.Witness || ev.External != nil {
		s.Confirmers = append(s.Confirmers, WitnessVoter)
	}
	s.Spare = len(s.Confirmers) - s.Needed
	s.CanFailOver = ev.Primary != "" && s.Spare >= 0 && s.Candidates > 0
	switch {
	case ev.Primary == "":
		s.Summary = "no primary is known: nothing to judge"
	case s.Candidates == 0:
		s.Summary = "cannot fail over automatically: no reachable replica follows the primary"
	case s.Spare < 0:
		s.Summary = fmt.Sprintf("cannot fail over automatically in its current shape: %d of %d voters could confirm a lost primary (%s), %d needed; add a replica, a manager (manager.members) or a witness (check_command)",
			len(s.Confirmers), s.Voters, strings.Join(s.Confirmers, ", "), s.Needed)
	case s.Spare == 0:
		s.Summary = fmt.Sprintf("fails over automatically when its primary alone is lost: %d of %d voters could confirm, %d needed; one voter more lost with it stops automatic failover",
			len(s.Confirmers), s.Voters, s.Needed)
	default:
		s.Summary = fmt.Sprintf("fails over automatically when its primary is lost, even with up to %d more voter(s) lost: %d of %d voters could confirm, %d needed",
			s.Spare, len(s.Confirmers), s.Voters, s.Needed)
	}
	return s
}
