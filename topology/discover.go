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

// Discover probes every instance of c concurrently, each under its own
// timeout, and builds the cluster's snapshot. One slow or dead instance
// costs at most timeout and never hides the others. An instance in known
// (by address) is not probed: it is taken as found a moment ago.
func Discover(ctx context.Context, c Cluster, p Prober, timeout time.Duration, known ...Instance) Snapshot {
	addrs := c.Instances
	instances := make([]Instance, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		if k := slices.IndexFunc(known, func(in Instance) bool { return in.Addr == addr }); k >= 0 {
			instances[i] = known[k]
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
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
