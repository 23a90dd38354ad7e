package checks

import (
	"errors"
	"fmt"
	"time"
)

// Policy holds the thresholds analysis applies. The defaults confirm a
// killed primary within about a second and a hung one within about five on
// a local network (see DefaultPolicy).
type Policy struct {
	// Failures is how many consecutive failed probes of the primary make
	// dbha's own path vote "dead".
	Failures int `mapstructure:"failures" yaml:"failures,omitempty" json:"failures"`
	// LinkStale: a replica whose link to the primary is up but has heard
	// nothing (no event, no heartbeat) for this long no longer vouches for
	// the primary (it votes "unknown" until its link drops). Keep it above
	// the MariaDB heartbeat period (slave_net_timeout/2).
	LinkStale time.Duration `mapstructure:"link_stale" yaml:"link_stale,omitempty" json:"link_stale"`
	// StreamStale: dbha's change stream silent this long votes "dead".
	StreamStale time.Duration `mapstructure:"stream_stale" yaml:"stream_stale,omitempty" json:"stream_stale"`
	// HungAfter: the primary accepting TCP but not answering SQL for this
	// long is PrimaryHung; HungDeadAfter: hung this long, it votes "dead".
	HungAfter     time.Duration `mapstructure:"hung_after" yaml:"hung_after,omitempty" json:"hung_after"`
	HungDeadAfter time.Duration `mapstructure:"hung_dead_after" yaml:"hung_dead_after,omitempty" json:"hung_dead_after"`
	// PeerFresh: peer observations older than this are not evidence.
	PeerFresh time.Duration `mapstructure:"peer_fresh" yaml:"peer_fresh,omitempty" json:"peer_fresh"`
	// Lag limits for ReplicaLagging; zero disables a limit.
	LagSeconds      float64 `mapstructure:"lag_seconds" yaml:"lag_seconds,omitempty" json:"lag_seconds"`
	LagTransactions int64   `mapstructure:"lag_transactions" yaml:"lag_transactions,omitempty" json:"lag_transactions"`
	LagBytes        int64   `mapstructure:"lag_bytes" yaml:"lag_bytes,omitempty" json:"lag_bytes"`
}

// DefaultPolicy is tuned for a probe interval of 250 ms: two failed probes
// (about half a second) make dbha's path vote dead, and a killed primary's
// replicas lose their links at once.
func DefaultPolicy() Policy {
	return Policy{
		Failures:        2,
		LinkStale:       3 * time.Second,
		StreamStale:     3 * time.Second,
		HungAfter:       time.Second,
		HungDeadAfter:   3 * time.Second,
		PeerFresh:       10 * time.Second,
		LagSeconds:      30,
		LagTransactions: 1000,
		LagBytes:        64 << 20,
	}
}

// Validate checks a policy's thresholds.
func (p Policy) Validate() error {
	var errs []error
	if p.Failures < 1 {
		errs = append(errs, fmt.Errorf("failures must be at least 1, got %d", p.Failures))
	}
	for name, d := range map[string]time.Duration{"link_stale": p.LinkStale, "stream_stale": p.StreamStale,
		"hung_after": p.HungAfter, "hung_dead_after": p.HungDeadAfter, "peer_fresh": p.PeerFresh} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration, got %v", name, d))
		}
	}
	if p.HungDeadAfter < p.HungAfter {
		errs = append(errs, fmt.Errorf("hung_dead_after (%v) must not be shorter than hung_after (%v)", p.HungDeadAfter, p.HungAfter))
	}
	return errors.Join(errs...)
}
