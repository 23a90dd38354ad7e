package promote

import (
	"errors"
	"fmt"

	"github.com/dbha/dbha/topology"
)

// SourceKind says where missing events come from.
type SourceKind string

const (
	FromRelayLog   SourceKind = "relay-log"   // the instance's own relay log or received WAL, not yet applied
	FromReplica    SourceKind = "replica"     // another replica's binlog (MariaDB/MySQL)
	FromStream     SourceKind = "stream"      // dbha's change-stream store
	FromOldPrimary SourceKind = "old-primary" // the live old primary (switchover)
	FromNewPrimary SourceKind = "new-primary" // ordinary replication once repointed
)

// Source is one place missing events come from, up to a position.
type Source struct {
	Kind SourceKind        `json:"kind"`
	Addr string            `json:"addr,omitempty"`
	Upto topology.Position `json:"upto"`
}

// Gap is what one replica lacks of the target, and where it will get it.
type Gap struct {
	Instance     string            `json:"instance"`
	Has          topology.Position `json:"has"`
	Transactions int64             `json:"transactions"` // MariaDB/MySQL
	Bytes        int64             `json:"bytes"`        // PostgreSQL
	From         []Source          `json:"from"`
}

// Loss is the expected loss: what the old primary was last seen holding, or
// any source holds, beyond what the new primary will hold.
type Loss struct {
	None         bool              `json:"none"`
	LastSeen     topology.Position `json:"last_seen"`
	Kept         topology.Position `json:"kept"`
	Transactions int64             `json:"transactions"`
	Bytes        int64             `json:"bytes"`
	Detail       string            `json:"detail"`
}

// usable reports whether an instance may serve as a source of events: a
// reachable replica. What a replica received from its source (MariaDB
// Gtid_IO_Pos, PostgreSQL the receive LSN) is clean even when the replica
// also wrote errant transactions itself; only when it reports nothing but
// its executed position do errant transactions disqualify it. Applying from
// it takes the GTIDs up to the target, never its errant ones.
func (pl *planner) usable(in topology.Instance) bool {
	if in.Addr == pl.old.Addr || !in.Reachable || in.Replication == nil || held(in).IsZero() {
		return false
	}
	return !in.Received.IsZero() || pl.errant[in.Addr] == ""
}

// streamHeld is what dbha's stream holds of the old primary, or zero.
func (pl *planner) streamHeld() topology.Position {
	if h := pl.r.Held; h != nil && h.From == pl.old.Addr {
		return h.Position
	}
	return topology.Position{}
}

// target is what the new primary will hold before it takes writes. A
// switchover catches up to the live old primary. A failover joins every
// usable source: on MariaDB/MySQL any replica's binlog and dbha's store can
// feed the new primary; on PostgreSQL only its own received WAL and dbha's
// WAL store can (another standby's extra WAL counts as lost).
func (pl *planner) target(kind Kind, chosen Candidate) (topology.Position, []string) {
	if kind == Switchover {
		return pl.old.Current, nil
	}
	var warnings []string
	t := chosen.Position
	join := func(pos topology.Position, what string) {
		if pos.IsZero() {
			return
		}
		u, err := topology.Union(t, pos)
		switch {
		case errors.Is(err, topology.ErrDiverged):
			warnings = append(warnings, fmt.Sprintf("%s (%s) has diverged from the new primary's history and is not used", what, pos))
		case err == nil:
			t = u
		}
	}
	if pl.s.Engine != topology.Postgres {
		for _, in := range pl.s.Instances {
			if in.Addr != chosen.Addr && pl.usable(in) {
				join(held(in), in.Addr)
			}
		}
	}
	join(pl.streamHeld(), "dbha's stream store")
	return t, warnings
}

// gaps lists, for every reachable replica, what it lacks of the target and
// where that comes from.
func (pl *planner) gaps(p Plan) []Gap {
	var out []Gap
	for _, in := range pl.s.Instances {
		if in.Addr == pl.old.Addr || !in.Reachable || in.Replication == nil {
			continue
		}
		has := held(in)
		g := Gap{Instance: in.Addr, Has: has,
			Transactions: topology.TransactionsBehind(has, p.Target), Bytes: topology.BytesBehind(has, p.Target)}
		if in.Addr == p.NewPrimary {
			g.From = pl.sourcesForNewPrimary(p, in)
		} else if g.Transactions > 0 || g.Bytes > 0 || p.Kind == Switchover {
			g.From = []Source{{Kind: FromNewPrimary, Addr: p.NewPrimary, Upto: p.Target}}
		}
		out = append(out, g)
	}
	return out
}

// sourcesForNewPrimary lists in order what brings the chosen replica to the
// target: first its own unapplied relay log or WAL, then the sources that
// hold more, most advanced replica first, then dbha's store.
func (pl *planner) sourcesForNewPrimary(p Plan, in topology.Instance) []Source {
	var out []Source
	has := held(in)
	if o, err := topology.Compare(in.Applied, has); err == nil && o == topology.Behind {
		out = append(out, Source{Kind: FromRelayLog, Addr: in.Addr, Upto: has})
	}
	if p.Kind == Switchover {
		return append(out, Source{Kind: FromOldPrimary, Addr: pl.old.Addr, Upto: p.Target})
	}
	reached := has
	ahead := func(pos topology.Position) bool {
		o, err := topology.Compare(pos, reached)
		return err == nil && o == topology.Ahead
	}
	if pl.s.Engine != topology.Postgres {
		for _, other := range pl.s.Instances {
			if other.Addr == in.Addr || !pl.usable(other) || !ahead(held(other)) {
				continue
			}
			out = append(out, Source{Kind: FromReplica, Addr: other.Addr, Upto: held(other)})
			if u, err := topology.Union(reached, held(other)); err == nil {
				reached = u
			}
		}
	}
	if h := pl.streamHeld(); !h.IsZero() && ahead(h) {
		out = append(out, Source{Kind: FromStream, Upto: h})
	}
	return out
}

// loss compares everything known to exist (the old primary's last seen
// position, every usable source) with what the new primary will hold.
func (pl *planner) loss(p Plan) Loss {
	if p.Kind == Switchover {
		return Loss{None: true, Kept: p.Target, Detail: "none: the old primary is alive and the candidate catches up to it before promotion"}
	}
	known := pl.r.LastSeen
	join := func(pos topology.Position) {
		if u, err := topology.Union(known, pos); err == nil {
			known = u
		}
	}
	for _, in := range pl.s.Instances {
		if pl.usable(in) {
			join(held(in))
		}
	}
	join(pl.streamHeld())
	l := Loss{LastSeen: pl.r.LastSeen, Kept: p.Target,
		Transactions: topology.TransactionsBehind(p.Target, known), Bytes: topology.BytesBehind(p.Target, known)}
	switch {
	case l.Transactions > 0 || l.Bytes > 0:
		l.Detail = fmt.Sprintf("%s seen beyond what the new primary will hold (%s)", amount(l), known)
	case !pl.r.LastSeen.IsZero():
		l.None, l.Detail = true, "none of what dbha saw: the new primary will hold everything the old primary was last seen with"
	default:
		l.None, l.Detail = true, "none of what any replica or dbha's stream holds; what the old primary committed and nobody received is unknown"
	}
	return l
}

func amount(l Loss) string {
	if l.Bytes > 0 {
		return fmt.Sprintf("%d bytes of WAL", l.Bytes)
	}
	return fmt.Sprintf("%d transaction(s)", l.Transactions)
}
