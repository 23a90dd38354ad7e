package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
)

// TestCatalogWatch: the view lists the done backups oldest first with
// their last verification; a reading that fails keeps the last one.
func TestCatalogWatch(t *testing.T) {
	at := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	entries := []backup.Entry{
		{ID: "b", Status: backup.Done, Source: "r1", Verification: &backup.Verification{At: at, OK: false, Detail: "sha256 mismatch"}},
		{ID: "c", Status: backup.Running},
		{ID: "a", Status: backup.Done, Source: "r2", Verification: &backup.Verification{At: at, OK: true}},
		{ID: "d", Status: backup.Failed},
		{ID: "e", Status: backup.Done},
	}
	var readErr error
	c := NewCatalogWatch(func(context.Context) ([]backup.Entry, error) {
		if readErr != nil {
			return nil, readErr
		}
		return entries, nil
	}, 0, nil)
	if c.View() != nil {
		t.Fatal("a view before the first reading")
	}
	c.Refresh(context.Background())
	v := c.View()
	if v == nil || len(v.Done) != 3 {
		t.Fatalf("view %+v, want the three done backups", v)
	}
	if v.Done[0].ID != "a" || v.Done[1].ID != "b" || v.Done[2].ID != "e" {
		t.Errorf("order %s %s %s, want a b e", v.Done[0].ID, v.Done[1].ID, v.Done[2].ID)
	}
	if b := v.Done[1]; b.Verified == nil || *b.Verified || b.Detail != "sha256 mismatch" || b.Source != "r1" {
		t.Errorf("failed verification read as %+v", b)
	}
	if v.Done[2].Verified != nil {
		t.Errorf("a backup never verified reads as verified: %+v", v.Done[2])
	}
	readErr = errors.New("bucket out of reach")
	c.Refresh(context.Background())
	if c.View() != v {
		t.Error("a failed reading replaced the last view")
	}
}
