package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
)

// TestStepTrapPause: the trap fires only at the step it names, once, and a
// pause returns when the lab removes the claimed file. (The crash mode is
// the same claim followed by SIGKILL of the process; the hosts lab's
// TestManagerCrashOnHosts exercises it.)
func TestStepTrapPause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "step-trap")
	env := func(k string) (string, bool) {
		if k == stepTrapEnv {
			return path, true
		}
		return "", false
	}
	hook := stepTrap(env, nil)
	if hook == nil {
		t.Fatal("no hook with the variable set")
	}
	if stepTrap(func(string) (string, bool) { return "", false }, nil) != nil {
		t.Fatal("a hook without the variable")
	}
	plan := promote.Plan{Steps: []promote.Step{{N: 1, Action: promote.ActLock}, {N: 2, Action: promote.ActPromote}}}
	hook(plan, plan.Steps[0]) // no trap armed: nothing
	if err := os.WriteFile(path, []byte("promote pause\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hook(plan, plan.Steps[0]) // another step: nothing
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the trap was claimed at the wrong step: %v", err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		hook(plan, plan.Steps[1])
	}()
	fired := path + ".fired"
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(fired); err != nil; _, err = os.Stat(fired) {
		if time.Now().After(deadline) {
			t.Fatal("the trap did not fire at its step")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-released:
		t.Fatal("a pause returned before the lab released it")
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.Remove(fired); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("the pause did not return once released")
	}
	hook(plan, plan.Steps[1]) // claimed once: the file is gone, nothing fires again
	if _, err := os.Stat(fired); err == nil {
		t.Fatal("the trap fired twice")
	}
}
