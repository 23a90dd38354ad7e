package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/dbha/dbha/guard"
)

// GuardLease is a guard's side of its instance's write lease (guard.Lease):
// it reads the cluster's grant and takes, renews and releases
// dbha/<cluster>/lease/<addr> with a Consul session of its own. One
// guard's loop uses it; it is not for concurrent use.
//
// The Consul session only marks who holds the key; the lease's time is
// the guard's TTL on the guard's clock (see package guard). The session's
// own TTL (at least Consul's minimum, 10 s) only frees the key of a guard
// that vanished; it releases the key (behavior release) without a lock
// delay, so a restarted guard takes it back at once.
type GuardLease struct {
	c       *Client
	cluster string
	addr    string
	ttl     time.Duration
	name    string // the session's name: "dbha guard <cluster> <addr>"
	host    string

	session      string
	sessionTTL   time.Duration
	sessionRenew time.Time // when the session was last created or renewed
	renewals     uint64
}

var _ guard.Lease = (*GuardLease)(nil)

// GuardLease returns the lease of addr's guard in cluster; ttl is the
// guard's lease, which it states in the lease's value for dbha. host names
// the guard for people.
func (c *Client) GuardLease(cluster, addr string, ttl time.Duration, host string) *GuardLease {
	return &GuardLease{c: c, cluster: cluster, addr: addr, ttl: ttl, host: host,
		name: "dbha guard " + cluster + " " + addr, sessionTTL: max(10*time.Second, 5*ttl)}
}

// Read reads the grant, and the lease, as they concern the guard's
// instance: consistent reads, so that a fresh grant is never missed.
func (g *GuardLease) Read(ctx context.Context) (guard.GrantRead, error) {
	gr, index, ok, err := g.c.ReadGrant(ctx, g.cluster)
	if err != nil {
		return guard.GrantRead{State: guard.GrantUnknown}, err
	}
	if !ok {
		return guard.GrantRead{State: guard.GrantAbsent}, nil
	}
	r := guard.GrantRead{State: guard.GrantOther, Index: index}
	if gr.Instance == g.addr {
		r.State = guard.GrantMine
	}
	pair, _, err := g.c.kv.Get(leaseKey(g.cluster, g.addr), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return guard.GrantRead{State: guard.GrantUnknown}, fmt.Errorf("read %s: %w", leaseKey(g.cluster, g.addr), err)
	}
	if pair != nil && pair.Session == "" && pair.ModifyIndex > index {
		var v LeaseValue
		r.Confirmed = json.Unmarshal(pair.Value, &v) == nil && v.Fenced
	}
	return r, nil
}

// Renew takes or keeps the lease in one transaction that fails unless the
// grant is still at grantIndex (ErrGrantChanged); every renewal rewrites
// the value, so the key's ModifyIndex moves.
func (g *GuardLease) Renew(ctx context.Context, grantIndex uint64) error {
	g.renewals++
	v := LeaseValue{Renewals: g.renewals, TTL: g.ttl.String(), Guard: g.host}
	return g.lockTxn(ctx, grantIndex, v, false)
}

// Release unlocks the lease with fenced=true (taking it first when it is
// not held, so that a guard whose server was already read-only confirms a
// revocation), unless the grant has changed from grantIndex.
func (g *GuardLease) Release(ctx context.Context, grantIndex uint64) error {
	v := LeaseValue{Renewals: g.renewals, TTL: g.ttl.String(), Fenced: true, Guard: g.host}
	return g.lockTxn(ctx, grantIndex, v, true)
}

