package checksum

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// Load is the primary's load now: the sessions running a statement,
	// the run's own left out (MariaDB Threads_running less one,
	// PostgreSQL's active client backends).
	Load(ctx context.Context) (int, error)
	// Replicas are the replicas still compared.
	Replicas() []string
}

// RowNamer is an engine that names the rows of differing chunks only when
// asked to (Options.Rows), as it costs a second pass over them (MariaDB;
// PostgreSQL names them as it compares).
type RowNamer interface {
	// NameRows returns diffs, each with the keys of the rows that differ
	// on its replica.
	NameRows(ctx context.Context, t Table, diffs []Difference) ([]Difference, error)
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
	// Rows names the rows of the differing chunks (RowNamer).
	Rows bool
	// MaxLag pauses the run while a replica lags more (0: never).
	MaxLag time.Duration
	// MaxLoad pauses the run while more sessions than this run a
	// statement on the primary (Engine.Load; 0: never).
	MaxLoad int
	// MaxPause bounds one pause for lag or load; past it the table is
	// cut short.
	MaxPause time.Duration
	// Progress gets a line per chunk at most every ProgressEvery; nil:
	// none.
	Progress      io.Writer
	ProgressEvery time.Duration
	Now           func() time.Time
	// Resume continues the run a checkpoint describes, when it is of the
	// same primary and tables (Checkpoint.Fits); nil: from the start.
	Resume *Checkpoint
	// Save, when set, is given the checkpoint after each chunk and table;
	// an error stops the run.
	Save func(Checkpoint) error
}

// Checkpoint is where a run stands: the tables done and the chunks of the
// one in progress. A run stopped midway (interrupted, the primary gone)
// continues from it: the chunks checked are not checked again.
type Checkpoint struct {
	Cluster string        `json:"cluster"`
	Primary string        `json:"primary"`
	Tables  []string      `json:"tables,omitempty"` // the run's filter
	Started time.Time     `json:"started"`
	Done    []TableReport `json:"done,omitempty"`
	// Table is the table in progress, Chunks its chunks checked, Partial
	// its report so far.
	Table   string           `json:"table,omitempty"`
	Chunks  []Chunk          `json:"chunks,omitempty"`
	Partial TableReport      `json:"partial"`
	Lost    []ReplicaProblem `json:"lost,omitempty"`
}

// Fits says whether the checkpoint can be resumed by a run of o. Pure.
func (c Checkpoint) Fits(o Options) bool {
	return c.Cluster == o.Cluster && c.Primary == o.Primary && slices.Equal(c.Tables, o.Tables)
}

// Next describes where a resumed run starts.
func (c Checkpoint) Next() string {
	if c.Table == "" {
		return fmt.Sprintf("after %d table(s)", len(c.Done))
	}
	return fmt.Sprintf("%s, chunk %d", c.Table, len(c.Chunks)+1)
}

// DefaultOptions: half-second chunks, a pause while a replica lags more
// than 10 s or more than 25 sessions run statements on the primary
// (pt-table-checksum's Threads_running=25), 5 minutes at most, progress
// every 2 s.
func DefaultOptions() Options {
	return Options{Sizing: DefaultSizing(), MaxLag: 10 * time.Second, MaxLoad: 25, MaxPause: 5 * time.Minute, ProgressEvery: 2 * time.Second, Now: time.Now}
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
	cp := Checkpoint{Cluster: o.Cluster, Primary: o.Primary, Tables: o.Tables, Started: r.Started}
	if o.Resume != nil && o.Resume.Fits(o) {
		cp = *o.Resume
		r.Started, r.Tables, r.Lost = cp.Started, slices.Clone(cp.Done), slices.Clone(cp.Lost)
	}
	tables, skipped, err := e.Tables(ctx, o.Tables)
	if err != nil {
		return r, err
	}
	r.Skipped = skipped
	p := progress{w: o.Progress, every: o.ProgressEvery, now: o.Now}
	save := func(cp Checkpoint) error {
		if o.Save == nil {
			return nil
		}
		cp.Done, cp.Lost = r.Tables, r.Lost
		return o.Save(cp)
	}
	for _, t := range tables {
		if slices.ContainsFunc(r.Tables, func(tr TableReport) bool { return tr.Table == t.String() }) {
			continue // done before the run was resumed
		}
		if err := ctx.Err(); err != nil {
			return r, err
		}
		var from *Checkpoint
		if cp.Table == t.String() {
			from = &cp
		}
		tr, err := checkTable(ctx, e, o, t, &r, &p, from, save)
		if err != nil {
			return r, err
		}
		r.Tables = append(r.Tables, tr)
		if err := save(Checkpoint{Cluster: cp.Cluster, Primary: cp.Primary, Tables: cp.Tables, Started: r.Started}); err != nil {
			return r, err
		}
	}
	r.Finished = o.Now()
	return r, ctx.Err()
}

