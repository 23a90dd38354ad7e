package daemon

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/checks"
)

// CatalogWatch keeps a recent reading of one cluster's backup catalog for
// the monitor, whose analysis turns a backup that no longer verifies into
// a finding. Create it with NewCatalogWatch; Run reads the catalog every
// Every, Refresh at once (after a scheduled run); View may be called
// concurrently with both.
type CatalogWatch struct {
	list  func(ctx context.Context) ([]backup.Entry, error)
	every time.Duration
	log   *slog.Logger

	mu     sync.Mutex
	view   *checks.BackupsView
	failed bool // the last reading failed (logged once until one succeeds)
}

// NewCatalogWatch watches the catalog that list reads, every every
// (default a minute).
func NewCatalogWatch(list func(ctx context.Context) ([]backup.Entry, error), every time.Duration, log *slog.Logger) *CatalogWatch {
	if every <= 0 {
		every = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CatalogWatch{list: list, every: every, log: log}
}

// Run reads the catalog at once and then every Every, until ctx ends.
func (c *CatalogWatch) Run(ctx context.Context) {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		c.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads the catalog now. A reading that fails keeps the last view:
// a repository out of reach for a while does not clear what is known of
// its backups.
func (c *CatalogWatch) Refresh(ctx context.Context) {
	entries, err := c.list(ctx)
	at := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && len(entries) == 0 {
		if !c.failed && ctx.Err() == nil {
			c.log.Warn("the backup catalog cannot be read; its findings keep the last reading", "err", err)
		}
		c.failed = true
		return
	}
	c.failed = false
	c.view = catalogView(entries, at)
}

// View returns the last reading; nil before the first one succeeds.
func (c *CatalogWatch) View() *checks.BackupsView {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view
}

// catalogView is the analysis's view of a catalog read at at: its done
// backups, oldest first.
func catalogView(entries []backup.Entry, at time.Time) *checks.BackupsView {
	v := &checks.BackupsView{ReadAt: at}
	for _, e := range entries {
		if e.Status != backup.Done {
			continue
		}
		b := checks.BackupView{ID: e.ID, Source: e.Source, Finished: e.Finished}
		if e.Verification != nil {
			ok := e.Verification.OK
			b.Verified, b.VerifiedAt, b.Detail = &ok, e.Verification.At, e.Verification.Detail
		}
		v.Done = append(v.Done, b)
	}
	slices.SortFunc(v.Done, func(a, b checks.BackupView) int { return strings.Compare(a.ID, b.ID) })
	return v
}
