package topology

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// listProber answers from a table and remembers whom it probed.
type listProber struct {
	mu     sync.Mutex
	probed []string
	answer map[string]Instance
}

func (p *listProber) Probe(_ context.Context, addr string) Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probed = append(p.probed, addr)
	return p.answer[addr]
}

// An instance given as known is not probed; the snapshot holds it as given.
func TestDiscoverTakesKnownInstancesAsFound(t *testing.T) {
	pos := mdb(t, "0-1-10")
	p := &listProber{answer: map[string]Instance{"db2": replicaOf("db2", "db1", pos), "db3": replicaOf("db3", "db1", pos)}}
	c := Cluster{Name: "c", Engine: MariaDB, Instances: []string{"db1", "db2", "db3"}}
	known := Instance{Addr: "db1", Error: "dial tcp db1: i/o timeout (dbha's probe 12ms ago; not asked again)", TimedOut: true}
	s := Discover(context.Background(), c, p, time.Second, known)
	slices.Sort(p.probed)
	if !slices.Equal(p.probed, []string{"db2", "db3"}) {
		t.Fatalf("probed %q, want db2 and db3 only", p.probed)
	}
	if in, ok := s.Instance("db1"); !ok || in.Reachable || in.Error != known.Error {
		t.Fatalf("db1 in the snapshot: %+v", in)
	}
	if in, _ := s.Instance("db2"); !in.Reachable {
		t.Fatalf("db2 not probed: %+v", in)
	}
}
