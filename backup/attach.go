package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/dbha/dbha/topology"
)

// Replication is the replication control a reseed attaches the rebuilt
// instance through; the controllers of topology/mysql and
// topology/postgres satisfy it. An error may only mean that the instance
// does not accept clients yet: attach tries again for a while.
type Replication interface {
	// Attach makes addr, restored from a backup at pos and started,
	// replicate from source.
	Attach(ctx context.Context, addr, source string, pos topology.Position) error
}

// attach is the last step of a reseed: it makes the started instance
// replicate from the primary at the backup's position and waits, bounded,
// until discover shows it doing so.
func attach(ctx context.Context, c ReseedChoice, r Replication, discover func(context.Context) (topology.Snapshot, error)) error {
	// The start command may return before the server accepts clients.
	err := retryFor(ctx, time.Minute, func() error {
		return r.Attach(ctx, c.Instance, c.Primary, c.Backup.Position)
	})
	if err != nil {
		return err
	}
	return retryFor(ctx, 2*time.Minute, func() error {
		s, err := discover(ctx)
		if err != nil {
			return err
		}
		in, _ := s.Instance(c.Instance)
		rep := in.Replication
		if !in.Reachable || rep == nil || rep.Source != c.Primary || !rep.IORunning || !rep.SQLRunning {
			return fmt.Errorf("%s does not replicate from %s yet: %s", c.Instance, c.Primary, describeReplication(in))
		}
		return nil
	})
}

func describeReplication(in topology.Instance) string {
	if !in.Reachable {
		return "unreachable: " + in.Error
	}
	if r := in.Replication; r != nil {
		return fmt.Sprintf("source %s, receiving %s %s, applying %s %s", r.Source, r.IOState, r.IOError, r.SQLState, r.SQLError)
	}
	return "not a replica"
}

// retryFor calls fn every 500 ms until it succeeds or limit passes.
func retryFor(ctx context.Context, limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
