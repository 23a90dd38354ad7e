package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/alert"
	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
)

// fakePeers is an in-memory Peers: it records what the monitor publishes
// and answers with fixed views (or an error).
type fakePeers struct {
	mu        sync.Mutex
	published []checks.PeerView
	views     []checks.PeerView
	err       error
	asked     []string // self of each Peers call
}

func (f *fakePeers) PublishObservation(_ context.Context, _ string, v checks.PeerView) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, v)
	return nil
}

func (f *fakePeers) Peers(_ context.Context, _, self string) ([]checks.PeerView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, self)
	return f.views, f.err
}

// closedAddr is a loopback address nothing listens on: a probe of it is
// refused at once. (No database is faked: the monitor's real prober runs.)
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func unreachableCluster(t *testing.T) Cluster {
	p := mysql.NewProber(topology.MariaDB, "dbha", "unused")
	t.Cleanup(func() { p.Close() })
	return Cluster{Config: config.Cluster{Name: "c", Engine: topology.MariaDB, Instances: []string{closedAddr(t)}}, Prober: p}
}

func TestMonitorWiresPeers(t *testing.T) {
	peer := checks.PeerView{Manager: "b", At: time.Now(), Primary: "10.0.0.1:3306", Reaches: true}
	fp := &fakePeers{views: []checks.PeerView{peer}}
	m := New(Options{Manager: "a", Interval: 50 * time.Millisecond, ProbeTimeout: time.Second,
		Policy: checks.DefaultPolicy(), Peers: fp, Clusters: []Cluster{unreachableCluster(t)}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	m.Cycle(ctx)
	st, _ := m.State("c")
	if len(st.Evidence.Peers) != 1 || st.Evidence.Peers[0].Manager != "b" {
		t.Errorf("evidence peers = %+v, want b's view", st.Evidence.Peers)
	}
	fp.mu.Lock()
	if len(fp.published) != 0 || len(fp.asked) != 1 || fp.asked[0] != "a" {
		t.Errorf("before any cycle: published %+v, asked as %v; want nothing published, asked as a", fp.published, fp.asked)
	}
	fp.mu.Unlock()

	m.Cycle(ctx)
	fp.mu.Lock()
	if len(fp.published) != 1 || fp.published[0].Manager != "a" || fp.published[0].Reaches || !fp.published[0].At.Equal(st.UpdatedAt) {
		t.Errorf("published %+v, want a's view of cycle 1 (at %v, not reaching)", fp.published, st.UpdatedAt)
	}
	fp.mu.Unlock()

	// A Consul that fails leaves the cycle going, on the last peers read.
	fp.mu.Lock()
	fp.err, fp.views = errors.New("consul down"), nil
	fp.mu.Unlock()
	m.Cycle(ctx)
	if st, _ := m.State("c"); st.Cycles != 3 || len(st.Evidence.Peers) != 1 {
		t.Errorf("after a failed peer read: cycles %d, peers %+v; want 3 cycles and the last peers", st.Cycles, st.Evidence.Peers)
	}
}

func TestHandlerWithoutTokenRefusesTheAPI(t *testing.T) {
	h := Handler(New(Options{}), "")
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/api/v1/clusters": http.StatusUnauthorized, "/metrics": http.StatusUnauthorized} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer ")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("GET %s with an empty token configured: %d, want %d", path, rec.Code, want)
		}
	}
}

type fakeNotifier struct {
	mu     sync.Mutex
	events []alert.Event
}

