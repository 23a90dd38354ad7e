package drill

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Writer writes numbered rows to one instance at a time. Prepare creates
// the drill's table when missing and returns the highest number in it, so a
// drill numbers on from an earlier one. Write connects as needed and must
// return within ctx; an error means the row may not be there. Missing says
// which of seqs an instance lacks.
type Writer interface {
	Prepare(ctx context.Context, addr string) (int64, error)
	Write(ctx context.Context, addr string, seq int64) error
	Missing(ctx context.Context, addr string, seqs []int64) ([]int64, error)
	Close() error
}

// Breaker crashes an instance and starts it again.
type Breaker interface {
	Kill(ctx context.Context, addr string) error
	Restart(ctx context.Context, addr string) error
}

// Cluster is what the drill asks about the cluster under test.
type Cluster interface {
	// Healthy returns the primary once every instance is up and replicates
	// from it, with no problem reported; an error until then.
	Healthy(ctx context.Context) (string, error)
	// Writer resolves the writer endpoint as a client does.
	Writer(ctx context.Context) (string, error)
	// Ack lifts the anti-flap block a recovery left.
	Ack(ctx context.Context) error
	// Rewound returns what was saved and undone on old, the old primary of
	// the latest recovery, when it returned holding writes nobody else had
	// received: MariaDB transactions, PostgreSQL bytes of WAL (zero when
	// none).
	Rewound(ctx context.Context, old string) (transactions int, walBytes int64, err error)
}

// Options bound a drill.
type Options struct {
	Runs int
	// WarmUp is how long the client writes before the kill, and after the
	// first write on the new primary.
	WarmUp time.Duration
	// Timeout bounds one run: recovery, measuring and the return of the old
	// primary.
	Timeout time.Duration
	// Targets: a run passes with an RTO under TargetMax and no row lost;
	// the drill passes when the median is under TargetMedian too.
	TargetMedian, TargetMax time.Duration
	Log                     io.Writer // progress lines; may be nil
}

// Run is one kill and what it cost.
type Run struct {
	N          int     `json:"n"`
	OldPrimary string  `json:"old_primary"`
	NewPrimary string  `json:"new_primary"`
	RTOSeconds float64 `json:"rto_seconds"`
	AckedRows  int     `json:"acked_rows"`
	LostRows   int     `json:"lost_rows"`
	// Lost are the numbers of the acknowledged rows the new primary lacks.
	Lost []int64 `json:"lost,omitempty"`
	// RejoinSeconds is how long after the old primary was started again
	// the cluster was whole (every instance following the new primary);
	// Rewound counts the transactions undone on it to get there.
	RejoinSeconds float64 `json:"rejoin_seconds"`
	Rewound       int     `json:"rewound_transactions"`
	RewoundBytes  int64   `json:"rewound_wal_bytes,omitempty"`
	Pass          bool    `json:"pass"`
	Error         string  `json:"error,omitempty"`
}

// Summary is the whole drill.
type Summary struct {
	Runs            []Run   `json:"runs"`
	MedianRTO       float64 `json:"median_rto_seconds"`
	MaxRTO          float64 `json:"max_rto_seconds"`
	LostRows        int     `json:"lost_rows"`
	TargetMedianRTO float64 `json:"target_median_rto_seconds"`
	TargetMaxRTO    float64 `json:"target_max_rto_seconds"`
	Pass            bool    `json:"pass"`
}

