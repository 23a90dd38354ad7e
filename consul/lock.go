package consul

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// Lock errors callers branch on.
var (
	// ErrLocked: another manager holds the cluster's lock.
	ErrLocked = errors.New("another dbha manager holds the cluster's lock")
	// ErrNotLeader: this manager held the lock and lost it (session expired
	// or invalidated); it must stop acting at once.
	ErrNotLeader = errors.New("this dbha manager no longer holds the cluster's lock")
)

// Lease is a held cluster lock: dbha/<cluster>/leader, tied to a Consul
// session. Sessions prefer liveness over safety, so the holder re-checks
// the lease before every irreversible step and stops when it is lost.
type Lease struct {
	lock *api.Lock
	lost <-chan struct{}
	// Session identifies the lease (a fencing token in audit records).
	Session string
}

func leaderKey(cluster string) string { return Prefix(cluster) + "leader" }

// AcquireLock takes the cluster's lock for owner, or returns ErrLocked at
// once when another manager holds it. ttl bounds how long a crashed holder
// keeps it (Consul may take up to twice that).
func (c *Client) AcquireLock(ctx context.Context, cluster, owner string, ttl time.Duration) (*Lease, error) {
	l, err := c.api.LockOpts(&api.LockOptions{
		Key:          leaderKey(cluster),
		Value:        []byte(owner),
		SessionName:  "dbha " + owner + " " + cluster,
		SessionTTL:   ttl.String(),
		LockTryOnce:  true,
		LockWaitTime: 200 * time.Millisecond,
		// A lock released by a crashed holder is free again after this;
		// the default (15 s) would stall a resumed recovery.
		LockDelay: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", leaderKey(cluster), err)
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			close(stop)
		case <-stop:
		}
	}()
	lost, err := l.Lock(stop)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", leaderKey(cluster), err)
	}
	if lost == nil {
		return nil, fmt.Errorf("lock %s: %w", leaderKey(cluster), ErrLocked)
	}
	pair, _, err := c.kv.Get(leaderKey(cluster), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	lease := &Lease{lock: l, lost: lost}
	if err == nil && pair != nil {
		lease.Session = pair.Session
	}
	return lease, nil
}

// Check returns ErrNotLeader once the lease is lost.
func (l *Lease) Check() error {
	select {
	case <-l.lost:
		return ErrNotLeader
	default:
		return nil
	}
}

// Release gives the lock up and destroys its session.
func (l *Lease) Release() error {
	if err := l.lock.Unlock(); err != nil && !errors.Is(err, api.ErrLockNotHeld) {
		return fmt.Errorf("release lock: %w", err)
	}
	// Destroy removes the key unless another manager holds it already.
	if err := l.lock.Destroy(); err != nil && !errors.Is(err, api.ErrLockInUse) {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}
