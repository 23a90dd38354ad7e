package mysql

import "context"

// Rejoin makes a fenced former primary, which holds nothing primary lacks,
// replicate from primary: with GTID auto-positioning that is a repoint.
func (c *Controller) Rejoin(ctx context.Context, addr, primary string) error {
	return c.Repoint(ctx, addr, primary)
}
