package topology

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Prober probes one instance of one engine. Probe must return within ctx's
// deadline and never returns an error: an instance it could not reach, or
// could not log in to, comes back with Reachable false and Error and
// ErrorCode set. Probe may be called concurrently for different addresses.
type Prober interface {
	Probe(ctx context.Context, addr string) Instance
}

// Cluster is what discovery needs to know of a configured cluster.
type Cluster struct {
	Name      string
	Engine    Engine
	Instances []string // host:port of every configured instance
}

// Bound is a probe timeout of its own for one instance.
type Bound struct {
	Addr    string
	Timeout time.Duration
}

// Discover probes every instance of c concurrently, each under its own
// timeout (timeout, or the one bounds gives its address), and builds the
// cluster's snapshot. One slow or dead instance costs at most its timeout
// and never hides the others.
func Discover(ctx context.Context, c Cluster, p Prober, timeout time.Duration, bounds ...Bound) Snapshot {
	addrs := c.Instances
	instances := make([]Instance, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		d := timeout
		if k := slices.IndexFunc(bounds, func(b Bound) bool { return b.Addr == addr }); k >= 0 {
			d = bounds[k].Timeout
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			start := time.Now()
			in := p.Probe(pctx, addr)
			in.Addr = addr
			in.ProbeTime = Duration(time.Since(start))
			instances[i] = in
		})
	}
	wg.Wait()
	return Build(c.Name, c.Engine, instances, time.Now())
}
