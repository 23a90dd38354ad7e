package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
)

// TestBackupLeftRunningIsSwept: a `dbha backup run` killed in the middle
// (as a manager that crashes) leaves its entry running and a partial file.
// Once its heartbeat has been silent for longer than backup.StaleAfter
// (aged here by rewriting the entry, instead of waiting), `dbha backup
// prune` finds it, marks it failed with the reason and removes the
// partial file; the scheduler does the same before each slot it wins.
func TestBackupLeftRunningIsSwept(t *testing.T) {
	bin := dbhaBinary(t)
	l := sharedLab(t)
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster", healthy)
	repoDir := filepath.Join(t.TempDir(), "repo")
	// 1 MiB/s: the lab's 17 MB take long enough to be caught mid-run.
	config := mariadbBackupConfig(t, l, "      repository: "+repoDir+"\n      max_rate: 1MB\n")
	cmd := exec.Command(bin, "--config", config, "backup", "run", "--cluster", mariadbCluster)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	repo := backup.Dir(repoDir)
	var running backup.Entry
	waitUntil(t, 30*time.Second, "a running backup with a partial file", func() error {
		entries, err := backup.List(context.Background(), repo, mariadbCluster)
		if err != nil || len(entries) != 1 || entries[0].Status != backup.Running {
			return fmt.Errorf("entries %+v, %v", entries, err)
		}
		running = entries[0]
		if partial, _ := filepath.Glob(filepath.Join(backup.EntryDir(repoDir, mariadbCluster, running.ID), ".backup.xb.zst.partial-*")); len(partial) != 1 {
			return fmt.Errorf("no partial file yet")
		}
		return nil
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	// Still running (a live run's heartbeat is fresh): prune leaves it.
	r := exec.Command(bin, "--config", config, "backup", "prune", "--cluster", mariadbCluster)
	if out, err := r.CombinedOutput(); err != nil || strings.Contains(string(out), "marked backup") {
		t.Fatalf("prune right after the kill: %v\n%s", err, out)
	}
	running.Heartbeat = time.Now().Add(-2 * backup.StaleAfter)
	if err := backup.Save(context.Background(), repo, running); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config", config, "backup", "prune", "--cluster", mariadbCluster).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "marked backup "+running.ID+" of "+mariadbCluster+" failed: left running") {
		t.Fatalf("prune after the heartbeat went silent: %v\n%s", err, out)
	}
	// A failed backup is pruned whole.
	if !strings.Contains(string(out), "deleted backup "+running.ID) {
		t.Errorf("prune did not delete the failed backup:\n%s", out)
	}
	if _, err := os.Stat(backup.EntryDir(repoDir, mariadbCluster, running.ID)); !os.IsNotExist(err) {
		t.Errorf("the dead run's files are still there: %v", err)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
