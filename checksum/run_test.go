package checksum

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeEngine is an in-memory Engine: tables of integer keys 1..n.
type fakeEngine struct {
	rows     map[string]int // table → rows
	replicas []string
	dropped  string // a table whose chunks fail after the first
	loseAt   int    // the chunk of the first table at which replica r2 is lost
	checks   []Chunk
	load     int // the primary's running sessions
}

func (f *fakeEngine) Tables(context.Context, []string) ([]Table, []Skipped, error) {
	var out []Table
	for _, name := range []string{"t1", "t2", "t3"} {
		out = append(out, Table{Schema: "s", Name: name, Key: []string{"id"}, Rows: int64(f.rows[name])})
	}
	return out, []Skipped{{Table: "s.nokey", Reason: "no key"}}, nil
}
func (f *fakeEngine) Begin(context.Context, Table) error { return nil }
func (f *fakeEngine) Boundary(_ context.Context, t Table, lower Key, size int) (Key, error) {
	from := 0
	if lower != nil {
		from, _ = strconv.Atoi(lower[0])
	}
	if t.Name == f.dropped && from > 0 {
		return nil, errors.New("table doesn't exist")
	}
	if from+size >= f.rows[t.Name] {
		return nil, nil
	}
	return Key{strconv.Itoa(from + size)}, nil
}
func (f *fakeEngine) Check(_ context.Context, t Table, c Chunk) (CheckResult, error) {
	if t.Name == "t1" && c.N == f.loseAt && slices.Contains(f.replicas, "r2") {
		f.replicas = []string{"r1"}
		return CheckResult{}, &ReplicaError{Replica: "r2", Err: errors.New("connection refused")}
	}
	f.checks = append(f.checks, c)
	lo, hi := 0, f.rows[t.Name]
	if c.Lower != nil {
		lo, _ = strconv.Atoi(c.Lower[0])
	}
	if c.Upper != nil {
		hi, _ = strconv.Atoi(c.Upper[0])
	}
	var diffs []Difference
	if t.Name == "t3" && lo < 7 && 7 <= hi {
		diffs = []Difference{{Chunk: c.N, Range: c.Range(), Replica: "r1"}}
	}
	return CheckResult{Rows: int64(hi - lo), Differences: diffs}, nil
}
func (f *fakeEngine) End(context.Context, Table, []Chunk) ([]Difference, error) { return nil, nil }
func (f *fakeEngine) Lag(context.Context) (time.Duration, error)                { return 0, nil }
func (f *fakeEngine) Load(context.Context) (int, error)                         { return f.load, nil }
func (f *fakeEngine) Replicas() []string                                        { return slices.Clone(f.replicas) }

func TestRun(t *testing.T) {
	e := &fakeEngine{rows: map[string]int{"t1": 25, "t2": 30, "t3": 12}, replicas: []string{"r1", "r2"}, dropped: "t2", loseAt: 2}
	o := DefaultOptions()
	o.Sizing = Sizing{Target: time.Second, First: 10, Min: 10, Max: 10} // 10 rows a chunk
	r, err := Run(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tables) != 3 {
		t.Fatalf("tables %+v", r.Tables)
	}
	t1, t2, t3 := r.Tables[0], r.Tables[1], r.Tables[2]
	if t1.Chunks != 3 || t1.Rows != 25 || t1.Error != "" {
		t.Errorf("t1: %+v, want 3 chunks covering its 25 rows", t1)
	}
	if t2.Error == "" || t2.Chunks != 1 {
		t.Errorf("t2, dropped after its first chunk: %+v", t2)
	}
	if len(t3.Differences) != 1 || t3.Differences[0].Chunk != 1 || t3.Differences[0].Range != "start .. 10]" {
		t.Errorf("t3: %+v, want chunk 1 to differ", t3)
	}
	if len(r.Lost) != 1 || r.Lost[0].Replica != "r2" || r.Complete() || r.Differences() != 1 {
		t.Errorf("lost %+v, complete %v, differences %d", r.Lost, r.Complete(), r.Differences())
	}
	if len(r.Skipped) != 1 {
		t.Errorf("skipped %+v", r.Skipped)
	}
	// Consecutive chunks share their bounds: no row falls between two.
	var prev Key
	for _, c := range e.checks[:3] {
		if !slices.Equal(c.Lower, prev) {
			t.Errorf("chunk %d starts after %v, the previous ended at %v", c.N, c.Lower, prev)
		}
		prev = c.Upper
	}
	if prev != nil {
		t.Errorf("t1's last chunk ends at %v, want the end of the table", prev)
	}
}

// unstableEngine reports every chunk of more than 50 rows as unstable.
type unstableEngine struct{ fakeEngine }

func (u *unstableEngine) Check(ctx context.Context, t Table, c Chunk) (CheckResult, error) {
	res, err := u.fakeEngine.Check(ctx, t, c)
	res.Unstable = res.Rows > 50
	return res, err
}