// WaitChange blocks (a Consul blocking query) until the grant's
// ModifyIndex differs from grantIndex or ctx ends.
func (g *GuardLease) WaitChange(ctx context.Context, grantIndex uint64) error {
	key := grantKey(g.cluster)
	seen := grantIndex
	// Each query blocks until a change or the deadline; the count bounds
	// a Consul that answers at once without a change.
	for range 100 {
		wait := time.Minute
		if d, ok := ctx.Deadline(); ok {
			wait = time.Until(d)
		}
		if wait <= 0 {
			return ctx.Err()
		}
		pair, meta, err := g.c.kv.Get(key, (&api.QueryOptions{WaitIndex: seen, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		if pair == nil || pair.ModifyIndex != grantIndex {
			return nil
		}
		if meta.LastIndex > seen {
			seen = meta.LastIndex
		}
	}
	return nil // a round early does no harm
}

// Close destroys the guard's session, which releases the key (its value,
// and so fenced, unchanged).
func (g *GuardLease) Close(ctx context.Context) error {
	if g.session == "" {
		return nil
	}
	_, err := g.c.api.Session().Destroy(g.session, (&api.WriteOptions{}).WithContext(ctx))
	g.session = ""
	return err
}

// lockTxn checks the grant's index and locks the lease with the guard's
// session (then unlocks it when unlock). A lock refused because a session
// of an earlier run of this guard still holds the key destroys that
// session and tries once more.
func (g *GuardLease) lockTxn(ctx context.Context, grantIndex uint64, v LeaseValue, unlock bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	key := leaseKey(g.cluster, g.addr)
	for attempt := 0; ; attempt++ {
		if err := g.ensureSession(ctx); err != nil {
			return err
		}
		ops := api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: grantKey(g.cluster), Index: grantIndex}},
			{KV: &api.KVTxnOp{Verb: api.KVLock, Key: key, Value: b, Session: g.session}},
		}
		if unlock {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVUnlock, Key: key, Value: b, Session: g.session}})
		}
		ok, resp, _, err := g.c.api.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("lock %s: %w", key, err)
		}
		if ok {
			return nil
		}
		lockRefused := false
		var whats []string
		for _, e := range resp.Errors {
			if e.OpIndex == 0 {
				return fmt.Errorf("lock %s: %w", key, ErrGrantChanged)
			}
			lockRefused = true
			whats = append(whats, e.What)
		}
		if !lockRefused || attempt > 0 {
			return fmt.Errorf("lock %s: %s", key, strings.Join(whats, "; "))
		}
		if err := g.clearStale(ctx, key); err != nil {
			return fmt.Errorf("lock %s: %s; %w", key, strings.Join(whats, "; "), err)
		}
	}
}

// clearStale frees the key from a session that is not the guard's current
// one: its own session that Consul invalidated (forgotten, so that a new
// one is made), or the session of an earlier run of the same guard
// (destroyed). A session of any other name is left alone: the lock stays
// refused.
func (g *GuardLease) clearStale(ctx context.Context, key string) error {
	pair, _, err := g.c.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if pair == nil || pair.Session == "" || pair.Session == g.session {
		g.session = "" // ours is gone (invalidated): make a new one
		return nil
	}
	info, _, err := g.c.api.Session().Info(pair.Session, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("session holding %s: %w", key, err)
	}
	if info != nil && info.Name != g.name {
		return fmt.Errorf("%s is held by session %q, not this guard's", key, info.Name)
	}
	if _, err := g.c.api.Session().Destroy(pair.Session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("destroy the stale session holding %s: %w", key, err)
	}
	return nil
}

// ensureSession makes the guard's session, or renews it when a third of
// its TTL has passed; a session Consul no longer knows is replaced.
func (g *GuardLease) ensureSession(ctx context.Context) error {
	s := g.c.api.Session()
	w := (&api.WriteOptions{}).WithContext(ctx)
	if g.session != "" && time.Since(g.sessionRenew) < g.sessionTTL/3 {
		return nil
	}
	if g.session != "" {
		entry, _, err := s.Renew(g.session, w)
		if err != nil {
			return fmt.Errorf("renew the guard's session: %w", err)
		}
		if entry != nil {
			g.sessionRenew = time.Now()
			return nil
		}
		g.session = ""
	}
	id, _, err := s.CreateNoChecks(&api.SessionEntry{Name: g.name, TTL: g.sessionTTL.String(),
		Behavior: api.SessionBehaviorRelease, LockDelay: time.Millisecond}, w)
	if err != nil {
		return fmt.Errorf("create the guard's session: %w", err)
	}
	g.session, g.sessionRenew = id, time.Now()
	return nil
}
