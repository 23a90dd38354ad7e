package binlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrHeld: the stream may not connect to this instance now, because a
// recovery is replacing it (Hold.Cut).
var ErrHeld = errors.New("held by a recovery")

// Hold keeps a cluster's stream away from the primary a recovery is
// replacing. A recovery cuts the stream from the lost primary the moment
// it starts: what the store holds then is final, the plan is made from it,
// and nothing waits for the stream's read timeout on a dead or hung host.
// Until the recovery releases the cut, the stream does not connect to that
// instance again (a hung primary that wakes up mid-recovery must not add
// to the store what the new primary will never have); once released, the
// stream follows whatever primary discovery names, the new one.
//
// A nil *Hold holds nothing. Its methods may be called from any goroutine.
type Hold struct {
	mu       sync.Mutex
	cuts     map[string]int // by address: cuts not yet released
	sessions map[*holdSession]struct{}
	released chan struct{} // closed, and replaced, at every release
}

type holdSession struct {
	addr   string
	cancel context.CancelCauseFunc
	ended  chan struct{} // closed by the session's done
}

// CutWait bounds how long Cut waits for the sessions it ends to close
// their store files. Closing is local (no word to the primary is awaited);
// the bound only keeps a stuck disk from holding up a recovery.
const CutWait = 2 * time.Second

// NewHold returns a hold that holds nothing yet.
func NewHold() *Hold {
	return &Hold{cuts: map[string]int{}, sessions: map[*holdSession]struct{}{}, released: make(chan struct{})}
}

// Cut ends at once every stream session connected to addr, waits (at most
// CutWait) until they have closed their store files, so that what the
// store holds is final when it returns, and refuses new sessions to addr
// (Session) until release is called. Cuts of the same address nest: addr
// is held until every one is released. release may be called more than
// once.
func (h *Hold) Cut(addr string) (release func()) {
	if h == nil || addr == "" {
		return func() {}
	}
	h.mu.Lock()
	h.cuts[addr]++
	var ended []chan struct{}
	for s := range h.sessions {
		if s.addr == addr {
			s.cancel(fmt.Errorf("%w: a recovery is replacing %s; what the store holds of it is final", ErrHeld, addr))
			delete(h.sessions, s)
			ended = append(ended, s.ended)
		}
	}
	h.mu.Unlock()
	timeout := time.NewTimer(CutWait)
	defer timeout.Stop()
	for _, e := range ended {
		select {
		case <-e:
		case <-timeout.C:
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.cuts[addr]--; h.cuts[addr] <= 0 {
				delete(h.cuts, addr)
			}
			close(h.released)
			h.released = make(chan struct{})
		})
	}
}

// Session registers a stream session about to follow addr. It returns a
// context, derived from ctx, that ends when addr is cut (context.Cause
// then wraps ErrHeld), and done, which the session calls once it has
// closed its store files (Cut waits for it). An
// error wrapping ErrHeld means addr is held now: the session must not
// connect.
func (h *Hold) Session(ctx context.Context, addr string) (context.Context, func(), error) {
	if h == nil {
		return ctx, func() {}, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cuts[addr] > 0 {
		return nil, nil, fmt.Errorf("%w: a recovery is replacing %s", ErrHeld, addr)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	s := &holdSession{addr: addr, cancel: cancel, ended: make(chan struct{})}
	h.sessions[s] = struct{}{}
	var once sync.Once
	return sctx, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.sessions, s)
			h.mu.Unlock()
			cancel(context.Canceled)
			close(s.ended)
		})
	}, nil
}

// Released returns a channel that is closed at the next release of a cut:
// a stream waiting to reconnect wakes then, to follow the new primary at
// once. For a nil Hold it is never closed.
func (h *Hold) Released() <-chan struct{} {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.released
}

// Held reports whether addr is cut now.
func (h *Hold) Held(addr string) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cuts[addr] > 0
}
