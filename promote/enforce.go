package promote

import (
	"github.com/dbha/dbha/topology"
)

// Enforcement is what keeps a cluster at one writer, and brings every
// instance that returns back to following it, between recoveries.
type Enforcement struct {
	// Fence lists the writable instances the writer endpoint does not name.
	Fence []string
	// Rejoin lists the instances that are back, read-only and following
	// nobody (or a source that does not lead to the writer: a replica the
	// failover could not repoint, still on the old primary), and hold
	// nothing the writer lacks: they should follow the writer (MariaDB by
	// a repoint, PostgreSQL through its rejoin command).
	Rejoin []string
	// Rewind lists the instances that are back, read-only and following
	// nobody, and hold what the writer lacks: MariaDB/MySQL transactions
	// (the unreplicated tail of a crashed primary), which are saved and
	// undone; PostgreSQL WAL beyond the writer's timeline switch (a former
	// primary ahead of the fork), which is saved before pg_rewind discards
	// it. Then the instance follows the writer.
	Rewind []Divergent
	// Reopen is the instance the writer endpoint names when it is the
	// cluster's primary (reachable, following no source) but read-only,
	// and no instance is writable: with guards, its guard fenced it when
	// it could not renew its lease (Consul was out of reach). The keeper
	// reopens it only when the cluster uses leases: it grants it its lease
	// again, then makes it writable. Without leases a read-only primary is
	// left to the operator (NoWritablePrimary), as before.
	//
	// With no writer named yet (Unpublished), Reopen is the cluster's
	// primary when it is read-only, follows no source, every other
	// reachable instance follows it, and no instance is writable: a guard
	// started before the first publication fences a writable server whose
	// grant Consul does not confirm in time, and the keeper publishes only
	// a writable primary, so nothing else would ever open it. The keeper
	// reopens it only when the cluster's grant was never stored or names
	// it.
	Reopen      string
	Unpublished bool
}

// Divergent is an instance that holds transactions the writer lacks.
// Errant is what it holds beyond the writer: MariaDB/MySQL the errant
// GTIDs; PostgreSQL its whole position, whose WAL past the fork the writer
// lacks.
type Divergent struct {
	Addr   string            `json:"addr"`
	Errant topology.Position `json:"errant"`
}

// Enforce decides, from a snapshot and the instance the writer endpoint
// names, what keeps the cluster at one writer and brings the others back
// to follow it. It is pure. With no writer named nothing is fenced and
// nothing rejoins: only a fenced primary that everything follows is
// proposed for reopening (Unpublished). Instances rejoin only while the
// writer endpoint names the snapshot's one writable primary (a cluster
// that is changing is left to the recovery that changes it).
func Enforce(s topology.Snapshot, writer string) Enforcement {
	var e Enforcement
	if writer == "" {
		if fencedPrimary(s, s.Primary) && allFollow(s, s.Primary) {
			e.Reopen, e.Unpublished = s.Primary, true
		}
		return e
	}
	for _, in := range s.Instances {
		if in.Reachable && in.Role == topology.RolePrimary && !in.ReadOnly && in.Addr != writer {
			e.Fence = append(e.Fence, in.Addr)
		}
	}
	primary, ok := s.Instance(writer)
	if len(e.Fence) == 0 && fencedPrimary(s, writer) {
		e.Reopen = writer
	}
	if len(e.Fence) > 0 || !ok || !primary.Reachable || primary.ReadOnly || primary.Replication != nil {
		return e
	}
	tree := s.Followers(writer)
	for _, in := range s.Instances {
		if in.Addr == writer || !in.Reachable || !in.ReadOnly || !strays(in, tree, s) {
			continue
		}
		if errant, ok := holdsMore(s.Engine, in, primary); ok {
			e.Rewind = append(e.Rewind, Divergent{Addr: in.Addr, Errant: errant})
			continue
		}
		e.Rejoin = append(e.Rejoin, in.Addr)
	}
	return e
}

// strays reports whether in is cut loose from the writer's tree: it
// follows nobody, or a source of the cluster from which no chain of
// sources leads to the writer. A source outside the cluster is the
// operator's business.
func strays(in topology.Instance, tree map[string]bool, s topology.Snapshot) bool {
	if in.Replication == nil {
		return true
	}
	_, ofCluster := s.Instance(in.Replication.Source)
	return ofCluster && !tree[in.Addr]
}

// fencedPrimary reports whether addr is the snapshot's primary, reachable,
// following no source, and read-only, with no instance writable.
func fencedPrimary(s topology.Snapshot, addr string) bool {
	in, ok := s.Instance(addr)
	return ok && addr != "" && s.Primary == addr && in.Reachable && in.ReadOnly && in.Replication == nil && !anyWritable(s)
}

// allFollow reports whether every reachable instance is root or follows
// it, directly or through others.
func allFollow(s topology.Snapshot, root string) bool {
	tree := s.Followers(root)
	for _, in := range s.Instances {
		if in.Reachable && !tree[in.Addr] {
			return false
		}
	}
	return true
}

func anyWritable(s topology.Snapshot) bool {
	for _, in := range s.Instances {
		if in.Reachable && !in.ReadOnly {
			return true
		}
	}
	return false
}

// holdsMore says whether in holds what primary lacks, and what. MariaDB
// and MySQL: errant GTIDs. PostgreSQL: a position ahead of, or forked from,
// the primary's along its timeline history (a crashed primary's unreplicated
// WAL, or only its own end-of-recovery checkpoint); one behind or equal
// holds nothing of its own, and an unknown one is left to the rejoin as
// before.
func holdsMore(engine topology.Engine, in, primary topology.Instance) (topology.Position, bool) {
	if engine != topology.Postgres {
		errant := topology.Errant(history(in), history(primary))
		return errant, errant.String() != ""
	}
	o, err := topology.Compare(in.Current, primary.Current)
	return in.Current, err == nil && (o == topology.Ahead || o == topology.Diverged)
}
