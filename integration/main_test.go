package integration

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// The topology tests share one lab, started on first use and stopped when
// the package's tests end. Tests that break something repair it before they
// return, and check that the cluster is healthy again.
var shared struct {
	once sync.Once
	lab  *Lab
	err  error
	dir  string
}

func sharedLab(t *testing.T) *Lab {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "dbha-shared-lab-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		shared.lab, _, shared.err = Up(ctx, Options{Dir: dir})
		fmt.Fprintf(os.Stderr, "shared lab up in %.1fs\n", time.Since(start).Seconds())
	})
	if shared.err != nil {
		t.Fatalf("start the shared lab: %v", shared.err)
	}
	return shared.lab
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.lab != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := shared.lab.Down(ctx, true); err != nil {
			fmt.Fprintln(os.Stderr, "stop the shared lab:", err)
			code = 1
		}
		cancel()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}
