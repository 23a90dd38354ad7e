package checksum

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Engine is a cluster's database family as a run sees it: the primary and
// its replicas, reached by the engine itself. A run calls it from one
// goroutine. An error from a method that names a replica (ErrReplica)
// loses that replica for the rest of the run; any other error ends the
// table.
type Engine interface {
	// Tables lists the tables to check (only those named, as
	// schema.table, when only is not empty) and those it cannot, with
	// why. An error ends the run.
	Tables(ctx context.Context, only []string) ([]Table, []Skipped, error)
	// Begin readies a table's check (MariaDB: clears its past results).
	Begin(ctx context.Context, t Table) error
	// Boundary is the key of the size-th row after lower (nil: from the
	// start), or nil when fewer rows remain. A table without a key is one
	// chunk: nil.
	Boundary(ctx context.Context, t Table, lower Key, size int) (Key, error)
	// Check checks one chunk (see CheckResult).
	Check(ctx context.Context, t Table, c Chunk) (CheckResult, error)
	// End finishes a table: MariaDB waits for each replica to apply the
	// table's chunks and compares.
	End(ctx context.Context, t Table, chunks []Chunk) ([]Difference, error)
	// Lag is the largest replica lag now.
	Lag(ctx context.Context) (time.Duration, error)
	// Replicas are the replicas still compared.
	Replicas() []string
}

// CheckResult is what Check found of one chunk.
type CheckResult struct {
	// Rows the chunk held on the primary.
	Rows int64
	// Differences found already (PostgreSQL; MariaDB finds them in End).
	Differences []Difference
	// Unstable: writes kept changing the chunk; nothing of it was compared.
	Unstable bool
	// Changing counts the rows (PostgreSQL) that writes changed while
	// they were compared: not compared this time, the rest of the chunk
	// was.
	Changing int64
}

// ReplicaError is an error of one replica: the run goes on without it.
type ReplicaError struct {
	Replica string
	Err     error
}

func (e *ReplicaError) Error() string { return e.Replica + ": " + e.Err.Error() }
func (e *ReplicaError) Unwrap() error { return e.Err }

// Options of a run.
type Options struct {
	Cluster, Engine, Primary string
	Tables                   []string // only these (schema.table); empty: every user table
	Sizing                   Sizing
	// MaxLag pauses the run while a replica lags more (0: never).
	MaxLag time.Duration
	// MaxPause bounds one pause for lag; past it the table is cut short.
	MaxPause time.Duration
	// Progress gets a line per chunk at most every ProgressEvery; nil:
	// none.
	Progress      io.Writer
	ProgressEvery time.Duration
	Now           func() time.Time
}

// DefaultOptions: half-second chunks, a pause while a replica lags more
// than 10 s (5 minutes at most), progress every 2 s.
func DefaultOptions() Options {
	return Options{Sizing: DefaultSizing(), MaxLag: 10 * time.Second, MaxPause: 5 * time.Minute, ProgressEvery: 2 * time.Second, Now: time.Now}
}

// Run checks the cluster's tables through e and reports. It returns an
// error only when nothing could be checked (the tables could not be
// listed, ctx ended); what goes wrong with one table or replica is in the
// report.
func Run(ctx context.Context, e Engine, o Options) (Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.Sizing.validate(); err != nil {
		return Report{}, err
	}
	r := Report{Cluster: o.Cluster, Engine: o.Engine, Primary: o.Primary, Replicas: e.Replicas(), Started: o.Now()}
	tables, skipped, err := e.Tables(ctx, o.Tables)
	if err != nil {
		return r, err
	}
	r.Skipped = skipped
	p := progress{w: o.Progress, every: o.ProgressEvery, now: o.Now}
	for _, t := range tables {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		tr := checkTable(ctx, e, o, t, &r, &p)
		r.Tables = append(r.Tables, tr)
	}
	r.Finished = o.Now()
	return r, ctx.Err()
}

