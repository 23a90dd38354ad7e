package guard

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeServer and fakeLease are in-memory versions of the guard's own
// interfaces: the rounds' I/O, recorded.
type fakeServer struct {
	state  ServerState
	fences int
	fail   error
}

func (s *fakeServer) State(ctx context.Context) ServerState {
	if ctx.Err() != nil {
		return ServerUnknown // asked too late: no answer
	}
	return s.state
}
func (s *fakeServer) Fence(context.Context) error {
	s.fences++
	if s.fail != nil {
		return s.fail
	}
	s.state = ServerReadOnly
	return nil
}

type fakeLease struct {
	grant    GrantRead
	readErr  error
	renewErr error
	silent   bool // Read hangs until its ctx ends (packets dropped)
	renewed  []uint64
	released []uint64
}

func (l *fakeLease) Read(ctx context.Context) (GrantRead, error) {
	if l.silent {
		<-ctx.Done()
		return GrantRead{State: GrantUnknown}, ctx.Err()
	}
	if l.readErr != nil {
		return GrantRead{State: GrantUnknown}, l.readErr
	}
	return l.grant, nil
}
func (l *fakeLease) Renew(_ context.Context, i uint64) error {
	if l.renewErr != nil {
		return l.renewErr
	}
	l.renewed = append(l.renewed, i)
	return nil
}
func (l *fakeLease) WaitChange(ctx context.Context, _ uint64) error {
	<-ctx.Done()
	return ctx.Err()
}

func (l *fakeLease) Release(_ context.Context, i uint64) error {
	l.released = append(l.released, i)
	l.grant.Confirmed = l.grant.State == GrantOther // written after the grant
	return nil
}

type rig struct {
	g      *Guard
	server *fakeServer
	lease  *fakeLease
	now    time.Time
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{server: &fakeServer{state: ServerWritable}, lease: &fakeLease{grant: GrantRead{State: GrantMine, Index: 7}},
		now: time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)}
	g, err := New(r.server, r.lease, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return r.now }
	r.g = g
	return r
}

func TestGuardRounds(t *testing.T) {
	ctx := context.Background()
	t.Run("renews, then fences when the grant is revoked, then releases", func(t *testing.T) {
		r := newRig(t)
		if d := r.g.Round(ctx); d.Action != Renew || len(r.lease.renewed) != 1 || r.lease.renewed[0] != 7 {
			t.Fatalf("first round %+v, renewals %v", d, r.lease.renewed)
		}
		r.now = r.now.Add(Period(r.g.ttl))
		r.lease.grant = GrantRead{State: GrantOther, Index: 8}
		if d := r.g.Round(ctx); d.Action != Fence || r.server.fences != 1 || !d.Next.Equal(r.now) {
			t.Fatalf("round after the revocation %+v, fences %d", d, r.server.fences)
		}
		if d := r.g.Round(ctx); d.Action != Release || len(r.lease.released) != 1 || r.lease.released[0] != 8 {
			t.Fatalf("round after the fence %+v, releases %v", d, r.lease.released)
		}
		if d := r.g.Round(ctx); d.Action != Wait {
			t.Fatalf("round after the release %+v, want wait (confirmed? %v)", d, r.lease.grant.Confirmed)
		}
	})
	t.Run("a failed first renewal fences at once", func(t *testing.T) {
		r := newRig(t)
		r.lease.renewErr = errors.New("consul: i/o timeout")
		if d := r.g.Round(ctx); d.Action != Fence || r.server.fences != 1 {
			t.Fatalf("round %+v, fences %d", d, r.server.fences)
		}
	})
	t.Run("a failed renewal within the lease waits, until the fence point", func(t *testing.T) {
		r := newRig(t)
		r.g.Round(ctx)
		r.lease.renewErr = errors.New("consul: i/o timeout")
		start := r.now
		for i := 0; i < 10 && r.server.fences == 0; i++ {
			r.now = r.now.Add(Period(r.g.ttl) / 2)
			r.g.Round(ctx)
		}
		if r.server.fences != 1 {
			t.Fatalf("fences %d, want 1", r.server.fences)
		}
		if took := r.now.Sub(start); took < r.g.ttl-Margin(r.g.ttl) || took > r.g.ttl {
			t.Fatalf("fenced %v after the last renewal, want within [ttl-margin, ttl]", took)
		}
	})
	t.Run("a silent Consul still leaves time to ask the server, and fence it", func(t *testing.T) {
		r := newRig(t)
		r.lease.silent = true
		if d := r.g.Round(ctx); d.Action != Fence || r.server.fences != 1 {
			t.Fatalf("round %+v, fences %d", d, r.server.fences)
		}
	})
	t.Run("a failed fence is tried again a period later, not at once", func(t *testing.T) {
		r := newRig(t)
		r.lease.readErr = errors.New("consul: connection refused")
		r.server.fail = errors.New("kill: denied")
		if d := r.g.Round(ctx); d.Action != Fence || !d.Next.Equal(r.now.Add(Period(r.g.ttl))) {
			t.Fatalf("round %+v", d)
		}
	})
}

