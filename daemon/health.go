package daemon

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// WriterReader tells which instance the writer endpoint names (Consul in
// production).
type WriterReader interface {
	Writer(ctx context.Context, cluster string) ([]string, error)
}

// writerHealth says whether a load balancer may send writes to instance:
// only when the writer endpoint in Consul names it and this manager's last
// cycle, at most stale ago, found it the cluster's one writable primary
// (a fenced old primary is read-only; two writable ones give none).
func writerHealth(st State, published []string, instance string, now time.Time, stale time.Duration) (bool, string) {
	if why, ok := fresh(st, now, stale); !ok {
		return false, why
	}
	if len(published) != 1 || published[0] != instance {
		return false, fmt.Sprintf("the writer endpoint names %v, not %s", published, instance)
	}
	w, err := st.Evidence.Snapshot.WritablePrimary()
	switch {
	case err != nil:
		return false, err.Error()
	case w != instance:
		return false, fmt.Sprintf("%s is not the writable primary (%s is)", instance, w)
	}
	return true, instance + " is the writer"
}

// readerHealth says whether a load balancer may send reads to instance:
// a reachable replica of the primary with both halves of replication
// running and at most maxLag seconds behind (0: any lag), as this
// manager's last cycle, at most stale ago, found it.
func readerHealth(st State, instance string, maxLag float64, now time.Time, stale time.Duration) (bool, string) {
	if why, ok := fresh(st, now, stale); !ok {
		return false, why
	}
	if !slices.Contains(st.Evidence.Snapshot.Readers(maxLag), instance) {
		return false, fmt.Sprintf("%s is no healthy replica of the primary within %g s of lag", instance, maxLag)
	}
	return true, instance + " is a healthy replica"
}

func fresh(st State, now time.Time, stale time.Duration) (string, bool) {
	if st.Cycles == 0 || now.Sub(st.UpdatedAt) > stale {
		return fmt.Sprintf("this manager has no probe cycle of %s newer than %v", st.Cluster, stale), false
	}
	return "", true
}

// healthStale is how old the last cycle may be for a health answer: a
// manager whose probes have stopped answers 503.
func (m *Monitor) healthStale() time.Duration {
	return max(3*time.Second, 4*(m.opts.Interval+m.opts.ProbeTimeout))
}

// serveHealth answers GET /health/{cluster}/{role}/{instance}: 200 when
// the instance may take that role's traffic, 503 otherwise, with one line
// saying why. No token: load balancers poll it.
func (m *Monitor) serveHealth(w http.ResponseWriter, r *http.Request) {
	cluster, role, instance := r.PathValue("cluster"), r.PathValue("role"), r.PathValue("instance")
	st, ok := m.State(cluster)
	if !ok {
		http.Error(w, "no such cluster: "+cluster, http.StatusNotFound)
		return
	}
	var healthy bool
	var why string
	now := time.Now()
	switch role {
	case "writer":
		if m.opts.Endpoints == nil {
			healthy, why = false, "this manager cannot read the writer endpoint (no Consul)"
			break
		}
		ctx, cancel := context.WithTimeout(r.Context(), m.opts.ProbeTimeout)
		published, err := m.opts.Endpoints.Writer(ctx, cluster)
		cancel()
		if err != nil {
			healthy, why = false, "read the writer endpoint: "+err.Error()
			break
		}
		healthy, why = writerHealth(st, published, instance, now, m.healthStale())
	case "reader":
		maxLag := m.opts.Policy.LagSeconds
		if q := r.URL.Query().Get("max_lag"); q != "" {
			v, err := strconv.ParseFloat(q, 64)
			if err != nil || v < 0 {
				http.Error(w, "max_lag: want seconds, got "+q, http.StatusBadRequest)
				return
			}
			maxLag = v
		}
		healthy, why = readerHealth(st, instance, maxLag, now, m.healthStale())
	default:
		http.Error(w, "role must be writer or reader, got "+role, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !healthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}