// Drill runs o.Runs kills and returns the measurements. A run that fails
// to recover is recorded with its error, and the drill stops there: the
// cluster needs an operator.
func Drill(ctx context.Context, o Options, w Writer, b Breaker, c Cluster) (Summary, error) {
	s := Summary{TargetMedianRTO: o.TargetMedian.Seconds(), TargetMaxRTO: o.TargetMax.Seconds()}
	var seq int64
	for n := 1; n <= o.Runs; n++ {
		r, err := runOnce(ctx, o, w, b, c, n, &seq)
		r.Pass = err == nil && r.LostRows == 0 && r.RTOSeconds <= o.TargetMax.Seconds()
		if err != nil {
			r.Error = err.Error()
		}
		s.Runs = append(s.Runs, r)
		logf(o.Log, "run %d: %s -> %s, RTO %.3fs, %d of %d acknowledged rows lost%s; whole again %.3fs after the restart, %s%s",
			n, r.OldPrimary, r.NewPrimary, r.RTOSeconds, r.LostRows, r.AckedRows, lostNote(r.Lost), r.RejoinSeconds, rewoundNote(r), errNote(err))
		if err != nil {
			break
		}
	}
	s.summarise(o)
	return s, nil
}

func (s *Summary) summarise(o Options) {
	var rtos []float64
	for _, r := range s.Runs {
		s.LostRows += r.LostRows
		if r.Error == "" {
			rtos = append(rtos, r.RTOSeconds)
		}
	}
	if len(rtos) > 0 {
		slices.Sort(rtos)
		s.MaxRTO = rtos[len(rtos)-1]
		mid := len(rtos) / 2
		s.MedianRTO = rtos[mid]
		if len(rtos)%2 == 0 {
			s.MedianRTO = (rtos[mid-1] + rtos[mid]) / 2
		}
	}
	s.Pass = len(rtos) == len(s.Runs) && len(rtos) > 0 && s.LostRows == 0 &&
		s.MedianRTO <= o.TargetMedian.Seconds() && s.MaxRTO <= o.TargetMax.Seconds()
}

// ack is one acknowledged write.
type ack struct {
	seq  int64
	addr string
	at   time.Time
}

// runOnce: wait for a healthy cluster, write, kill the primary, keep writing
// until the new primary has taken writes for WarmUp, measure, bring the old
// primary back.
func runOnce(ctx context.Context, o Options, w Writer, b Breaker, c Cluster, n int, seq *int64) (Run, error) {
	r := Run{N: n}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// A block left by an earlier recovery would stop this one.
	if err := c.Ack(ctx); err != nil {
		return r, fmt.Errorf("lift the anti-flap block: %w", err)
	}
	old, err := waitReady(ctx, c)
	if err != nil {
		return r, err
	}
	r.OldPrimary = old
	last, err := w.Prepare(ctx, old)
	if err != nil {
		return r, err
	}
	*seq = max(*seq, last)

	var (
		mu     sync.Mutex
		acks   []ack
		killed time.Time
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		writeLoop(ctx, w, c, seq, stop, func(a ack) {
			mu.Lock()
			acks = append(acks, a)
			mu.Unlock()
		})
	}()
	finish := func() { close(stop); <-done }

	if err := sleep(ctx, o.WarmUp); err != nil {
		finish()
		return r, err
	}
	killed = time.Now()
	if err := b.Kill(ctx, old); err != nil {
		finish()
		return r, fmt.Errorf("kill %s: %w", old, err)
	}
	logf(o.Log, "run %d: killed %s", n, old)
	newPrimary, err := waitNewWrites(ctx, &mu, &acks, old, o.WarmUp)
	finish()
	if err != nil {
		return r, fmt.Errorf("no write reached a new primary %v after the kill: %w", time.Since(killed).Round(time.Millisecond), err)
	}
	r.NewPrimary = newPrimary
	r.RTOSeconds, r.AckedRows = rto(acks, old, newPrimary)
	var all []int64
	for _, a := range acks {
		all = append(all, a.seq)
	}
	missing, err := w.Missing(ctx, newPrimary, all)
	if err != nil {
		return r, fmt.Errorf("count rows on %s: %w", newPrimary, err)
	}
	r.LostRows, r.Lost = len(missing), missing

	restarted := time.Now()
	if err := b.Restart(ctx, old); err != nil {
		return r, fmt.Errorf("restart %s: %w", old, err)
	}
	if err := c.Ack(ctx); err != nil {
		return r, fmt.Errorf("lift the anti-flap block: %w", err)
	}
	// The cluster heals itself: the old primary is fenced, rewound when it
	// holds what the new one lacks, and follows it. Nobody helps.
	if _, err := waitReady(ctx, c); err != nil {
		return r, fmt.Errorf("after %s was started again: %w", old, err)
	}
	r.RejoinSeconds = time.Since(restarted).Seconds()
	// The ledger is written just after the rejoin that made the cluster
	// whole: look for a few seconds before taking "nothing rewound".
	for wait := 0; ; wait++ {
		if r.Rewound, r.RewoundBytes, err = c.Rewound(ctx, old); err != nil {
			return r, fmt.Errorf("read what was rewound on %s: %w", old, err)
		}
		if r.Rewound > 0 || r.RewoundBytes > 0 || wait == 30 || sleep(ctx, 100*time.Millisecond) != nil {
			return r, nil
		}
	}
}