func (f *fakeNotifier) Notify(e alert.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

// A finding that appears is notified firing at its configured level, once
// however many cycles it lasts, and resolved, with its start, when it
// clears.
func TestMonitorNotifiesFindings(t *testing.T) {
	ok, failed := true, false
	view := &checks.BackupsView{Done: []checks.BackupView{{ID: "b1", Verified: &failed, Detail: "sha256 mismatch"}}}
	var mu sync.Mutex
	cl := unreachableCluster(t)
	cl.Backups = func() *checks.BackupsView { mu.Lock(); defer mu.Unlock(); return view }
	fn := &fakeNotifier{}
	m := New(Options{Manager: "a", Interval: 50 * time.Millisecond, ProbeTimeout: time.Second, Policy: checks.DefaultPolicy(),
		Clusters: []Cluster{cl}, Alerts: fn, Levels: map[checks.Code]checks.Severity{checks.BackupVerifyFailed: checks.Warning}})
	ctx := t.Context()
	m.Cycle(ctx)
	m.Cycle(ctx)
	mu.Lock()
	view = &checks.BackupsView{Done: []checks.BackupView{{ID: "b1", Verified: &ok}}}
	mu.Unlock()
	m.Cycle(ctx)
	var got []alert.Event
	for _, e := range fn.events {
		if e.Code == checks.BackupVerifyFailed {
			got = append(got, e)
		}
	}
	if len(got) != 2 || got[0].Status != alert.Firing || got[1].Status != alert.Resolved {
		t.Fatalf("notified %+v, want firing then resolved", got)
	}
	if got[0].Level != checks.Warning || got[0].Cluster != "c" || got[0].Manager != "a" {
		t.Errorf("firing event %+v: want level warning (configured), cluster c, manager a", got[0])
	}
	if !got[1].StartsAt.Equal(got[0].StartsAt) || !got[1].EndsAt.After(got[1].StartsAt) {
		t.Errorf("resolved event %+v: want the firing one's start and a later end", got[1])
	}
}

// The load balancers' checks: the writer only when Consul names it and the
// last cycle found it the one writable primary; a reader only when it is a
// healthy replica within the lag asked; nothing from a stale cycle.
func TestHealthChecks(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	lag := func(s float64) *topology.Lag { return &topology.Lag{Seconds: &s} }
	follows := &topology.Replication{Source: "p:1", IORunning: true, SQLRunning: true}
	st := State{Cluster: "c", Cycles: 5, UpdatedAt: now.Add(-time.Second), Evidence: checks.Evidence{Snapshot: topology.Snapshot{
		Cluster: "c", Primary: "p:1", Instances: []topology.Instance{
			{Addr: "p:1", Reachable: true, Role: topology.RolePrimary},
			{Addr: "r:2", Reachable: true, Role: topology.RoleReplica, Replication: follows, Lag: lag(2)},
			{Addr: "r:3", Reachable: true, Role: topology.RoleReplica, Replication: follows, Lag: lag(30)},
		}}}}
	cases := []struct {
		name      string
		st        State
		published []string
		role      string
		instance  string
		maxLag    float64
		want      bool
	}{
		{"the writer", st, []string{"p:1"}, "writer", "p:1", 0, true},
		{"a replica as writer", st, []string{"p:1"}, "writer", "r:2", 0, false},
		{"Consul names another", st, []string{"r:2"}, "writer", "p:1", 0, false},
		{"Consul names none", st, nil, "writer", "p:1", 0, false},
		{"a stale cycle", State{Cluster: "c", Cycles: 5, UpdatedAt: now.Add(-time.Minute), Evidence: st.Evidence}, []string{"p:1"}, "writer", "p:1", 0, false},
		{"a replica within lag", st, nil, "reader", "r:2", 10, true},
		{"a replica past lag", st, nil, "reader", "r:3", 10, false},
		{"any lag", st, nil, "reader", "r:3", 0, true},
		{"the primary as reader", st, nil, "reader", "p:1", 0, false},
	}
	for _, c := range cases {
		var ok bool
		var why string
		if c.role == "writer" {
			ok, why = writerHealth(c.st, c.published, c.instance, now, 3*time.Second)
		} else {
			ok, why = readerHealth(c.st, c.instance, c.maxLag, now, 3*time.Second)
		}
		if ok != c.want || why == "" {
			t.Errorf("%s: %v (%s), want %v", c.name, ok, why, c.want)
		}
	}
	// Served without a token, unlike the API.
	m := New(Options{Interval: time.Second, ProbeTimeout: time.Second})
	rec := httptest.NewRecorder()
	Handler(m, "secret").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/c/writer/p:1", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("health of an unknown cluster without a token: %d, want 404 (not 401)", rec.Code)
	}
	rec = httptest.NewRecorder()
	Handler(m, "secret").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/../api/v1/clusters", nil))
	if rec.Code == http.StatusOK {
		t.Errorf("a /health/ path that leaves /health/ was served without a token")
	}
}
