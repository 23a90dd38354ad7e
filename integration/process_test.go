package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestProcessIsNodeRightAfterSpawn: a process the lab has just started is known as the lab's
// at once, whether by its start time or (a lab.json without one) by its command line, which
// reads empty for a moment after cmd.Start returns. Read once, as before, the command line
// made one of these spawns or so in a few dozen look "exited" (checked by reading it once).
func TestProcessIsNodeRightAfterSpawn(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "data")
	l := &Lab{}
	const spawns = 200
	for i := range spawns {
		pid, started, err := l.spawn(launch{path: "/bin/sh", args: []string{"-c", "sleep 30", marker}, logFile: filepath.Join(dir, "log")})
		if err != nil {
			t.Fatal(err)
		}
		byCmdline := processIsNode(pid, marker, 0) // first: the window is right after the spawn
		byStart := processIsNode(pid, "", started)
		wrongStart := processIsNode(pid, marker, started+1)
		wrongMarker := processIsNode(pid, marker+"x", 0)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if started == 0 || !byStart || !byCmdline || wrongStart || wrongMarker {
			t.Fatalf("spawn %d (pid %d, started %d): by start time %v, by command line %v, with another start time %v, with another marker %v",
				i, pid, started, byStart, byCmdline, wrongStart, wrongMarker)
		}
		deadline := time.Now().Add(5 * time.Second)
		for processIsNode(pid, "", started) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if processIsNode(pid, "", started) {
			t.Fatalf("pid %d is still the lab's process after SIGKILL", pid)
		}
	}
	if processIsNode(os.Getpid(), marker, 0) {
		t.Error("the test process passes for a lab node")
	}
}