func rewoundNote(r Run) string {
	if r.RewoundBytes > 0 {
		return fmt.Sprintf("%d bytes of WAL saved and rewound", r.RewoundBytes)
	}
	return fmt.Sprintf("%d transaction(s) saved and rewound", r.Rewound)
}

func lostNote(lost []int64) string {
	if len(lost) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%v)", lost)
}

// waitReady waits for a healthy cluster whose writer endpoint names its
// primary.
func waitReady(ctx context.Context, c Cluster) (string, error) {
	var last error
	for {
		p, err := c.Healthy(ctx)
		if err == nil {
			var wr string
			if wr, err = c.Writer(ctx); err == nil && wr != p {
				err = fmt.Errorf("the writer endpoint names %q, the primary is %s", wr, p)
			}
			if err == nil {
				return p, nil
			}
		}
		last = err
		if sleep(ctx, 200*time.Millisecond) != nil {
			return "", fmt.Errorf("the cluster did not become healthy: %w", last)
		}
	}
}

// writeLoop writes row after row through the writer endpoint until stop:
// on any error it resolves the endpoint again and retries at once, as a
// client with a short retry would.
func writeLoop(ctx context.Context, w Writer, c Cluster, seq *int64, stop <-chan struct{}, acked func(ack)) {
	addr := ""
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if addr == "" {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			a, err := c.Writer(rctx)
			cancel()
			if err != nil || a == "" {
				sleep(ctx, 10*time.Millisecond)
				continue
			}
			addr = a
		}
		// Each number is tried once: a write whose acknowledgement was lost
		// (the primary killed mid-commit) may have committed and reached the
		// new primary, where trying its number again fails for good.
		next := *seq + 1
		*seq = next
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := w.Write(wctx, addr, next)
		cancel()
		if err != nil {
			addr = ""
			sleep(ctx, 10*time.Millisecond)
			continue
		}
		acked(ack{seq: next, addr: addr, at: time.Now()})
	}
}

// waitNewWrites waits until rows have been acknowledged by an instance
// other than old for warmUp.
func waitNewWrites(ctx context.Context, mu *sync.Mutex, acks *[]ack, old string, warmUp time.Duration) (string, error) {
	for {
		mu.Lock()
		var first *ack
		for i := range *acks {
			if (*acks)[i].addr != old {
				first = &(*acks)[i]
				break
			}
		}
		var addr string
		var since time.Duration
		if first != nil {
			addr, since = first.addr, time.Since(first.at)
		}
		mu.Unlock()
		if first != nil && since >= warmUp {
			return addr, nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// rto is the time from the last write acknowledged by the old primary to the
// first acknowledged by the new one.
func rto(acks []ack, old, newPrimary string) (float64, int) {
	var lastOld, firstNew time.Time
	for _, a := range acks {
		switch {
		case a.addr == old:
			lastOld = a.at
		case a.addr == newPrimary && firstNew.IsZero():
			firstNew = a.at
		}
	}
	return firstNew.Sub(lastOld).Seconds(), len(acks)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return " — " + err.Error()
}
