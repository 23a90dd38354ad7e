package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLab stands for the drill's own interfaces (Engine, Faults, Cluster)
// in unit tests of the drill's orchestration: three in-memory servers, a
// primary that a "kill" makes vanish, and a failover after a delay. No
// database is imitated beyond a set of rows.
type fakeLab struct {
	mu       sync.Mutex
	rows     map[string]map[int64]int
	dead     map[string]bool
	hung     map[string]bool
	primary  string
	writer   string
	healthy  bool
	failover time.Duration // after a kill; <0: never
	killed   string
	injected []string // every fault name put in place
}

func newFakeLab(failover time.Duration) *fakeLab {
	l := &fakeLab{rows: map[string]map[int64]int{}, dead: map[string]bool{}, hung: map[string]bool{},
		primary: "a", writer: "a", healthy: true, failover: failover}
	for _, a := range []string{"a", "b", "c"} {
		l.rows[a] = map[int64]int{}
	}
	return l
}

func (l *fakeLab) Prepare(_ context.Context, addr string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last int64
	for id := range l.rows[addr] {
		last = max(last, id)
	}
	return last, nil
}

func (l *fakeLab) Dial(_ context.Context, addr string) (Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead[addr] {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	return &fakeConn{l: l, addr: addr}, nil
}

func (l *fakeLab) Contents(_ context.Context, addr string, after int64) (map[int64]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int64]int{}
	for id, w := range l.rows[addr] {
		if id > after {
			out[id] = w
		}
	}
	return out, nil
}

type fakeConn struct {
	l    *fakeLab
	addr string
}

func (c *fakeConn) Server() string { return "id-" + c.addr }
func (c *fakeConn) Close() error   { return nil }

func (c *fakeConn) Insert(ctx context.Context, id int64, writer int) error {
	l := c.l
	l.mu.Lock()
	if l.hung[c.addr] {
		l.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	defer l.mu.Unlock()
	switch {
	case l.dead[c.addr]:
		return io.ErrUnexpectedEOF
	case c.addr != l.primary:
		return fmt.Errorf("%w: read-only", ErrRefused)
	}
	for a := range l.rows {
		if !l.dead[a] {
			l.rows[a][id] = writer
		}
	}
	return nil
}

func (l *fakeLab) Inject(_ context.Context, f Fault) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.injected = append(l.injected, f.Name)
	if f.Name != "kill" {
		return nil // a fault that changes nothing here
	}
	addr := strings.TrimPrefix(f.Host, "host-")
	l.dead[addr], l.healthy, l.killed = true, false, addr
	if l.failover >= 0 {
		time.AfterFunc(l.failover, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, a := range []string{"a", "b", "c"} {
				if !l.dead[a] {
					l.primary, l.writer = a, a
					return
				}
			}
		})
	}
	return nil
}

// Heal brings the killed server back as a replica of the primary, its
// rows rewound to the primary's.
func (l *fakeLab) Heal(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.killed != "" {
		l.dead[l.killed] = false
		l.rows[l.killed] = maps.Clone(l.rows[l.primary])
		l.killed = ""
	}
	l.healthy = true
	return nil
}

func (l *fakeLab) HostOf(addr string) (string, error) { return "host-" + addr, nil }

func (l *fakeLab) Healthy(context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.healthy {
		return "", errors.New("not healthy")
	}
	return l.primary, nil
}

func (l *fakeLab) Writer(context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writer, nil
}

func (l *fakeLab) Ack(context.Context) error { return nil }
func (l *fakeLab) Instances() []string       { return []string{"a", "b", "c"} }

func (l *fakeLab) State(context.Context, string) (AfterHeal, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return AfterHeal{Whole: l.healthy, Primary: l.primary, Writable: []string{l.primary}}, nil
}

