package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/dbha/dbha/promote"
)

// Grant is the cluster's write grant, dbha/<cluster>/grant: the one
// instance that may be writable, or none. Only dbha managers write it, by
// check-and-set on its ModifyIndex; guards read it and make every renewal
// of their lease conditional on it (see package guard).
type Grant struct {
	// Instance may be writable; "" when none may (a revocation).
	Instance string `json:"instance"`
	// Epoch counts the grant's changes.
	Epoch uint64 `json:"epoch"`
	// TTL is the lease the manager waits out at least when it revokes.
	TTL string `json:"ttl,omitempty"`
	// Revoked is the instance the last revocation withdrew the grant from.
	Revoked string `json:"revoked,omitempty"`
	// At is the manager's wall clock when it wrote the grant; for people
	// only: no side reasons with another's wall clock.
	At time.Time `json:"at"`
}

// LeaseValue is the value of dbha/<cluster>/lease/<addr>, written by the
// instance's guard: locked by the guard's session while the guard holds
// the lease, unlocked with Fenced once the guard has made its server
// refuse writes.
type LeaseValue struct {
	Renewals uint64 `json:"renewals"`
	// TTL is the guard's lease: its server is fenced within TTL of the
	// guard's last successful renewal.
	TTL    string `json:"ttl"`
	Fenced bool   `json:"fenced"`
	// Guard names the guard (its host) for people.
	Guard string `json:"guard,omitempty"`
}

func grantKey(cluster string) string       { return Prefix(cluster) + "grant" }
func leaseKey(cluster, addr string) string { return Prefix(cluster) + "lease/" + addr }

// ErrGrantChanged: the grant changed between the read and the conditional
// write; read it again.
var ErrGrantChanged = errors.New("the grant changed meanwhile")

// ClockMargin stretches every wait a revocation makes for a guard's lease:
// dbha's clock and the guard's run at rates within 10% of each other.
const ClockMargin = 1.1

// revokeSlack is added to a revocation's wait beyond the stretched TTL.
const revokeSlack = 100 * time.Millisecond

// Leases is dbha's side of the guards' write leases (promote.Leases) over
// Consul. It is safe for concurrent use.
type Leases struct {
	c *Client
	// ttl is the shortest lease a revocation waits out, whatever a guard
	// says of its own.
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// seen is, per cluster and instance, the lease's latest ModifyIndex
	// that Watch saw and when it first saw it (this process's clock).
	seen map[string]map[string]sighting
}

// sighting is when Watch first saw a lease at a ModifyIndex.
type sighting struct {
	index uint64
	at    time.Time
}

var _ promote.Leases = (*Leases)(nil)

// Leases returns dbha's side of the write leases. A revocation waits out
// the longer of ttl and the TTL the instance's guard states in its lease
// (ttl may be 0: the guard's own is then used).
func (c *Client) Leases(ttl time.Duration) *Leases {
	return &Leases{c: c, ttl: ttl, now: time.Now, seen: map[string]map[string]sighting{}}
}

// Watch follows every lease of cluster (a blocking query on its prefix)
// until ctx ends, noting when each renewal was first seen: a renewal is
// committed before it is seen, and its guard sent it earlier still, so its
// server is fenced within the TTL of that sighting. Revoke then waits
// from the old primary's last renewal, seen before the failure, rather
// than from the revocation, seconds later: with a daemon that watches, a
// failover waits for a lease only as long as the lease outlives the
// failure's detection.
func (l *Leases) Watch(ctx context.Context, cluster string) {
	prefix := Prefix(cluster) + "lease/"
	var index uint64
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx)
		pairs, meta, err := l.c.kv.List(prefix, q)
		if err != nil {
			index = 0
			sleep(ctx, time.Second)
			continue
		}
		now := time.Now()
		l.mu.Lock()
		seen := l.seen[cluster]
		if seen == nil {
			seen = map[string]sighting{}
			l.seen[cluster] = seen
		}
		for _, p := range pairs {
			addr := strings.TrimPrefix(p.Key, prefix)
			if s, ok := seen[addr]; !ok || s.index != p.ModifyIndex {
				seen[addr] = sighting{index: p.ModifyIndex, at: now}
			}
		}
		l.mu.Unlock()
		if meta.LastIndex < index {
			index = 0 // the index went back (a Consul restore): start over
		} else {
			index = meta.LastIndex
		}
	}
}

