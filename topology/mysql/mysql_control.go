package mysql

import (
	"context"
	"fmt"

	"github.com/dbha/dbha/topology"
)

// mysqlControl is MySQL's replication control. MySQL differs from MariaDB in
// every statement a promotion needs (GTID sets in gtid_executed,
// WAIT_FOR_EXECUTED_GTID_SET, SOURCE_AUTO_POSITION, super_read_only,
// mysqlbinlog): until each is written and tested against a MySQL server,
// it refuses with ErrUnsupported rather than send MariaDB's SQL.
type mysqlControl struct{}

func unsupported(what, addr string) error {
	return fmt.Errorf("%s on %s: %w", what, addr, ErrUnsupported)
}

func (mysqlControl) StopFollowing(_ context.Context, addr string) error {
	return unsupported("stop following", addr)
}

func (mysqlControl) WaitApplied(_ context.Context, addr string, _ topology.Position) error {
	return unsupported("wait until applied", addr)
}

func (mysqlControl) CatchUpFrom(_ context.Context, addr, _ string, _ topology.Position) error {
	return unsupported("catch up", addr)
}

func (mysqlControl) ApplyBinlog(_ context.Context, addr string, _ []string, _, _ topology.Position) error {
	return unsupported("replay binlog", addr)
}

func (mysqlControl) Promote(_ context.Context, addr string) error {
	return unsupported("promote", addr)
}

func (mysqlControl) Repoint(_ context.Context, addr, _ string) error {
	return unsupported("repoint", addr)
}

func (mysqlControl) Attach(_ context.Context, addr, _ string, _ topology.Position) error {
	return unsupported("attach", addr)
}

func (mysqlControl) Fence(_ context.Context, addr string) error {
	return unsupported("fence", addr)
}

func (mysqlControl) Unfence(_ context.Context, addr string) error {
	return unsupported("unfence", addr)
}

func (mysqlControl) Position(_ context.Context, addr string) (topology.Position, error) {
	return topology.Position{}, unsupported("read the binlog position", addr)
}

func (mysqlControl) Rewind(_ context.Context, addr, _, _ string) (topology.Rewound, error) {
	return topology.Rewound{}, unsupported("rewind", addr)
}
