package postgres

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// Stream keeps one cluster's WAL in its store. Run may be called once;
// Status may be called from any goroutine at any time.
type Stream struct {
	cfg   Config
	tr    *binlog.Tracker
	prune chan struct{}
}

// New checks cfg and returns a stream that has not started.
func New(cfg Config) (*Stream, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Stream{cfg: cfg, tr: binlog.NewTracker(cfg.Dir, cfg.Cluster, topology.Postgres), prune: make(chan struct{}, 1)}, nil
}

// Status is the stream's state now.
func (s *Stream) Status() binlog.Status { return s.tr.Status() }

// errPrimaryChanged ends a session when Primary names another instance.
var errPrimaryChanged = errors.New("the primary changed")

// Run streams until ctx is done, then returns nil. It asks Primary which
// instance to follow at the start, after every disconnect and every
// FollowInterval while connected; it reconnects after errors with a bounded
// backoff, keeping the last one in Status.LastError. It returns an error
// wrapping ErrBroken, with the reason in Status.Broken, for a condition it
// cannot get past by itself, and other errors only when the store cannot be
// opened.
func (s *Stream) Run(ctx context.Context) error {
	unlock, err := s.open()
	if err != nil {
		return err
	}
	defer unlock()
	defer s.background(ctx)()

	for attempt := 0; ; attempt++ {
		// Taken before the session: a recovery that releases its cut while
		// the session ends still wakes the wait below.
		released := s.cfg.Hold.Released()
		progressed, err := s.follow(ctx)
		held := errors.Is(err, binlog.ErrHeld)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrBroken):
			return s.breakOff(err)
		case errors.Is(err, errPrimaryChanged):
			s.cfg.Logger.Info("following the new primary", "cluster", s.cfg.Cluster, "change", err.Error())
			attempt = -1
			continue
		case progressed:
			attempt = 0
		}
		wait := backoff(attempt)
		s.tr.Failed(err)
		if held {
			wait = backoff(6) // the end of the recovery wakes it sooner
			s.cfg.Logger.Info("WAL stream cut for a recovery; it follows the new primary once the recovery ends", "cluster", s.cfg.Cluster, "why", err.Error())
		} else {
			s.cfg.Logger.Warn("WAL stream interrupted", "cluster", s.cfg.Cluster, "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-released:
			attempt = -1 // a recovery ended: its new primary is there to follow now
		case <-time.After(wait):
		}
	}
}

// open creates and locks the store, and starts the status from what an
// earlier run left in it.
func (s *Stream) open() (unlock func(), err error) {
	if err := makeStore(s.cfg.Dir); err != nil {
		return nil, err
	}
	if unlock, err = lockStore(s.cfg.Dir); err != nil {
		return nil, err
	}
	if st, err := OpenStore(s.cfg.Dir); err == nil {
		s.tr.Flushed(st.Position(), time.Time{})
	}
	return unlock, nil
}

// background starts the status publisher and retention; the returned
// function stops them, retention first, then the publisher after a last
// status. They outlive ctx so that the final status says how the stream
// ended.
func (s *Stream) background(ctx context.Context) (stop func()) {
	stopStatus := s.tr.Start(s.cfg.StatusInterval, s.logStatusError)
	var bg sync.WaitGroup
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	bg.Go(func() { s.retain(bgCtx) })
	return func() { cancel(); bg.Wait(); stopStatus() }
}

// breakOff records why the stream is broken and returns Run's error.
func (s *Stream) breakOff(err error) error {
	reason := err.Error()
	if be := (*brokenError)(nil); errors.As(err, &be) {
		reason = be.reason
	}
	s.tr.Broken(reason)
	s.cfg.Logger.Error("WAL stream broken: it will not continue by itself", "cluster", s.cfg.Cluster, "reason", reason)
	return fmt.Errorf("WAL stream of cluster %s: %w", s.cfg.Cluster, err)
}

// backoff is the wait before reconnect attempt n (0-based): 200 ms
// doubling up to 10 s.
func backoff(n int) time.Duration {
	const first, most = 200 * time.Millisecond, 10 * time.Second
	if n < 0 {
		return 0
	}
	if n >= 6 {
		return most
	}
	return min(first<<n, most)
}

// follow asks for the primary and streams from it until the session ends.
// progressed says WAL was streamed, so the backoff starts over.
func (s *Stream) follow(ctx context.Context) (progressed bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	addr, err := s.cfg.Primary(qctx)
	cancel()
	if err == nil && addr == "" {
		err = errors.New("no address")
	}
	if err != nil {
		return false, fmt.Errorf("ask which instance is the primary: %w", err)
	}
	hctx, done, err := s.cfg.Hold.Session(ctx, addr)
	if err != nil {
		return false, err
	}
	defer done()
	sctx, stop := context.WithCancelCause(hctx)
	defer stop(nil)
	go s.watchPrimary(sctx, addr, stop)

	ss := &session{cfg: s.cfg, tr: s.tr, addr: addr, walDir: filepath.Join(s.cfg.Dir, walSubdir),
		rule: flushRule{Synchronous: s.cfg.Synchronous, Interval: s.cfg.StatusInterval}, prune: s.signalPrune}
	err = ss.run(sctx)
	if cause := context.Cause(sctx); errors.Is(cause, errPrimaryChanged) || errors.Is(cause, binlog.ErrHeld) {
		err = cause
	}
	return ss.streamed, err
}

// watchPrimary asks Primary every FollowInterval and ends the session
// (through stop) when it names another instance. Errors keep the session:
// the primary being unknown for a moment is no reason to drop a stream that
// works.
func (s *Stream) watchPrimary(ctx context.Context, current string, stop context.CancelCauseFunc) {
	tick := time.NewTicker(s.cfg.FollowInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		qctx, cancel := context.WithTimeout(ctx, s.cfg.FollowInterval)
		addr, err := s.cfg.Primary(qctx)
		cancel()
		if err == nil && addr != "" && addr != current {
			stop(fmt.Errorf("%w from %s to %s", errPrimaryChanged, current, addr))
			return
		}
	}
}

func (s *Stream) signalPrune() {
	select {
	case s.prune <- struct{}{}:
	default:
	}
}

func (s *Stream) logStatusError(err error) {
	s.cfg.Logger.Warn("cannot publish stream status", "cluster", s.cfg.Cluster, "err", err)
}
