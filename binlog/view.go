package binlog

import (
	"context"
	"sync"

	"github.com/dbha/dbha/topology"
)

// ClusterView answers a stream's questions about its cluster from fresh
// discoveries: which instance is the primary (Primary, a PrimaryFunc), and
// where the replicas stand (ReplicaPositions, a KeepFunc: retention keeps
// what they lack). It remembers the last position of every replica that
// answered, so a replica that stops answering never lets retention drop
// what it still needs, and forgets it once it is the writable primary (a
// promoted replica needs nothing from the store; remembering its old
// position would hold retention back for good). Its methods may be called
// from any goroutine.
type ClusterView struct {
	discover func(context.Context) topology.Snapshot

	mu        sync.Mutex
	positions map[string]topology.Position // by address
}

// NewClusterView returns a view that learns the cluster through discover,
// which must honour ctx's deadline.
func NewClusterView(discover func(context.Context) topology.Snapshot) *ClusterView {
	return &ClusterView{discover: discover, positions: map[string]topology.Position{}}
}

// Discover discovers the cluster, remembers the position of every replica
// that answered and forgets the writable primary's.
func (v *ClusterView) Discover(ctx context.Context) topology.Snapshot {
	s := v.discover(ctx)
	writer, _ := s.WritablePrimary()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, in := range s.Instances {
		switch {
		case in.Reachable && in.Addr == writer:
			delete(v.positions, in.Addr)
		case in.Reachable && in.Role == topology.RoleReplica:
			v.positions[in.Addr] = ReplicaPosition(in)
		}
	}
	return s
}

// ReplicaPosition is what a replica holds for lag and retention: what it
// applied (PostgreSQL the replay LSN; MariaDB/MySQL all it executed).
func ReplicaPosition(in topology.Instance) topology.Position {
	if in.Current.Engine() == topology.Postgres {
		return in.Applied
	}
	return in.Current
}

// Primary is a PrimaryFunc: the writable primary of a fresh discovery.
func (v *ClusterView) Primary(ctx context.Context) (string, error) {
	return v.Discover(ctx).WritablePrimary()
}

// ReplicaPositions is a KeepFunc: the last known position of every replica
// that ever answered. It reads memory only and never fails.
func (v *ClusterView) ReplicaPositions(context.Context) ([]topology.Position, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]topology.Position, 0, len(v.positions))
	for _, p := range v.positions {
		out = append(out, p)
	}
	return out, nil
}
