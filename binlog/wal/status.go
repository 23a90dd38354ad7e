package wal

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// tracker holds a stream's Status. The receive loop updates it; Status()
// and the publisher read it from other goroutines.
type tracker struct {
	mu      sync.Mutex
	st      binlog.Status
	changed chan struct{} // a state change to publish now
}

func newTracker(cluster string) *tracker {
	return &tracker{
		st:      binlog.Status{Cluster: cluster, Engine: topology.Postgres, PID: os.Getpid(), Since: time.Now()},
		changed: make(chan struct{}, 1),
	}
}

func (t *tracker) snapshot() binlog.Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

// update changes the status; state says the change is one to publish at
// once (connection, primary, error, broken) rather than with the next tick.
func (t *tracker) update(state bool, fn func(*binlog.Status)) {
	t.mu.Lock()
	fn(&t.st)
	t.mu.Unlock()
	if state {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

func (t *tracker) connected(addr string, on, acknowledging bool) {
	t.update(true, func(s *binlog.Status) {
		if s.Connected != on {
			s.Since = time.Now()
		}
		s.Connected, s.Primary, s.Acknowledging = on, addr, on && acknowledging
		if on {
			s.LastError = ""
		}
	})
}

func (t *tracker) failed(err error) {
	t.update(true, func(s *binlog.Status) { s.LastError = err.Error() })
}

func (t *tracker) broken(reason string) {
	t.update(true, func(s *binlog.Status) { s.Broken, s.LastError = reason, reason })
}

// received counts one WAL message.
func (t *tracker) received(n int, at time.Time) {
	t.mu.Lock()
	t.st.Events++
	t.st.Bytes += int64(n)
	t.st.LastMessage = at
	t.mu.Unlock()
}

// heard notes a keepalive.
func (t *tracker) heard(at time.Time) {
	t.mu.Lock()
	t.st.LastMessage = at
	t.mu.Unlock()
}

// flushed records the position now on disk, and the primary's time of the
// newest WAL message it includes. On one timeline the position only moves
// forward: rewriting a .partial after a restart goes over WAL already held.
func (t *tracker) flushed(pos topology.Position, eventTime time.Time) {
	t.mu.Lock()
	cur := t.st.Position
	if cur.IsZero() || pos.Timeline() != cur.Timeline() || pos.LSN() > cur.LSN() {
		t.st.Position = pos
	}
	if !eventTime.IsZero() {
		t.st.LastEventTime = eventTime
	}
	t.mu.Unlock()
}

// publish writes the status to dir every interval and on every state
// change, until ctx is done; then once more, as final (not connected).
func (t *tracker) publish(ctx context.Context, dir string, interval time.Duration, logf func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastErr string
	write := func() {
		st := t.snapshot()
		if n, err := binlog.DirBytes(dir); err == nil {
			st.DiskBytes = n
			t.update(false, func(s *binlog.Status) { s.DiskBytes = n })
		}
		st.UpdatedAt = time.Now()
		err := binlog.WriteStatus(dir, st)
		if err != nil && err.Error() != lastErr {
			logf(err) // once per distinct error, not every second
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
	}
	for {
		select {
		case <-ctx.Done():
			t.update(false, func(s *binlog.Status) {
				if s.Connected {
					s.Since = time.Now()
				}
				s.Connected, s.Acknowledging = false, false
			})
			write()
			return
		case <-tick.C:
		case <-t.changed:
		}
		write()
	}
}
