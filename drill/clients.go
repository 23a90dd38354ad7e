package drill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Engine is how the drill reaches one engine's servers. Its methods may be
// called from several goroutines at once.
type Engine interface {
	// Prepare creates the drill's table on the primary at addr when
	// missing and returns the highest id in it, so that a drill numbers on
	// from an earlier one.
	Prepare(ctx context.Context, addr string) (int64, error)
	// Dial opens one connection to addr, bounded by ctx, and reads the
	// identity the server reports once.
	Dial(ctx context.Context, addr string) (Conn, error)
	// Contents returns the ids above after that addr holds, each with the
	// writer number stored in its row.
	Contents(ctx context.Context, addr string, after int64) (map[int64]int, error)
}

// Conn is one client connection; it is used by one goroutine at a time.
type Conn interface {
	// Server is the identity the server reported when the connection was
	// opened (MariaDB server_id, PostgreSQL its own address and port).
	Server() string
	// Insert writes the row id of writer and returns once the server
	// acknowledged the commit, or with an error: one wrapping ErrRefused
	// when the server certainly did not commit it, any other when the
	// outcome is unknown. After an error the connection is not used again.
	Insert(ctx context.Context, id int64, writer int) error
	Close() error
}

// WriterOptions bound the writers.
type WriterOptions struct {
	// Writers is how many concurrent writers run, each on a connection of
	// its own.
	Writers int `json:"writers"`
	// WriteTimeout bounds one write (its acknowledgement); DialTimeout one
	// connection (dial, login and the identity query); ResolveTimeout one
	// lookup of the writer endpoint.
	WriteTimeout   time.Duration `json:"write_timeout"`
	DialTimeout    time.Duration `json:"dial_timeout"`
	ResolveTimeout time.Duration `json:"resolve_timeout"`
	// RetryPause is how long a writer waits after a failed write, or a
	// first failed resolve or dial, before it tries again; each further
	// failure in a row doubles it up to MaxRetryPause (with jitter), as a
	// client's pool backs off: eight writers redialling every few
	// milliseconds keep a PostgreSQL postmaster forking backends for
	// logins that are abandoned at the dial deadline, and on a loaded
	// machine no login, theirs or anybody's, gets through. Pace is the
	// pause between two acknowledged writes (0: none).
	RetryPause    time.Duration `json:"retry_pause"`
	MaxRetryPause time.Duration `json:"max_retry_pause"`
	Pace          time.Duration `json:"pace"`
	// ConnLifetime is how long a writer keeps a connection before it closes
	// it and resolves the endpoint again, as a pool with a maximum
	// connection lifetime does (0: for ever). Without it a writer whose
	// server never fails (an isolated old primary its clients still
	// reach) never looks the endpoint up again, and the drill could not
	// see two servers taking writes at once.
	ConnLifetime time.Duration `json:"conn_lifetime"`
	// MaxSteps bounds each writer's loop (resolves, dials and writes), on
	// top of the time bound of its context.
	MaxSteps int `json:"max_steps"`
}

// DefaultWriterOptions: 8 writers, a write answered within 1 s, a
// connection within 500 ms, 10 ms between two writes of one writer. The
// pace keeps the load steady (a few hundred writes a second on a small
// machine) instead of saturating it: unpaced, 8 writers on the 2-core lab
// machine lag the replicas by thousands of transactions, and the RTO
// measures their catch-up more than dbha.
func DefaultWriterOptions() WriterOptions {
	return WriterOptions{Writers: 8, WriteTimeout: time.Second, DialTimeout: 500 * time.Millisecond,
		ResolveTimeout: 500 * time.Millisecond, RetryPause: 20 * time.Millisecond, MaxRetryPause: 500 * time.Millisecond,
		Pace: 10 * time.Millisecond, ConnLifetime: time.Second,
		MaxSteps: 10_000_000}
}

// Validate names the first option out of range.
func (o WriterOptions) Validate() error {
	switch {
	case o.Writers < 1 || o.Writers > 256:
		return fmt.Errorf("writers: %d, want 1 to 256", o.Writers)
	case o.WriteTimeout <= 0 || o.DialTimeout <= 0 || o.ResolveTimeout <= 0:
		return errors.New("write, dial and resolve timeouts must be positive")
	case o.RetryPause <= 0 || o.MaxRetryPause < o.RetryPause || o.Pace < 0 || o.ConnLifetime < 0 || o.MaxSteps < 1:
		return errors.New("retry pause and step bound must be positive, the longest retry pause at least the first, pace and connection lifetime not negative")
	}
	return nil
}

// Resolve returns the address the writer endpoint names now ("" or an
// error when it names none).
type Resolve func(ctx context.Context) (string, error)

// Writers are W concurrent clients writing unique ids through the writer
// endpoint, recording every write they send.
type Writers struct {
	o       WriterOptions
	e       Engine
	resolve Resolve
	next    atomic.Int64

	mu       sync.Mutex
	history  []Write
	failures Failures

	stop chan struct{}
	wg   sync.WaitGroup
}