func TestRunShrinksUnstableChunks(t *testing.T) {
	e := &unstableEngine{fakeEngine{rows: map[string]int{"t1": 1000}, replicas: []string{"r1"}}}
	o := DefaultOptions()
	o.Sizing = Sizing{Target: time.Second, First: 800, Min: 10, Max: 800}
	r, err := Run(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	t1 := r.Tables[0]
	if len(t1.Unstable) != 0 || t1.Rows != 1000 || !r.Complete() {
		t.Errorf("t1 %+v: want every chunk compared once smaller", t1)
	}
	unstable := 0
	for _, c := range e.checks {
		if c.Lower == nil && c.Upper == nil {
			continue // t2 and t3, empty
		}
		lo, hi := 0, 1000
		if c.Lower != nil {
			lo, _ = strconv.Atoi(c.Lower[0])
		}
		if c.Upper != nil {
			hi, _ = strconv.Atoi(c.Upper[0])
		}
		if hi-lo > 800 {
			t.Errorf("chunk %v", c)
		}
		if hi-lo > 50 {
			unstable++
		}
	}
	// Once a chunk kept changing, the sizes grow back slowly: the run does
	// not keep trying chunks that change every time (it did, 7 times over
	// these 1000 rows, before sizes had a ceiling).
	if unstable > 3 {
		t.Errorf("%d chunks tried that kept changing, want at most 3: %v", unstable, e.checks)
	}
}

// cancellingEngine stops the run (its context) once it has checked n chunks.
type cancellingEngine struct {
	fakeEngine
	n      int
	cancel context.CancelFunc
}

func (c *cancellingEngine) Check(ctx context.Context, t Table, ch Chunk) (CheckResult, error) {
	res, err := c.fakeEngine.Check(ctx, t, ch)
	if len(c.checks) == c.n {
		c.cancel()
	}
	return res, err
}

func TestRunResumes(t *testing.T) {
	o := DefaultOptions()
	o.Cluster, o.Primary = "c", "p"
	o.Sizing = Sizing{Target: time.Second, First: 10, Min: 10, Max: 10}
	var last Checkpoint
	o.Save = func(c Checkpoint) error { last = c; return nil }

	ctx, cancel := context.WithCancel(context.Background())
	e := &cancellingEngine{fakeEngine: fakeEngine{rows: map[string]int{"t1": 25, "t2": 30, "t3": 12}, replicas: []string{"r1"}}, n: 5, cancel: cancel}
	if _, err := Run(ctx, e, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("the stopped run: %v", err)
	}
	// t1 (3 chunks) done, t2 at its second chunk.
	if len(last.Done) != 1 || last.Table != "s.t2" || len(last.Chunks) != 2 || last.Next() != "s.t2, chunk 3" {
		t.Fatalf("checkpoint %+v", last)
	}

	o.Resume = &last
	e2 := &fakeEngine{rows: e.rows, replicas: []string{"r1"}}
	r, err := Run(context.Background(), e2, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tables) != 3 || r.Tables[1].Rows != 30 || r.Tables[1].Chunks != 3 || r.Tables[2].Rows != 12 {
		t.Fatalf("resumed report %+v", r.Tables)
	}
	if len(e2.checks) != 3 || e2.checks[0].N != 3 || e2.checks[0].Lower[0] != "20" {
		t.Errorf("the resumed run checked %+v: want t2 from chunk 3, then t3", e2.checks)
	}
	// A checkpoint of another primary is not resumed.
	o.Primary = "p2"
	e3 := &fakeEngine{rows: e.rows, replicas: []string{"r1"}}
	if _, err := Run(context.Background(), e3, o); err != nil || len(e3.checks) != 3+3+2 {
		t.Errorf("after a failover the run resumed: %d chunks checked, %v", len(e3.checks), err)
	}
}

// busyEngine's primary is busy for its first busyReads reads of the load.
type busyEngine struct {
	fakeEngine
	busyReads int
	reads     int
}

func (b *busyEngine) Load(context.Context) (int, error) {
	b.reads++
	if b.reads <= b.busyReads {
		return 40, nil
	}
	return 3, nil
}

func TestRunPausesWhileThePrimaryIsBusy(t *testing.T) {
	var progress strings.Builder
	e := &busyEngine{fakeEngine: fakeEngine{rows: map[string]int{"t1": 20}, replicas: []string{"r1"}}, busyReads: 2}
	o := DefaultOptions()
	o.Sizing = Sizing{Target: time.Second, First: 10, Min: 10, Max: 10}
	o.Progress, o.ProgressEvery = &progress, time.Hour
	r, err := Run(context.Background(), e, o)
	if err != nil || !r.Complete() || r.Tables[0].Rows != 20 {
		t.Fatalf("after a busy spell: %+v, %v", r, err)
	}
	if !strings.Contains(progress.String(), "checksum paused: 40 sessions run statements on the primary, more than 25") {
		t.Errorf("the pause is not said: %q", progress.String())
	}
	// Busy for longer than MaxPause: the table is cut short, and why.
	now := time.Unix(0, 0)
	e = &busyEngine{fakeEngine: fakeEngine{rows: map[string]int{"t1": 20}, replicas: []string{"r1"}}, busyReads: 1 << 30}
	o.Progress, o.MaxPause = nil, time.Second
	o.Now = func() time.Time { now = now.Add(300 * time.Millisecond); return now }
	r, err = Run(context.Background(), e, o)
	if err != nil || r.Complete() || !strings.Contains(r.Tables[0].Error, "more than 25 for 1s: stopped") {
		t.Errorf("busy for ever: %+v, %v", r.Tables, err)
	}
}