func fastOptions() Options {
	o := DefaultOptions()
	o.Cluster, o.Engine, o.Mode, o.Lab = "fake", "mariadb", "async", LabLoopback
	o.WarmUp, o.Observe, o.CatchUp = 50*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	o.FailoverTimeout, o.WholeTimeout, o.ReadTimeout, o.LedgerWait = 2*time.Second, 2*time.Second, 2*time.Second, 50*time.Millisecond
	o.Writers.Writers, o.Writers.RetryPause, o.Writers.Pace = 4, 5*time.Millisecond, time.Millisecond
	o.Flap = FlapOptions{On: 10 * time.Millisecond, Off: 10 * time.Millisecond, Cycles: 3}
	return o
}

func TestDrillKillWithFailover(t *testing.T) {
	l := newFakeLab(30 * time.Millisecond)
	o := fastOptions()
	o.Runs = 2
	s, err := Drill(context.Background(), o, l, l, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Runs) != 2 || s.Failed != 0 || s.Failovers != 2 {
		t.Fatalf("summary %+v", s)
	}
	for _, r := range s.Runs {
		if r.Error != "" || !r.Recovered || r.NewPrimary == "" || r.NewPrimary == r.OldPrimary || r.LostRows != 0 || !r.LostChecked ||
			r.AckedRows == 0 || r.Writers != 4 || r.Fault.Host != "host-"+r.OldPrimary || r.FalseFailover || r.TwoWriters.Happened() {
			t.Errorf("run %d: %s", r.N, r.Line())
		}
		if len(r.Misattributed) != 0 || len(r.WrongWriter) != 0 {
			t.Errorf("run %d: misattributed %v wrong writer %v", r.N, r.Misattributed, r.WrongWriter)
		}
	}
	// The second run numbers on from the first.
	if first, second := s.Runs[0], s.Runs[1]; second.OldPrimary != first.NewPrimary {
		t.Errorf("second run's old primary %s, want the first's new %s", second.OldPrimary, first.NewPrimary)
	}
}

func TestDrillNoFailoverIsAFailedRunKept(t *testing.T) {
	l := newFakeLab(-1)
	o := fastOptions()
	o.Runs, o.FailoverTimeout = 2, 200*time.Millisecond
	s, err := Drill(context.Background(), o, l, l, l)
	if err != nil {
		t.Fatal(err)
	}
	// The heal brings the old primary back, the cluster is whole: both
	// runs are made, both failed, both shown.
	if len(s.Runs) != 2 || s.Failed != 2 || s.Pass || s.Failovers != 0 {
		t.Fatalf("summary: %d runs, %d failed, pass %v", len(s.Runs), s.Failed, s.Pass)
	}
	for _, r := range s.Runs {
		if r.Error == "" || r.NewPrimary != "" || !r.Recovered || r.LostRows != 0 {
			t.Errorf("run %d: %s", r.N, r.Line())
		}
	}
}

func TestDrillFaultThatMustNotFailOver(t *testing.T) {
	for _, name := range []string{"manager-cut", "flap"} {
		t.Run(name, func(t *testing.T) {
			l := newFakeLab(-1)
			o := fastOptions()
			o.Fault = Fault{Name: name}
			s, err := Drill(context.Background(), o, l, l, l)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Runs) != 1 || !s.Pass {
				t.Fatalf("summary %+v", s)
			}
			if r := s.Runs[0]; r.ExpectFailover || r.FalseFailover || r.NewPrimary != "" || r.Error != "" {
				t.Errorf("%s", r.Line())
			}
			// The lab knows no "flap": a flap is isolations in cycles.
			want := name
			if name == "flap" {
				want = FlapFault
			}
			for _, got := range l.injected {
				if got != want {
					t.Errorf("injected %q, want only %q", got, want)
				}
			}
		})
	}
}

func TestDrillBrokenClusterStops(t *testing.T) {
	l := newFakeLab(-1)
	l.healthy = false
	o := fastOptions()
	o.Runs, o.WholeTimeout = 3, 100*time.Millisecond
	s, _ := Drill(context.Background(), o, l, l, l)
	if len(s.Runs) != 1 || s.NotRun != 2 || s.Failed != 1 || s.Runs[0].Error == "" {
		t.Fatalf("summary: %d runs, %d not run, %d failed", len(s.Runs), s.NotRun, s.Failed)
	}
}

