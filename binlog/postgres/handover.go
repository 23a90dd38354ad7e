package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/dbha/dbha/topology"
)

// Standby is what a hand-over needs of the replication controller. Every
// method is bounded by ctx.
type Standby interface {
	// Position returns what addr has replayed.
	Position(ctx context.Context, addr string) (topology.Position, error)
	// SetRestoreCommand sets addr's restore_command and reloads it;
	// ResetRestoreCommand sets it back to the default.
	SetRestoreCommand(ctx context.Context, addr, command string) error
	ResetRestoreCommand(ctx context.Context, addr string) error
	// WaitApplied returns once addr has replayed pos.
	WaitApplied(ctx context.Context, addr string, pos topology.Position) error
}

// Handover hands the WAL only dbha's store holds to a promotion's
// candidate: it is the PostgreSQL half of promote.Engine's
// ApplyFromStream. Standbys cannot take WAL from one another; a standby
// whose primary is gone tries restore_command for the WAL it lacks on its
// own, so the store's WAL is staged where restore_command reads it.
type Handover struct {
	Dir string // the cluster's store
	// RestoreCommand is the operator's restore_command, in which "{store}"
	// stands for the directory the WAL is staged in.
	RestoreCommand string
	Standby        Standby
}

// ApplyFromStream stages the WAL the store holds beyond addr's replay
// position in a fresh directory the database server can read, points
// addr's restore_command at it, waits until addr has replayed upto, and
// then removes both.
func (h Handover) ApplyFromStream(ctx context.Context, addr string, upto topology.Position) error {
	st, err := OpenStore(h.Dir)
	if err != nil {
		return fmt.Errorf("open dbha's WAL store: %w", err)
	}
	from, err := h.Standby.Position(ctx, addr)
	if err != nil {
		return err
	}
	staging, err := os.MkdirTemp("", "dbha-wal-")
	if err != nil {
		return fmt.Errorf("stage WAL for %s: %w", addr, err)
	}
	defer os.RemoveAll(staging)
	if err := os.Chmod(staging, 0o755); err != nil {
		return err
	}
	if _, err := st.Stage(staging, from); err != nil {
		return fmt.Errorf("stage WAL for %s: %w", addr, err)
	}
	if err := h.Standby.SetRestoreCommand(ctx, addr, strings.ReplaceAll(h.RestoreCommand, "{store}", staging)); err != nil {
		return err
	}
	defer h.Standby.ResetRestoreCommand(context.WithoutCancel(ctx), addr)
	return h.Standby.WaitApplied(ctx, addr, upto)
}