// checkTable checks one table, chunk by chunk.
func checkTable(ctx context.Context, e Engine, o Options, t Table, r *Report, p *progress) (tr TableReport) {
	tr = TableReport{Table: t.String()}
	start := o.Now()
	defer func() { tr.Seconds = o.Now().Sub(start).Seconds() }()
	fail := func(what string, err error) TableReport {
		tr.Error = fmt.Sprintf("%s: %v", what, err)
		tr.Seconds = o.Now().Sub(start).Seconds()
		return tr
	}
	if err := e.Begin(ctx, t); err != nil {
		return fail("begin", err)
	}
	var chunks []Chunk
	var lower Key
	size := o.Sizing.First
	for n := 1; ; n++ {
		err := waitLag(ctx, e, o)
		for err != nil && lostReplica(r, err) {
			err = waitLag(ctx, e, o)
		}
		if err != nil {
			return fail("replica lag", err)
		}
		upper, err := e.Boundary(ctx, t, lower, size)
		if err != nil {
			return fail(fmt.Sprintf("chunk %d", n), err)
		}
		c := Chunk{N: n, Lower: lower, Upper: upper}
		began := o.Now()
		res, err := e.Check(ctx, t, c)
		for err != nil && lostReplica(r, err) {
			res, err = e.Check(ctx, t, c) // again, without the replica lost
		}
		rows, unstable := res.Rows, res.Unstable
		if err != nil {
			return fail(fmt.Sprintf("chunk %d (%s)", n, c.Range()), err)
		}
		took := o.Now().Sub(began)
		if unstable && len(t.Key) > 0 {
			// Writes kept changing the chunk: a smaller one, from the same
			// start, is less likely to be touched between two reads. It
			// ends at the smallest size.
			if smaller := max(o.Sizing.Min, min(size, int(rows))/8); smaller < size {
				size = smaller
				n--
				continue
			}
		}
		chunks = append(chunks, c)
		tr.Chunks, tr.Rows = n, tr.Rows+rows
		tr.Differences = append(tr.Differences, res.Differences...)
		tr.Changing += res.Changing
		if unstable {
			tr.Unstable = append(tr.Unstable, fmt.Sprintf("%d (%s)", n, c.Range()))
		}
		p.chunk(t, tr, start)
		size = o.Sizing.Next(size, rows, took)
		if upper == nil {
			break
		}
		lower = upper
	}
	diffs, err := e.End(ctx, t, chunks)
	for err != nil && lostReplica(r, err) {
		diffs, err = e.End(ctx, t, chunks)
	}
	if err != nil {
		return fail("compare", err)
	}
	tr.Differences = append(tr.Differences, diffs...)
	return tr
}

// lostReplica records a replica's error in the report and says whether
// err was one.
func lostReplica(r *Report, err error) bool {
	var re *ReplicaError
	if !errors.As(err, &re) {
		return false
	}
	r.Lost = append(r.Lost, ReplicaProblem{Replica: re.Replica, Reason: re.Err.Error()})
	return true
}

// waitLag waits while a replica lags more than MaxLag, up to MaxPause.
func waitLag(ctx context.Context, e Engine, o Options) error {
	if o.MaxLag <= 0 {
		return nil
	}
	deadline := o.Now().Add(o.MaxPause)
	for {
		lag, err := e.Lag(ctx)
		if err != nil {
			return err
		}
		if lag <= o.MaxLag {
			return nil
		}
		if o.Now().After(deadline) {
			return fmt.Errorf("a replica lagged %v, more than %v, for %v: stopped", lag, o.MaxLag, o.MaxPause)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// progress writes a line per table and chunk, at most every every.
type progress struct {
	w     io.Writer
	every time.Duration
	now   func() time.Time
	last  time.Time
}

func (p *progress) chunk(t Table, tr TableReport, start time.Time) {
	if p.w == nil || p.now().Sub(p.last) < p.every {
		return
	}
	p.last = p.now()
	elapsed := p.now().Sub(start).Seconds()
	rate := float64(tr.Rows) / max(elapsed, 1e-3)
	left := ""
	if t.Rows > tr.Rows && rate > 0 {
		left = fmt.Sprintf(", about %s left", (time.Duration(float64(t.Rows-tr.Rows)/rate) * time.Second).Round(time.Second))
	}
	fmt.Fprintf(p.w, "checksum %s: %d chunks, %d rows, %.0f rows/s%s\n", t, tr.Chunks, tr.Rows, rate, left)
}
