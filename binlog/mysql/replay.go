package mysql

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/dbha/dbha/topology"
)

// Replica is what a replay needs of the replication controller. Both
// methods are bounded by ctx; an error means nothing may be assumed
// applied.
type Replica interface {
	// Position returns every GTID addr has executed.
	Position(ctx context.Context, addr string) (topology.Position, error)
	// ApplyBinlog replays on addr the transactions of files after after,
	// up to upto, keeping their GTIDs.
	ApplyBinlog(ctx context.Context, addr string, files []string, after, upto topology.Position) error
}

// Replay hands the events only dbha's store holds to a promotion's
// candidate: it is the MariaDB half of promote.Engine's ApplyFromStream.
type Replay struct {
	Dir     string // the cluster's store
	Replica Replica
}

// ApplyFromStream replays on addr what the store holds beyond addr's
// position, up to upto. It is idempotent: a repeated call starts from what
// addr holds by then.
func (r Replay) ApplyFromStream(ctx context.Context, addr string, upto topology.Position) error {
	st, err := OpenStore(r.Dir)
	if err != nil {
		return fmt.Errorf("open dbha's binlog store: %w", err)
	}
	var files []string
	for _, f := range st.Files() {
		files = append(files, filepath.Join(r.Dir, f))
	}
	after, err := r.Replica.Position(ctx, addr)
	if err != nil {
		return err
	}
	return r.Replica.ApplyBinlog(ctx, addr, files, after, upto)
}