// checkTable checks one table, chunk by chunk.
// checkTable checks one table, chunk by chunk, from the checkpoint from
// when it is the table's (nil: from its start). What goes wrong with the
// table is in its report; an error is ctx's, or one saving a checkpoint:
// the run stops there.
func checkTable(ctx context.Context, e Engine, o Options, t Table, r *Report, p *progress, from *Checkpoint, save func(Checkpoint) error) (tr TableReport, err error) {
	tr = TableReport{Table: t.String()}
	start := o.Now()
	var chunks []Chunk
	var lower Key
	if from != nil {
		tr, chunks = from.Partial, slices.Clone(from.Chunks)
		start = start.Add(-time.Duration(tr.Seconds * float64(time.Second)))
	}
	defer func() { tr.Seconds = o.Now().Sub(start).Seconds() }()
	fail := func(what string, err error) (TableReport, error) {
		if ctx.Err() != nil {
			return tr, ctx.Err() // stopped, not failed: the checkpoint stands
		}
		tr.Error = fmt.Sprintf("%s: %v", what, err)
		return tr, nil
	}
	if len(chunks) == 0 {
		if err := e.Begin(ctx, t); err != nil {
			return fail("begin", err)
		}
	} else {
		lower = chunks[len(chunks)-1].Upper
	}
	// ceiling is lowered by a chunk that kept changing and raised again,
	// a sixteenth at a time, by chunks that held still: under writes spread
	// over the table the run keeps to chunks small enough to compare,
	// instead of growing back into ones that change every time.
	size, ceiling := o.Sizing.First, o.Sizing.Max
	for n := len(chunks) + 1; len(chunks) == 0 || chunks[len(chunks)-1].Upper != nil; n++ {
		if err := ctx.Err(); err != nil {
			return tr, err // stopped: the checkpoint of the last chunk stands
		}
		err := waitLag(ctx, e, o)
		for err != nil && lostReplica(r, err) {
			err = waitLag(ctx, e, o)
		}
		if err != nil {
			return fail("pause", err)
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
				size, ceiling = smaller, smaller
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
		if !unstable && res.Changing == 0 {
			ceiling = min(o.Sizing.Max, ceiling+max(1, ceiling/16))
		}
		size = min(ceiling, o.Sizing.Next(size, rows, took))
		tr.Seconds = o.Now().Sub(start).Seconds()
		if err := save(Checkpoint{Cluster: o.Cluster, Primary: o.Primary, Tables: o.Tables, Started: r.Started, Table: t.String(),
			Chunks: chunks, Partial: tr}); err != nil {
			return tr, fmt.Errorf("save the checkpoint: %w", err)
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
	if n, ok := e.(RowNamer); ok && o.Rows && len(diffs) > 0 {
		named, err := n.NameRows(ctx, t, diffs)
		if err != nil {
			tr.Differences = append(tr.Differences, diffs...)
			return fail("name the differing rows", err)
		}
		diffs = named
	}
	tr.Differences = append(tr.Differences, diffs...)
	return tr, nil
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

// waitLag waits while a replica lags more than MaxLag, or the primary
// runs more than MaxLoad sessions, up to MaxPause. A pause is said on
// Progress when it starts.
func waitLag(ctx context.Context, e Engine, o Options) error {
	if o.MaxLag <= 0 && o.MaxLoad <= 0 {
		return nil
	}
	deadline := o.Now().Add(o.MaxPause)
	said := false
	for {
		busy, err := overLimits(ctx, e, o)
		if err != nil || busy == "" {
			return err
		}
		if o.Now().After(deadline) {
			return fmt.Errorf("%s for %v: stopped", busy, o.MaxPause)
		}
		if !said && o.Progress != nil {
			fmt.Fprintf(o.Progress, "checksum paused: %s\n", busy)
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// overLimits says which limit the cluster is over now ("": none).
func overLimits(ctx context.Context, e Engine, o Options) (string, error) {
	if o.MaxLag > 0 {
		lag, err := e.Lag(ctx)
		if err != nil {
			return "", err
		}
		if lag > o.MaxLag {
			return fmt.Sprintf("a replica lags %v, more than %v", lag, o.MaxLag), nil
		}
	}
	if o.MaxLoad > 0 {
		load, err := e.Load(ctx)
		if err != nil {
			return "", fmt.Errorf("the primary's load: %w", err)
		}
		if load > o.MaxLoad {
			return fmt.Sprintf("%d sessions run statements on the primary, more than %d", load, o.MaxLoad), nil
		}
	}
	return "", nil
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
