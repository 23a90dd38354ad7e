package promote

import (
	"github.com/dbha/dbha/topology"
)

// Enforcement is what keeps a cluster at one writer between recoveries.
type Enforcement struct {
	// Fence lists the writable instances the writer endpoint does not name.
	Fence []string
	// Rejoin is the latest recovery's old primary when it is back,
	// read-only and following nobody: it should follow the writer (MariaDB
	// by a repoint, PostgreSQL through its rejoin command).
	Rejoin string
	// Hold says why the old primary is left fenced instead (it holds
	// transactions the new primary lacks: it needs reseeding).
	Hold string
}

// Enforce decides, from a snapshot, the instance the writer endpoint names
// and the latest recovery (nil when none), what keeps the cluster at one
// writer. It is pure. With no writer named there is nothing to go by, and
// nothing is decided.
func Enforce(s topology.Snapshot, writer string, latest *Record) Enforcement {
	var e Enforcement
	if writer == "" {
		return e
	}
	for _, in := range s.Instances {
		if in.Reachable && in.Role == topology.RolePrimary && !in.ReadOnly && in.Addr != writer {
			e.Fence = append(e.Fence, in.Addr)
		}
	}
	if latest == nil || !latest.Done || latest.Aborted || latest.Plan.NewPrimary != writer {
		return e
	}
	old, ok := s.Instance(latest.Plan.OldPrimary)
	primary, pok := s.Instance(writer)
	if !ok || !pok || !old.Reachable || !old.ReadOnly || old.Replication != nil {
		return e
	}
	if s.Engine != topology.Postgres {
		if errant := topology.Errant(history(old), history(primary)); errant.String() != "" {
			e.Hold = "it holds transactions the new primary lacks (" + errant.String() + "): reseed it"
			return e
		}
	}
	e.Rejoin = old.Addr
	return e
}
