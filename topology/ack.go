package topology

import (
	"fmt"
	"strings"
)

// Acknowledgement is how an instance, as a primary, acknowledges commits:
// the server settings that decide whether a commit returns to its client
// before another server holds it. Discovery reads them on every instance
// (a replica carries the settings it will have once promoted); nil when
// the engine adapter does not read them (MySQL).
type Acknowledgement struct {
	// MariaDB semi-sync: rpl_semi_sync_master_enabled, _wait_no_slave,
	// _timeout (ms) and _wait_point (AFTER_SYNC or AFTER_COMMIT).
	SemiSync      bool   `json:"semi_sync,omitempty"`
	WaitNoReplica bool   `json:"wait_no_replica,omitempty"`
	TimeoutMS     uint64 `json:"timeout_ms,omitempty"`
	WaitPoint     string `json:"wait_point,omitempty"`
	// PostgreSQL: synchronous_standby_names and synchronous_commit.
	StandbyNames      string `json:"synchronous_standby_names,omitempty"`
	SynchronousCommit string `json:"synchronous_commit,omitempty"`
}

// NoFallbackTimeoutMS is the smallest rpl_semi_sync_master_timeout that
// counts as "never falls back": 2^32-1 ms (49.7 days), the largest value
// where the server's ulong is 32 bits. A 64-bit MariaDB accepts up to
// 2^64-1 (what `dbha lab up --lossless` sets). Any smaller timeout is a
// deadline after which an isolated primary commits alone.
const NoFallbackTimeoutMS uint64 = 1<<32 - 1

// Lossless reports whether a primary with these settings cannot
// acknowledge a commit that no other server holds: it blocks its
// clients' commits while no acknowledger is connected, instead of falling
// back to asynchronous commits. The reason says what is missing, or what
// holds. It is pure: it judges the settings, not who is connected.
//
// MariaDB: semi-sync on, wait_no_slave ON (no fallback when the last
// semi-sync replica disconnects), timeout ≥ NoFallbackTimeoutMS (no
// fallback when none answers), wait point AFTER_SYNC (a commit is not
// visible to anyone before it is acknowledged). PostgreSQL: a non-empty
// synchronous_standby_names and synchronous_commit on, remote_write or
// remote_apply (local and off do not wait).
func (a *Acknowledgement) Lossless(e Engine) (bool, string) {
	if a == nil {
		return false, "its commit settings were not read while it answered"
	}
	switch e {
	case MariaDB:
		var missing []string
		if !a.SemiSync {
			missing = append(missing, "rpl_semi_sync_master_enabled=OFF")
		}
		if !a.WaitNoReplica {
			missing = append(missing, "rpl_semi_sync_master_wait_no_slave=OFF (commits alone once no semi-sync replica is connected)")
		}
		if a.TimeoutMS < NoFallbackTimeoutMS {
			missing = append(missing, fmt.Sprintf("rpl_semi_sync_master_timeout=%d ms (commits alone after it; use %d or more)", a.TimeoutMS, NoFallbackTimeoutMS))
		}
		if !strings.EqualFold(a.WaitPoint, "AFTER_SYNC") {
			missing = append(missing, fmt.Sprintf("rpl_semi_sync_master_wait_point=%s (use AFTER_SYNC)", orUnset(a.WaitPoint)))
		}
		if len(missing) > 0 {
			return false, "semi-sync falls back: " + strings.Join(missing, ", ")
		}
		return true, fmt.Sprintf("semi-sync without fallback (wait_no_slave=ON, timeout %d ms, AFTER_SYNC)", a.TimeoutMS)
	case Postgres:
		if strings.TrimSpace(a.StandbyNames) == "" {
			return false, "synchronous_standby_names is empty: commits do not wait for a standby"
		}
		switch strings.ToLower(a.SynchronousCommit) {
		case "on", "remote_write", "remote_apply":
		default:
			return false, fmt.Sprintf("synchronous_commit=%s: commits do not wait for a standby", orUnset(a.SynchronousCommit))
		}
		return true, fmt.Sprintf("commits wait for %s (synchronous_commit=%s)", a.StandbyNames, a.SynchronousCommit)
	}
	return false, fmt.Sprintf("%s: dbha does not judge its commit settings", e)
}

func orUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}
