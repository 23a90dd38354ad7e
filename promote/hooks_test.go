package promote

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCommandHooks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := &Record{ID: "r1", Cluster: "c1", Plan: Plan{Kind: Failover, OldPrimary: "db1", NewPrimary: "db2"}}
	h := CommandHooks{
		Before: [][]string{{"sh", "-c", `cat > "$0"; echo "$DBHA_PHASE $DBHA_CLUSTER $DBHA_OLD_PRIMARY $DBHA_NEW_PRIMARY $DBHA_KIND" >> "$0".env`, out}},
		After:  [][]string{{"sh", "-c", "echo refusing >&2; exit 4"}},
	}
	if err := h.Run(context.Background(), BeforePromote, r); err != nil {
		t.Fatal(err)
	}
	var got Record
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(b, &got); err != nil || got.ID != "r1" || got.Plan.NewPrimary != "db2" {
		t.Fatalf("stdin JSON = %s (%v)", b, err)
	}
	env, _ := os.ReadFile(out + ".env")
	if strings.TrimSpace(string(env)) != "before-promote c1 db1 db2 failover" {
		t.Fatalf("environment = %q", env)
	}
	err := h.Run(context.Background(), AfterPromote, r)
	if err == nil || !strings.Contains(err.Error(), "exit status 4") || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("failing hook: %v", err)
	}
	slow := CommandHooks{Before: [][]string{{"sleep", "10"}}, Timeout: 100 * time.Millisecond}
	if err := slow.Run(context.Background(), BeforePromote, r); err == nil {
		t.Fatal("a hook past its timeout did not fail")
	}
}
