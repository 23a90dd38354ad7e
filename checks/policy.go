package checks

import (
	"errors"
	"fmt"
	"time"
)

// Policy holds the thresholds analysis applies. The defaults confirm a
// killed primary within about a second, and a vanished or hung one within
// about two on a local network (see DefaultPolicy).
type Policy struct {
	// Failures is how many consecutive failed probes of the primary make
	// dbha's own path vote "dead".
	Failures int `mapstructure:"failures" yaml:"failures,omitempty" json:"failures"`
	// Heartbeat is the period at which a primary sends something to an
	// idle replica, which dbha sets on every replica it points at a
	// primary (MariaDB MASTER_HEARTBEAT_PERIOD). PostgreSQL's period is the
	// servers' own setting (half of wal_sender_timeout): see the README.
	Heartbeat time.Duration `mapstructure:"heartbeat" yaml:"heartbeat,omitempty" json:"heartbeat"`
	// LinkDeadAfter: a replica whose link to the primary is up and has
	// heard something (an event, a heartbeat, a keepalive) within this long
	// vouches for the primary. Silent longer, it votes "dead" when its link
	// promises a heartbeat period and has missed three of them
	// (LinkView.Heartbeat), and "unknown" when it promises none. It must
	// exceed three Heartbeat periods.
	LinkDeadAfter time.Duration `mapstructure:"link_dead_after" yaml:"link_dead_after,omitempty" json:"link_dead_after"`
	// StreamStale: dbha's change stream silent this long votes "dead";
	// heard within it, it vouches for the primary. The MariaDB stream asks
	// for a heartbeat every Heartbeat; the PostgreSQL stream hears the
	// primary's keepalives. It must exceed three Heartbeat periods.
	StreamStale time.Duration `mapstructure:"stream_stale" yaml:"stream_stale,omitempty" json:"stream_stale"`
	// HungAfter: the primary accepting TCP but not answering SQL for this
	// long is PrimaryHung; HungDeadAfter: hung this long, dbha's path votes
	// "dead" on its own. Sooner, a hung primary is dead only when every
	// replica's link to it has gone silent or dropped (see Analyze).
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
// (about half a second) make dbha's path vote dead; a killed primary's
// replicas lose their links at once, and a vanished one's hear nothing for
// a second, four heartbeats of 250 ms.
func DefaultPolicy() Policy {
	return Policy{
		Failures:        2,
		Heartbeat:       250 * time.Millisecond,
		LinkDeadAfter:   time.Second,
		StreamStale:     time.Second,
		HungAfter:       time.Second,
		HungDeadAfter:   3 * time.Second,
		PeerFresh:       10 * time.Second,
		LagSeconds:      30,
		LagTransactions: 1000,
		LagBytes:        64 << 20,
	}
}

// MissedHeartbeats is how many heartbeat periods a link must miss before
// its silence is evidence that the primary is gone.
const MissedHeartbeats = 3

// Validate checks a policy's thresholds.
func (p Policy) Validate() error {
	var errs []error
	if p.Failures < 1 {
		errs = append(errs, fmt.Errorf("failures must be at least 1, got %d", p.Failures))
	}
	for name, d := range map[string]time.Duration{"heartbeat": p.Heartbeat, "link_dead_after": p.LinkDeadAfter, "stream_stale": p.StreamStale,
		"hung_after": p.HungAfter, "hung_dead_after": p.HungDeadAfter, "peer_fresh": p.PeerFresh} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration, got %v", name, d))
		}
	}
	if p.Heartbeat > 0 && p.Heartbeat%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("heartbeat must be a whole number of milliseconds (MariaDB's resolution), got %v", p.Heartbeat))
	}
	for _, s := range []struct {
		name string
		d    time.Duration
	}{{"link_dead_after", p.LinkDeadAfter}, {"stream_stale", p.StreamStale}} {
		if p.Heartbeat > 0 && s.d > 0 && s.d <= MissedHeartbeats*p.Heartbeat {
			errs = append(errs, fmt.Errorf("%s (%v) must exceed %d heartbeat periods (%v): a live primary may be silent that long",
				s.name, s.d, MissedHeartbeats, MissedHeartbeats*p.Heartbeat))
		}
	}
	if p.HungDeadAfter < p.HungAfter {
		errs = append(errs, fmt.Errorf("hung_dead_after (%v) must not be shorter than hung_after (%v)", p.HungDeadAfter, p.HungAfter))
	}
	return errors.Join(errs...)
}
