package binlog

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSetAside(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	dir := filepath.Join(t.TempDir(), "streams", "c")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := WriteStatus(dir, Status{PID: 4242, UpdatedAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := SetAside(dir, now); !errors.Is(err, ErrRunning) {
		t.Fatalf("set aside a store whose stream published a second ago: %v, want ErrRunning", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the store of a running stream was moved: %v", err)
	}
	later := now.Add(time.Minute)
	aside, err := SetAside(dir, later)
	if err != nil {
		t.Fatalf("set aside a store whose stream stopped a minute ago: %v", err)
	}
	if want := dir + ".reset-20261206T010100Z"; aside != want {
		t.Errorf("set aside to %s, want %s", aside, want)
	}
	if _, err := ReadStatus(aside); err != nil {
		t.Errorf("the store's files did not move with it: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the store is still at %s: %v", dir, err)
	}
}
