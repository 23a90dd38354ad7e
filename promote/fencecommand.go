package promote

import (
	"context"
	"fmt"
	"time"

	"github.com/dbha/dbha/command"
)

// Fencer runs the operator's fence command (promotion.fence_command)
// against a failover's old primary. Fence returns nil once addr can no
// longer take writes (its machine stopped, its network cut...); an error
// means it may still. It is bounded by ctx and by its own timeout, and
// may be called concurrently for different clusters.
type Fencer interface {
	Fence(ctx context.Context, cluster, addr string) error
}

// DefaultFenceTimeout bounds a CommandFencer without a Timeout.
const DefaultFenceTimeout = 10 * time.Second

// CommandFencer is a Fencer that runs a command: "{instance}" in an
// argument is replaced by the old primary's host:port, and DBHA_CLUSTER
// and DBHA_INSTANCE are in its environment. Exit status 0 means fenced.
// Its output is kept, cut to a few KiB, in the error. Credentials are the
// command's own business: none is passed to it.
type CommandFencer struct {
	Argv    []string
	Timeout time.Duration
}

// Fence runs the command once.
func (c CommandFencer) Fence(ctx context.Context, cluster, addr string) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultFenceTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := command.Run(ctx, c.Argv, command.Options{
		Placeholders: map[string]string{"{instance}": addr},
		Env:          []string{"DBHA_CLUSTER=" + cluster, "DBHA_INSTANCE=" + addr},
	})
	if err != nil {
		return fmt.Errorf("fence command for %s (bounded by %v): %w", addr, timeout, err)
	}
	return nil
}
