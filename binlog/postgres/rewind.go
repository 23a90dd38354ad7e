package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Rejoiner makes a former primary a standby of the primary. PostgreSQL's
// controller does it with the operator's rejoin command, which runs
// pg_rewind on the former primary's host: the WAL the former primary holds
// beyond the fork is gone once it returns nil. Bounded by ctx.
type Rejoiner interface {
	Rejoin(ctx context.Context, addr, primary string) error
}

// Rewinder rewinds a former PostgreSQL primary without losing track of what
// pg_rewind discards: it first saves, over the replication protocol, the
// WAL the former primary wrote after the new primary's timeline forked off
// (acknowledged commits nobody else received), then has Rejoiner rejoin
// it. It is the PostgreSQL half of promote.Rewinder. Its methods may be
// called concurrently for different instances.
type Rewinder struct {
	// User and Password log in over replication connections to both
	// servers (the stream's replication account). The password is set on
	// the parsed configuration only: never in an argv, a connection string,
	// a log or an error.
	User, Password string
	TLS            *tlsconfig.Settings // nil: clear text
	// MaxBytes bounds the WAL one save keeps (DefaultMaxSave when 0): a
	// former primary holding more is refused, with ErrTooMuchToSave, and
	// neither saved nor rewound.
	MaxBytes int64
	Rejoiner Rejoiner
	Now      func() time.Time // time.Now when nil
}

func (r Rewinder) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

func (r Rewinder) maxBytes() int64 {
	if r.MaxBytes <= 0 {
		return DefaultMaxSave
	}
	return r.MaxBytes
}

// Save writes the WAL the former primary addr holds beyond the history of
// primary into a new directory under saveDir (created 0700 if needed):
// segment files that pg_waldump reads, 0600, from the start of the fork's
// segment up to addr's flush position, and rewind.json, which says the
// range and the pg_waldump command that lists it. It changes nothing on
// either server. A former primary that holds nothing beyond the fork gives
// a Saved with no Dir. An error leaves no directory behind.
func (r Rewinder) Save(ctx context.Context, addr, primary, saveDir string) (Saved, error) {
	return r.save(ctx, addr, primary, saveDir)
}

// Rewind saves what addr holds beyond primary (Save), then rejoins it. The
// result names the directory, addr's position before the rewind, and the
// bytes of WAL saved. When the rejoin fails the save stays, and the error
// names it.
func (r Rewinder) Rewind(ctx context.Context, addr, primary, saveDir string) (topology.Rewound, error) {
	saved, err := r.Save(ctx, addr, primary, saveDir)
	if err != nil {
		return topology.Rewound{}, fmt.Errorf("save the WAL %s holds beyond %s before it is rewound: %w", addr, primary, err)
	}
	if r.Rejoiner == nil {
		return topology.Rewound{}, fmt.Errorf("rejoin %s: no Rejoiner", addr)
	}
	if err := r.Rejoiner.Rejoin(ctx, addr, primary); err != nil {
		if saved.Dir != "" {
			return topology.Rewound{}, fmt.Errorf("rejoin %s to %s (the WAL it held beyond %s is saved in %s): %w", addr, primary, saved.Fork, saved.Dir, err)
		}
		return topology.Rewound{}, fmt.Errorf("rejoin %s to %s: %w", addr, primary, err)
	}
	return topology.Rewound{Instance: addr, File: saved.Dir, Tail: saved.End, Bytes: saved.Bytes, Undone: saved.Dir != ""}, nil
}
