package binlog

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbha/dbha/topology"
)

// Tracker holds what a stream says about itself, its Status, and publishes
// it in the store directory (WriteStatus) while a run lasts. Both engines'
// streams use it; every method may be called from any goroutine.
//
// What the fields mean to an operator reading `dbha stream status` or the
// API:
//   - Connected is true only while a replication connection is open: a
//     session that ends (Disconnected) and a run that ends (the stop
//     function Start returns) both clear it, and Acknowledging with it.
//     Since is when Connected last changed.
//   - LastError is the latest failure (Failed), and the reason of a break
//     (Broken), so that what went wrong stays visible; an open connection
//     (Connected) clears it.
//   - Broken is set by Broken and cleared when a new run starts (Start): the
//     new run tries again, and breaks again if nothing was fixed.
//   - Position never goes back (see Flushed). Events, Bytes and LastMessage
//     count what this process received; DiskBytes is measured at each
//     publication.
type Tracker struct {
	dir string

	// Counted for every message, so lock-free.
	events, bytes atomic.Int64
	lastMessage   atomic.Int64 // unix nanoseconds

	mu      sync.Mutex
	st      Status
	flushed func() (topology.Position, time.Time) // see FlushedFrom
	changed chan struct{}                         // a change of state to publish at once
}

// NewTracker returns the tracker of cluster's stream, publishing in dir.
func NewTracker(dir, cluster string, engine topology.Engine) *Tracker {
	return &Tracker{
		dir:     dir,
		st:      Status{Cluster: cluster, Engine: engine, PID: os.Getpid(), Since: time.Now()},
		changed: make(chan struct{}, 1),
	}
}

// update changes the status under the lock and, when it changed state, has
// it published at once rather than with the next tick.
func (t *Tracker) update(fn func(*Status)) {
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

// setConnected changes Connected, and Since when it changes.
func setConnected(s *Status, on bool) {
	if s.Connected != on {
		s.Since = time.Now()
	}
	s.Connected = on
}

// Connected records an open replication connection to primary;
// acknowledging says the primary waits for dbha and dbha acknowledges. It
// clears LastError: the connection is the answer to the last failure.
func (t *Tracker) Connected(primary string, acknowledging bool) {
	t.update(func(s *Status) {
		setConnected(s, true)
		s.Primary, s.Acknowledging, s.LastError = primary, acknowledging, ""
	})
}

// Disconnected records that the connection ended. Primary stays: it is the
// instance last followed.
func (t *Tracker) Disconnected() {
	t.update(func(s *Status) {
		setConnected(s, false)
		s.Acknowledging = false
	})
}

// Failed records err as LastError: the stream goes on (retrying, or without
// what err says it lacks).
func (t *Tracker) Failed(err error) { t.update(func(s *Status) { s.LastError = err.Error() }) }

// Broken records a condition the stream will not get past by itself; the
// reason is LastError too.
func (t *Tracker) Broken(reason string) {
	t.update(func(s *Status) { s.Broken, s.LastError = reason, reason })
}

// Received counts n bytes that arrived from the primary at at.
func (t *Tracker) Received(n int, at time.Time) {
	t.bytes.Add(int64(n))
	t.lastMessage.Store(at.UnixNano())
}

// Heard records that the primary sent something without data (a
// keepalive) at at.
func (t *Tracker) Heard(at time.Time) { t.lastMessage.Store(at.UnixNano()) }

// Event counts one unit received: a complete transaction (MariaDB/MySQL) or
// a WAL message (PostgreSQL).
func (t *Tracker) Event() { t.events.Add(1) }

// Flushed records pos as held on disk, and eventTime (when not zero) as the
// primary's time of the newest event it includes. Position never goes back:
// a zero pos, or one that topology.Compare places behind the position held,
// is ignored (a restarted writer rewrites WAL already held, a new writer
// reports an empty position before it has read the store). Any other
// answer, diverged included, replaces it: it is what the store now holds.
func (t *Tracker) Flushed(pos topology.Position, eventTime time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flush(pos, eventTime)
}

func (t *Tracker) flush(pos topology.Position, eventTime time.Time) {
	if !pos.IsZero() {
		if o, err := topology.Compare(pos, t.st.Position); err != nil || o != topology.Behind {
			t.st.Position = pos
		}
	}
	if !eventTime.IsZero() {
		t.st.LastEventTime = eventTime
	}
}

// FlushedFrom makes every Status ask fn for what Flushed would be told, for
// a writer that fsyncs far more often than anyone reads the status. Its
// answers go through Flushed's rule. nil stops asking; what was held stays.
func (t *Tracker) FlushedFrom(fn func() (topology.Position, time.Time)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushed = fn
}

// Status returns the status as of now, the value Start publishes.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	fn := t.flushed
	t.mu.Unlock()
	var (
		pos  topology.Position
		last time.Time
	)
	if fn != nil {
		pos, last = fn() // outside the lock: fn takes the writer's own lock
	}
	t.mu.Lock()
	if fn != nil {
		t.flush(pos, last)
	}
	s := t.st
	t.mu.Unlock()
	s.Events, s.Bytes = t.events.Load(), t.bytes.Load()
	if ns := t.lastMessage.Load(); ns != 0 {
		s.LastMessage = time.Unix(0, ns)
	}
	s.UpdatedAt = time.Now()
	return s
}

// Start begins a run: it clears Broken, and publishes the status every
// interval (> 0) and at once on every change of state, until the returned
// stop is called. stop marks the stream no longer connected, publishes that
// last status and returns once it is written; the caller calls it once,
// when the run ends, whatever ended it. logf hears a failure to publish once, until the
// failure changes or publishing works again.
func (t *Tracker) Start(interval time.Duration, logf func(error)) (stop func()) {
	t.update(func(s *Status) { s.Broken = "" })
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var lastErr string
		for {
			select {
			case <-done:
				t.Disconnected()
				t.publish(logf, &lastErr)
				return
			case <-tick.C:
			case <-t.changed:
			}
			t.publish(logf, &lastErr)
		}
	}()
	return func() { close(done); <-stopped }
}

// publish measures the store and writes one status.
func (t *Tracker) publish(logf func(error), lastErr *string) {
	if n, err := DirBytes(t.dir); err == nil {
		t.mu.Lock()
		t.st.DiskBytes = n
		t.mu.Unlock()
	}
	err := WriteStatus(t.dir, t.Status())
	if err != nil && err.Error() != *lastErr {
		logf(err)
	}
	*lastErr = ""
	if err != nil {
		*lastErr = err.Error()
	}
}
