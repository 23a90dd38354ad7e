package topology

import (
	"context"
	"sync"
	"testing"
	"time"
)

// deadlineProber answers from a table and remembers how long each probe
// was given.
type deadlineProber struct {
	mu     sync.Mutex
	given  map[string]time.Duration
	answer map[string]Instance
}

func (p *deadlineProber) Probe(ctx context.Context, addr string) Instance {
	d, _ := ctx.Deadline()
	p.mu.Lock()
	p.given[addr] = time.Until(d)
	p.mu.Unlock()
	if in, ok := p.answer[addr]; ok {
		return in
	}
	return Instance{Error: "dial tcp " + addr + ": i/o timeout", TimedOut: true}
}

// An instance given a bound of its own is asked under that bound, not the
// probe timeout; the others still get the probe timeout.
func TestDiscoverGivesABoundedInstanceItsOwnTimeout(t *testing.T) {
	pos := mdb(t, "0-1-10")
	p := &deadlineProber{given: map[string]time.Duration{},
		answer: map[string]Instance{"db2": replicaOf("db2", "db1", pos), "db3": replicaOf("db3", "db1", pos)}}
	c := Cluster{Name: "c", Engine: MariaDB, Instances: []string{"db1", "db2", "db3"}}
	s := Discover(context.Background(), c, p, time.Minute, Bound{Addr: "db1", Timeout: 200 * time.Millisecond})
	if got := p.given["db1"]; got > 200*time.Millisecond {
		t.Errorf("db1 was given %v, want its bound of 200ms", got)
	}
	for _, a := range []string{"db2", "db3"} {
		if got := p.given[a]; got < 30*time.Second {
			t.Errorf("%s was given %v, want the probe timeout of a minute", a, got)
		}
	}
	if in, ok := s.Instance("db1"); !ok || in.Reachable {
		t.Fatalf("db1 in the snapshot: %+v", in)
	}
	if in, _ := s.Instance("db2"); !in.Reachable {
		t.Fatalf("db2 in the snapshot: %+v", in)
	}
}
