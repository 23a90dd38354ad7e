package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/tlsconfig"
)

// Application names dbha reports to the primary. The operator puts
// SyncApplicationName in synchronous_standby_names to make commits wait for
// dbha; a stream that is not synchronous reports AsyncApplicationName, which
// such a list does not name (only "*" would match it).
const (
	SyncApplicationName  = "dbha"
	AsyncApplicationName = "dbha_async"
)

// Defaults.
const (
	DefaultSlot           = "dbha"
	DefaultStatusInterval = time.Second
	DefaultFollowInterval = 5 * time.Second
)

// Config configures a Stream.
type Config struct {
	Cluster string
	// Dir is the store directory, binlog.Dir(state_dir, cluster). WAL goes
	// in Dir/wal; see doc.go for the rest.
	Dir string
	// User and Password log in to the primary; the role needs LOGIN
	// REPLICATION. The password is never logged, put in an error, an argv
	// or a connection string.
	User     string
	Password string
	// TLS encrypts every connection to the servers (nil: clear text).
	TLS *tlsconfig.Settings
	// Slot is dbha's physical replication slot (DefaultSlot when empty),
	// created on each primary the stream follows.
	Slot string
	// Synchronous: report application_name SyncApplicationName, so that a
	// primary naming it in synchronous_standby_names waits for dbha, and
	// fsync and acknowledge as soon as WAL arrives. Otherwise dbha reports
	// AsyncApplicationName and fsyncs once per StatusInterval.
	Synchronous bool
	// StatusInterval is how often dbha sends the primary a status update
	// (also whenever the primary asks) and, when not synchronous, fsyncs.
	StatusInterval time.Duration
	// FollowInterval is how often Primary is asked while connected, so that
	// the stream follows a failover or switchover.
	FollowInterval time.Duration
	Primary        binlog.PrimaryFunc
	Retention      binlog.Retention
	// KeepFor, if set, returns the positions of the standbys (their received
	// or replayed LSN, as the caller prefers; see binlog.KeepFunc):
	// retention never deletes a segment holding WAL at or after the lowest
	// of them. Without KeepFor only Retention's age and size bound the store.
	KeepFor binlog.KeepFunc
	// Hold, when set, lets a recovery cut the stream from the primary it
	// replaces (see binlog.Hold); nil: nothing cuts it.
	Hold   *binlog.Hold
	Logger *slog.Logger
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// withDefaults fills in defaults and checks what New needs.
func (c Config) withDefaults() (Config, error) {
	if c.Slot == "" {
		c.Slot = DefaultSlot
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.FollowInterval <= 0 {
		c.FollowInterval = DefaultFollowInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("no store directory"))
	}
	if c.User == "" {
		errs = append(errs, errors.New("no replication user"))
	}
	if c.Primary == nil {
		errs = append(errs, errors.New("no Primary function"))
	}
	if !slotName.MatchString(c.Slot) {
		errs = append(errs, fmt.Errorf("slot %q: a slot name is lower-case letters, digits and underscores, at most 63", c.Slot))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("WAL stream for cluster %q: %w", c.Cluster, err)
	}
	return c, nil
}

func (c Config) applicationName() string {
	if c.Synchronous {
		return SyncApplicationName
	}
	return AsyncApplicationName
}