// fakeVIP records the writer address's changes; fail makes the next one
// fail.
type fakeVIP struct {
	on      bool
	changes []string
	fail    error
}

func (v *fakeVIP) Hold() error { return v.change(true) }
func (v *fakeVIP) Drop() error { return v.change(false) }
func (v *fakeVIP) change(on bool) error {
	if v.fail != nil {
		err := v.fail
		v.fail = nil
		return err
	}
	v.on = on
	v.changes = append(v.changes, map[bool]string{true: "hold", false: "drop"}[on])
	return nil
}

func TestGuardHoldsTheWriterAddress(t *testing.T) {
	ctx := context.Background()
	t.Run("held with the lease, dropped before the fence", func(t *testing.T) {
		r := newRig(t)
		v := &fakeVIP{}
		r.g.HoldVIP(v)
		r.g.Round(ctx)
		r.now = r.now.Add(Period(r.g.ttl))
		r.g.Round(ctx) // renewed again: nothing changes
		if !v.on || len(v.changes) != 1 {
			t.Fatalf("after two renewals: %v", v.changes)
		}
		r.now = r.now.Add(Period(r.g.ttl))
		r.lease.grant = GrantRead{State: GrantOther, Index: 8}
		r.server.fail = errors.New("kill: denied") // even a fence that fails drops it
		if d := r.g.Round(ctx); d.Action != Fence || v.on {
			t.Fatalf("revoked: %+v, address held %v", d, v.on)
		}
	})
	t.Run("dropped when the lease runs out while Consul is silent", func(t *testing.T) {
		r := newRig(t)
		v := &fakeVIP{}
		r.g.HoldVIP(v)
		r.g.Round(ctx)
		r.lease.renewErr = errors.New("consul: i/o timeout")
		for i := 0; i < 10 && r.server.fences == 0; i++ {
			if !v.on {
				t.Fatalf("dropped within the lease, round %d", i)
			}
			r.now = r.now.Add(Period(r.g.ttl) / 2)
			r.g.Round(ctx)
		}
		if v.on || r.server.fences != 1 {
			t.Fatalf("address held %v, fences %d", v.on, r.server.fences)
		}
	})
	t.Run("dropped at the first round of a replica's guard, and a failed change is tried again", func(t *testing.T) {
		r := newRig(t)
		r.server.state = ServerReadOnly
		r.lease.grant = GrantRead{State: GrantOther, Index: 3}
		v := &fakeVIP{on: true, fail: errors.New("netlink: busy")} // left by a guard that crashed
		r.g.HoldVIP(v)
		r.g.Round(ctx)
		if !v.on {
			t.Fatal("the failed drop took effect")
		}
		r.g.Round(ctx)
		if v.on || len(v.changes) != 1 {
			t.Fatalf("after the retry: held %v, changes %v", v.on, v.changes)
		}
	})
	t.Run("a server that stops answering keeps the address until the lease runs out", func(t *testing.T) {
		r := newRig(t)
		v := &fakeVIP{}
		r.g.HoldVIP(v)
		r.g.Round(ctx)
		r.server.state = ServerUnknown
		r.now = r.now.Add(Period(r.g.ttl))
		r.g.Round(ctx)
		if !v.on {
			t.Fatal("one unanswered probe dropped the writer's address within the lease")
		}
		r.now = r.now.Add(r.g.ttl)
		r.g.Round(ctx)
		if v.on {
			t.Fatal("a server that does not answer keeps the writer's address past its lease")
		}
	})
	t.Run("a server made read-only by a switchover gives the address up", func(t *testing.T) {
		r := newRig(t)
		v := &fakeVIP{}
		r.g.HoldVIP(v)
		r.g.Round(ctx)
		r.server.state = ServerReadOnly
		r.now = r.now.Add(Period(r.g.ttl))
		if d := r.g.Round(ctx); d.Action != Release || v.on {
			t.Fatalf("%+v, address held %v", d, v.on)
		}
	})
}