// sightedAt is when Watch first saw addr's lease at index; ok false when
// it did not see that index.
func (l *Leases) sightedAt(cluster, addr string, index uint64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seen[cluster][addr]
	return s.at, ok && s.index == index
}

// Revoke stores a revocation of addr's grant (unless the grant already
// names another instance, which means addr lost it earlier), then waits
// until addr's guard confirms its server refuses writes (a release with
// fenced=true written after the grant) or until the lease's TTL, stretched
// by ClockMargin, has passed on this process's monotonic clock since the
// revocation's answer arrived. Guarded is false when addr's guard never
// held a lease: no guard protects the cluster from addr, and Revoke returns
// at once. An error after the revocation was stored means the wait did not
// complete (ctx ended, or the lease could never be read): the caller must
// not take addr as fenced.
func (l *Leases) Revoke(ctx context.Context, cluster, addr string) (promote.Revocation, error) {
	var rev promote.Revocation
	at, _, err := l.c.changeGrant(ctx, cluster, func(g Grant, exists bool) (Grant, bool) {
		if exists && g.Instance != "" && g.Instance != addr {
			return g, false // addr lost the grant earlier; do not revoke another's
		}
		return Grant{Instance: "", Epoch: g.Epoch + 1, TTL: l.ttlString(), Revoked: addr, At: l.now().UTC()}, true
	})
	if err != nil {
		return rev, fmt.Errorf("revoke the write grant of %s: %w", addr, err)
	}
	// The revocation committed before its answer arrived: every renewal
	// the guard sent afterwards fails its check, and every one it sent
	// before ends within its TTL of the guard's clock.
	since := time.Now()
	return l.await(ctx, cluster, addr, at, since)
}

// anchor is what a revocation's wait runs from: since (its own commit),
// or earlier, when Watch saw the lease's final renewal (the value read
// after the revocation, which no renewal can follow) before it.
func (l *Leases) anchor(cluster, addr string, final uint64, since time.Time) time.Time {
	if at, ok := l.sightedAt(cluster, addr, final); ok && at.Before(since) {
		return at
	}
	return since
}

// await waits for addr's guard to release its lease after the grant's
// ModifyIndex at, or for the lease's TTL (stretched) to pass since since.
func (l *Leases) await(ctx context.Context, cluster, addr string, at uint64, since time.Time) (promote.Revocation, error) {
	key := leaseKey(cluster, addr)
	ttl := l.ttl
	var (
		index   uint64
		read    bool
		lastErr error
		from    = since // the wait's anchor (see anchor)
	)
	for {
		deadline := from.Add(time.Duration(float64(ttl)*ClockMargin) + revokeSlack)
		wait := time.Until(deadline)
		if read && wait <= 0 {
			return promote.Revocation{Guarded: true, Waited: time.Since(since), TTL: ttl}, nil
		}
		if err := ctx.Err(); err != nil {
			return promote.Revocation{Guarded: read, TTL: ttl}, fmt.Errorf("wait for the lease of %s: %w", addr, err)
		}
		if !read && wait <= 0 {
			return promote.Revocation{TTL: ttl}, fmt.Errorf("wait for the lease of %s: it could not be read: %w", addr, lastErr)
		}
		q := &api.QueryOptions{RequireConsistent: true}
		if read {
			q.WaitIndex, q.WaitTime = index, wait
		}
		qctx, cancel := context.WithDeadline(ctx, deadline.Add(50*time.Millisecond))
		pair, meta, err := l.c.kv.Get(key, q.WithContext(qctx))
		cancel()
		if err != nil {
			lastErr = err
			if !read {
				sleep(ctx, 50*time.Millisecond)
			}
			continue // the wait goes on without Consul: it is on this clock
		}
		if pair == nil && !read {
			return promote.Revocation{Guarded: false}, nil
		}
		if !read && pair != nil {
			from = l.anchor(cluster, addr, pair.ModifyIndex, since)
		}
		read = true
		index = meta.LastIndex
		if pair == nil {
			continue
		}
		var v LeaseValue
		if json.Unmarshal(pair.Value, &v) == nil {
			if d, err := time.ParseDuration(v.TTL); err == nil && d > ttl {
				ttl = d
			}
			if pair.Session == "" && v.Fenced && pair.ModifyIndex > at {
				return promote.Revocation{Guarded: true, Released: true, Waited: time.Since(since), TTL: ttl}, nil
			}
		}
	}
}

