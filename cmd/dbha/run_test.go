package main

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/promote"
)

// Consul out of reach when `dbha run` starts does not disable scheduled
// backups: the claimer it gets connects at each claim until Consul
// answers, and a claim meanwhile fails (so the slot is tried again).
func TestBackupClaimerWaitsForConsul(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := config.Config{Consul: config.Consul{Address: addr},
		Clusters: []config.Cluster{{Name: "c", Backup: config.Backup{Schedule: "@daily"}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := backupClaimer(ctx, cfg, slog.New(slog.DiscardHandler))
	late, ok := c.(*lateClaimer)
	if !ok {
		t.Fatalf("backupClaimer with Consul down = %T, want a claimer that connects later", c)
	}
	if won, err := late.ClaimBackupSlot(ctx, "c", time.Now(), "m1"); err == nil || won {
		t.Fatalf("a claim with Consul still down: %v, %v; want an error", won, err)
	}
	if late.c != nil {
		t.Fatal("a client was kept although Consul never answered")
	}
}

// config writes promote's fallbacks again (it imports no package that
// does I/O); the two stay equal.
func TestPromotionDefaultsMatch(t *testing.T) {
	if config.DefaultOldPrimaryTimeout != promote.DefaultOldPrimaryTimeout || config.DefaultRecheckTimeout != promote.DefaultRecheckTimeout {
		t.Fatalf("config defaults %v, %v; promote's %v, %v", config.DefaultOldPrimaryTimeout, config.DefaultRecheckTimeout,
			promote.DefaultOldPrimaryTimeout, promote.DefaultRecheckTimeout)
	}
}