// StartWriters starts o.Writers writers numbering ids from after+1. Each
// resolves the writer endpoint whenever it has no connection (at the start
// and after any failed write), so a failover reaches it as it reaches an
// application. They run until Stop, ctx's end or o.MaxSteps.
func StartWriters(ctx context.Context, o WriterOptions, e Engine, resolve Resolve, after int64) *Writers {
	w := &Writers{o: o, e: e, resolve: resolve, stop: make(chan struct{})}
	w.next.Store(after)
	for i := range o.Writers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.loop(ctx, i)
		}()
	}
	return w
}

// History returns a copy of the writes recorded so far.
func (w *Writers) History() []Write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Write(nil), w.history...)
}

// Stop stops the writers, waits for their last writes (bounded by the
// write timeout) and returns the whole history and the last id handed out.
func (w *Writers) Stop() ([]Write, int64) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
	return w.History(), w.next.Load()
}

func (w *Writers) record(wr Write) {
	w.mu.Lock()
	w.history = append(w.history, wr)
	if wr.Err != "" {
		w.failures.Last = fmt.Sprintf("writer %d, id %d on %s: %s", wr.Writer, wr.ID, wr.Addr, wr.Err)
	}
	w.mu.Unlock()
}

// Failures counts what the writers tried and could not do before sending a
// write, which the history (writes sent) does not show.
type Failures struct {
	Resolve int    `json:"resolve"` // lookups of the writer endpoint that failed or named none
	Dial    int    `json:"dial"`    // connections (dial, login, identity) that failed
	Last    string `json:"last,omitempty"`
}

// Failures returns the counts so far and the latest failure of any kind.
func (w *Writers) Failures() Failures {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failures
}

func (w *Writers) failed(resolve bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if resolve {
		w.failures.Resolve++
	} else {
		w.failures.Dial++
	}
	w.failures.Last = err.Error()
}

// lastError is the latest failure the writers met, for a message.
func (w *Writers) lastError() string {
	f := w.Failures()
	if f.Last == "" {
		return "no failure recorded"
	}
	return fmt.Sprintf("%d failed lookups, %d failed connections; last failure: %s", f.Resolve, f.Dial, f.Last)
}

// findAck returns the first acknowledged write at index from or later
// that satisfies pred, and the index to go on from next time.
func (w *Writers) findAck(from int, pred func(Write) bool) (Write, int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := from; i < len(w.history); i++ {
		if wr := w.history[i]; wr.Outcome == Acked && pred(wr) {
			return wr, i, true
		}
	}
	return Write{}, len(w.history), false
}

// loop is writer i: resolve, dial, write until a write fails, again.
func (w *Writers) loop(ctx context.Context, i int) {
	var (
		conn   Conn
		connAt time.Time
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	failed := 0 // connection attempts failed in a row
	for range w.o.MaxSteps {
		select {
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if conn == nil {
			if conn = w.connect(ctx); conn == nil {
				w.pause(ctx, backoff(w.o.RetryPause, w.o.MaxRetryPause, failed, rand.Float64()))
				failed++
			} else {
				failed, connAt = 0, time.Now()
			}
			continue
		}
		id := w.next.Add(1)
		wctx, cancel := context.WithTimeout(ctx, w.o.WriteTimeout)
		wr := Write{ID: id, Writer: i, Addr: w.addrOf(conn), Server: conn.Server(), Sent: time.Now()}
		err := conn.Insert(wctx, id, i)
		wr.Done = time.Now()
		cancel()
		wr.Outcome = OutcomeOf(err)
		if err != nil {
			wr.Err = err.Error()
		}
		w.record(wr)
		if err != nil {
			conn.Close()
			conn = nil
			w.pause(ctx, w.o.RetryPause)
			continue
		}
		if w.o.ConnLifetime > 0 && time.Since(connAt) >= w.o.ConnLifetime {
			conn.Close()
			conn = nil
		}
		if w.o.Pace > 0 {
			w.pause(ctx, w.o.Pace)
		}
	}
}

// addrConn remembers which address a connection was dialled at.
type addrConn struct {
	Conn
	addr string
}

func (w *Writers) addrOf(c Conn) string { return c.(addrConn).addr }

// connect resolves the writer endpoint and dials what it names; nil when
// either fails.
func (w *Writers) connect(ctx context.Context) Conn {
	rctx, cancel := context.WithTimeout(ctx, w.o.ResolveTimeout)
	addr, err := w.resolve(rctx)
	cancel()
	if err == nil && addr == "" {
		err = errors.New("the writer endpoint names no instance")
	}
	if err != nil {
		w.failed(true, fmt.Errorf("resolve the writer: %w", err))
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, w.o.DialTimeout)
	defer cancel()
	c, err := w.e.Dial(dctx, addr)
	if err != nil {
		w.failed(false, err)
		return nil
	}
	return addrConn{Conn: c, addr: addr}
}

// backoff is the pause after n connection attempts failed in a row (n =
// 0: the first): base doubled n times, at most top, drawn from its upper
// half by jitter in [0, 1) so that writers that failed together do not
// retry together.
func backoff(base, top time.Duration, n int, jitter float64) time.Duration {
	d := top
	if n < 30 && base<<n < top {
		d = base << n
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

func (w *Writers) pause(ctx context.Context, d time.Duration) {
	select {
	case <-w.stop:
	case <-ctx.Done():
	case <-time.After(d):
	}
}
