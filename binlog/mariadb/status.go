package mariadb

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// tracker holds what a stream says about itself and publishes it in the
// store directory (binlog.WriteStatus) every second and on every change of
// state. Counters touched for every event are atomics; the rest is under
// mu.
type tracker struct {
	dir string

	events, bytes atomic.Int64
	lastMessage   atomic.Int64 // unix nanoseconds

	mu      sync.Mutex
	st      binlog.Status
	changed chan struct{}
	// durable reports the writer's fsynced position (nil between sessions:
	// the last one reported stays).
	durable func() (state, time.Time)
}

func newTracker(cluster, dir string, engine topology.Engine) *tracker {
	return &tracker{
		dir:     dir,
		changed: make(chan struct{}, 1),
		st:      binlog.Status{Cluster: cluster, Engine: engine, PID: os.Getpid(), Since: time.Now()},
	}
}

// update changes the status under the lock and, when it changed state,
// has it published at once.
func (t *tracker) update(fn func(*binlog.Status)) {
	t.mu.Lock()
	before := t.st
	fn(&t.st)
	after := t.st
	t.mu.Unlock()
	if before.Connected != after.Connected || before.Primary != after.Primary || before.Broken != after.Broken ||
		before.LastError != after.LastError || before.Acknowledging != after.Acknowledging {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

func (t *tracker) setConnected(connected bool, primary string, acknowledging bool) {
	t.update(func(s *binlog.Status) {
		if s.Connected != connected {
			s.Since = time.Now()
		}
		s.Connected, s.Acknowledging = connected, acknowledging && connected
		if primary != "" {
			s.Primary = primary
		}
		if connected {
			s.LastError = ""
		}
	})
}

func (t *tracker) setError(msg string) { t.update(func(s *binlog.Status) { s.LastError = msg }) }

func (t *tracker) setBroken(msg string) { t.update(func(s *binlog.Status) { s.Broken = msg }) }

func (t *tracker) setDurable(fn func() (state, time.Time)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.durable = fn
}

// message counts one event (or heartbeat) received.
func (t *tracker) message(n int) {
	t.bytes.Add(int64(n))
	t.lastMessage.Store(time.Now().UnixNano())
}

// snapshot returns the status as of now.
func (t *tracker) snapshot() binlog.Status {
	t.mu.Lock()
	if t.durable != nil {
		pos, last := t.durable()
		if !pos.isEmpty() || t.st.Position.IsZero() {
			t.st.Position = pos.position()
		}
		if !last.IsZero() {
			t.st.LastEventTime = last
		}
	}
	s := t.st
	t.mu.Unlock()
	s.Events, s.Bytes = t.events.Load(), t.bytes.Load()
	if ns := t.lastMessage.Load(); ns != 0 {
		s.LastMessage = time.Unix(0, ns)
	}
	s.DiskBytes, _ = binlog.DirBytes(t.dir)
	s.UpdatedAt = time.Now()
	return s
}

// publish writes the status every second and on every change until ctx
// ends, then once more (the stream is no longer connected then).
func (t *tracker) publish(ctx context.Context, log *slog.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			t.write(log, &failing)
			return
		case <-tick.C:
		case <-t.changed:
		}
		t.write(log, &failing)
	}
}

// write publishes one status; a failure is logged once until it recovers.
func (t *tracker) write(log *slog.Logger, failing *bool) {
	err := binlog.WriteStatus(t.dir, t.snapshot())
	if err != nil && !*failing {
		log.Error("cannot publish the stream status", "err", err)
	}
	*failing = err != nil
}
