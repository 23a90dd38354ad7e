package guard

import (
	"context"

	"github.com/dbha/dbha/topology"
)

// Fencer is the engine's fence (topology/mysql and topology/postgres
// controllers): read-only, then client sessions ended.
type Fencer interface {
	Fence(ctx context.Context, addr string) error
}

// Instance is the guard's server reached through the engine's prober and
// fence, as dbha reaches it.
type Instance struct {
	Addr   string
	Prober topology.Prober
	Fencer Fencer
}

// State probes the server: writable when it answers and is not read-only
// (a primary, or a replica someone left writable).
func (s Instance) State(ctx context.Context) ServerState {
	in := s.Prober.Probe(ctx, s.Addr)
	switch {
	case !in.Reachable:
		return ServerUnknown
	case in.ReadOnly:
		return ServerReadOnly
	}
	return ServerWritable
}

// Fence fences the server with the engine's fence.
func (s Instance) Fence(ctx context.Context) error { return s.Fencer.Fence(ctx, s.Addr) }