func TestBackoff(t *testing.T) {
	const base, top = 20 * time.Millisecond, 500 * time.Millisecond
	for _, tc := range []struct {
		n        int
		jitter   float64
		min, max time.Duration
	}{
		{0, 0, 10 * time.Millisecond, 10 * time.Millisecond},
		{0, 0.999, 10 * time.Millisecond, 20 * time.Millisecond},
		{1, 0, 20 * time.Millisecond, 20 * time.Millisecond},
		{3, 0.5, 80 * time.Millisecond, 160 * time.Millisecond},
		{5, 0, 250 * time.Millisecond, 250 * time.Millisecond}, // 640 ms capped at 500
		{200, 0.999, 250 * time.Millisecond, 500 * time.Millisecond},
	} {
		if got := backoff(base, top, tc.n, tc.jitter); got < tc.min || got > tc.max {
			t.Errorf("backoff after %d failures, jitter %v: %v, want %v..%v", tc.n, tc.jitter, got, tc.min, tc.max)
		}
	}
}

func TestWritersRecordEveryWrite(t *testing.T) {
	l := newFakeLab(-1)
	o := fastOptions().Writers
	o.WriteTimeout = 50 * time.Millisecond
	ws := StartWriters(context.Background(), o, l, l.Writer, 100)
	time.Sleep(50 * time.Millisecond)
	l.mu.Lock()
	l.hung["a"] = true // every write now meets its deadline
	l.mu.Unlock()
	time.Sleep(150 * time.Millisecond)
	history, last := ws.Stop()
	ids := map[int64]bool{}
	var acked, unknown int
	for _, w := range history {
		if ids[w.ID] || w.ID <= 100 || w.ID > last {
			t.Fatalf("id %d twice or out of range (last %d)", w.ID, last)
		}
		ids[w.ID] = true
		switch w.Outcome {
		case Acked:
			acked++
			if got, ok := l.rows["a"][w.ID]; !ok || got != w.Writer {
				t.Errorf("acknowledged %d not on the server with writer %d", w.ID, w.Writer)
			}
		case Unknown:
			unknown++
			if w.Err == "" {
				t.Errorf("unknown %d without its error", w.ID)
			}
		}
		if w.Addr != "a" || w.Server != "id-a" || w.Done.Before(w.Sent) {
			t.Errorf("write %+v", w)
		}
	}
	if acked == 0 || unknown == 0 {
		t.Errorf("%d acknowledged, %d unknown; want both", acked, unknown)
	}
	writers := map[int]bool{}
	for _, w := range history {
		writers[w.Writer] = true
	}
	if got := slices.Sorted(maps.Keys(writers)); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Errorf("writers %v, want 0..3", got)
	}
}

// electingCluster refuses the first writes, as Consul does while its
// servers elect a leader after a split heals.
type electingCluster struct {
	Cluster
	refusals int
	asked    int
}

func (c *electingCluster) Ack(context.Context) error {
	c.asked++
	if c.asked <= c.refusals {
		return errors.New("Unexpected response code: 500 (No cluster leader)")
	}
	return nil
}

// Lifting the block waits out a short Consul election, and gives up on
// one that lasts.
func TestAckWaitsOutAnElection(t *testing.T) {
	c := &electingCluster{refusals: 2}
	if err := ack(context.Background(), c); err != nil || c.asked != 3 {
		t.Fatalf("ack: %v after %d asks, want success at the third", err, c.asked)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c = &electingCluster{refusals: 1 << 30}
	if err := ack(ctx, c); err == nil || c.asked != 1 {
		t.Fatalf("ack with an ended context: %v after %d asks, want the error at once", err, c.asked)
	}
}
