package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbha/dbha/command"
	"github.com/dbha/dbha/topology"
)

// CatchUpFrom always fails: PostgreSQL standbys cannot take WAL from one
// another (the WAL only dbha holds reaches a candidate through
// restore_command instead).
func (c *Controller) CatchUpFrom(_ context.Context, addr, source string, _ topology.Position) error {
	return fmt.Errorf("catch %s up from %s: PostgreSQL standbys cannot take WAL from one another", addr, source)
}

// ErrNoRejoinCommand: a former primary needs the operator's rejoin command
// (pg_rewind runs on its host), and none is configured.
var ErrNoRejoinCommand = errors.New("no promotion.rejoin_command is configured: rewind it by hand (pg_rewind) and start it as a standby")

// SetRejoinCommand sets the operator's command that rewinds a former
// primary and starts it as a standby; "{instance}" and "{primary}" in it
// stand for the two addresses.
func (c *Controller) SetRejoinCommand(argv []string) { c.rejoinCommand = argv }

// Rejoin runs the rejoin command for addr, bounded by two minutes: a
// former primary must be rewound on its own host before it can follow
// primary, which dbha cannot do over SQL.
func (c *Controller) Rejoin(ctx context.Context, addr, primary string) error {
	if len(c.rejoinCommand) == 0 {
		return ErrNoRejoinCommand
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := command.Run(ctx, c.rejoinCommand, command.Options{Placeholders: map[string]string{"{instance}": addr, "{primary}": primary}})
	if err != nil {
		return fmt.Errorf("rejoin_command: %w", err)
	}
	return nil
}