// Grant gives addr the cluster's write grant; nothing is written when the
// grant names addr already.
func (l *Leases) Grant(ctx context.Context, cluster, addr string) error {
	_, _, err := l.c.changeGrant(ctx, cluster, func(g Grant, exists bool) (Grant, bool) {
		if exists && g.Instance == addr {
			return g, false
		}
		return Grant{Instance: addr, Epoch: g.Epoch + 1, TTL: l.ttlString(), At: l.now().UTC()}, true
	})
	if err != nil {
		return fmt.Errorf("grant %s the right to be writable: %w", addr, err)
	}
	return nil
}

// Holder is the instance the cluster's grant names ("" once revoked);
// stored is false when no grant was ever stored.
func (l *Leases) Holder(ctx context.Context, cluster string) (string, bool, error) {
	g, _, stored, err := l.c.ReadGrant(ctx, cluster)
	return g.Instance, stored, err
}

func (l *Leases) ttlString() string {
	if l.ttl <= 0 {
		return ""
	}
	return l.ttl.String()
}

// ReadGrant returns the cluster's grant, its ModifyIndex, and ok=false
// when none was ever stored.
func (c *Client) ReadGrant(ctx context.Context, cluster string) (g Grant, index uint64, ok bool, err error) {
	pair, _, err := c.kv.Get(grantKey(cluster), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return g, 0, false, fmt.Errorf("read %s: %w", grantKey(cluster), err)
	}
	if pair == nil {
		return g, 0, false, nil
	}
	if err := json.Unmarshal(pair.Value, &g); err != nil {
		return g, 0, false, fmt.Errorf("read %s: %w", grantKey(cluster), err)
	}
	return g, pair.ModifyIndex, true, nil
}

// changeGrant applies change to the grant with a check-and-set, retrying
// (a few times) when another manager wrote it meanwhile. It returns the
// grant's ModifyIndex after the change (the current one when change wrote
// nothing) and whether it wrote.
func (c *Client) changeGrant(ctx context.Context, cluster string, change func(g Grant, exists bool) (Grant, bool)) (uint64, bool, error) {
	const attempts = 5
	for range attempts {
		g, index, exists, err := c.ReadGrant(ctx, cluster)
		if err != nil {
			return 0, false, err
		}
		next, write := change(g, exists)
		if !write {
			return index, false, nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return 0, false, err
		}
		ok, resp, _, err := c.api.Txn().Txn(api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: grantKey(cluster), Value: b, Index: index}},
		}, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return 0, false, fmt.Errorf("write %s: %w", grantKey(cluster), err)
		}
		if ok && len(resp.Results) == 1 && resp.Results[0].KV != nil {
			return resp.Results[0].KV.ModifyIndex, true, nil
		}
	}
	return 0, false, fmt.Errorf("write %s: %w (%d attempts)", grantKey(cluster), ErrGrantChanged, attempts)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ReadLease returns the value of addr's lease and the session holding it
// ("" when the guard released it); ok=false when no guard ever held it.
func (c *Client) ReadLease(ctx context.Context, cluster, addr string) (v LeaseValue, session string, ok bool, err error) {
	key := leaseKey(cluster, addr)
	pair, _, err := c.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return v, "", false, fmt.Errorf("read %s: %w", key, err)
	}
	if pair == nil {
		return v, "", false, nil
	}
	if err := json.Unmarshal(pair.Value, &v); err != nil {
		return v, "", false, fmt.Errorf("read %s: %w", key, err)
	}
	return v, pair.Session, true, nil
}
