package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Step traps: faults that strike at a given step of a recovery. Every manager of a hosts lab
// runs with StepTrapEnv naming DIR/step-trap (a testing hook of `dbha run`, see
// cmd/dbha/steptrap.go). A fault with a step writes "<step> <mode>" there; the manager that
// reaches that step first claims the trap by renaming the file to DIR/step-trap.fired and
// then crashes (SIGKILL of itself: manager-crash) or waits until that file is gone (pause:
// consul-down, which stops the Consul servers meanwhile and then lets the recovery go on).

// StepTrapEnv is the variable that names the step trap's file to `dbha run`.
const StepTrapEnv = "DBHA_STEP_TRAP"

// Trap modes (the second word of the trap file).
const (
	trapCrash = "crash"
	trapPause = "pause"
)

// trapWait bounds how long a fault's background job waits for its trap to fire.
const trapWait = 3 * time.Minute

// supervisorDelay is how long a crashed manager of a one-manager lab stays down before the
// lab starts it again, as a service manager would (systemd's RestartSec).
const supervisorDelay = time.Second

func (l *Lab) trapPath() string { return filepath.Join(l.Dir, "step-trap") }

// armTrap writes the trap file, after clearing what an earlier trap left.
func (l *Lab) armTrap(step, mode string) error {
	for _, p := range []string{l.trapPath() + ".fired", l.trapPath() + ".seen"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.WriteFile(l.trapPath(), []byte(step+" "+mode+"\n"), 0o644)
}

// disarmTrap removes the trap and releases a manager paused in it.
func (l *Lab) disarmTrap() error {
	var errs []error
	if err := os.Remove(l.trapPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := os.Rename(l.trapPath()+".fired", l.trapPath()+".seen"); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// TrapFired returns what the manager that claimed the latest step trap wrote (its pid, the
// step, when), and whether a manager claimed it at all.
func (l *Lab) TrapFired() (string, bool) {
	for _, p := range []string{l.trapPath() + ".fired", l.trapPath() + ".seen"} {
		if raw, err := os.ReadFile(p); err == nil {
			return string(raw), true
		}
	}
	return "", false
}

// waitTrap waits, up to trapWait or until stop, for a manager to claim the trap.
func (l *Lab) waitTrap(stop <-chan struct{}) error {
	deadline := time.Now().Add(trapWait)
	for {
		if _, err := os.Stat(l.trapPath() + ".fired"); err == nil {
			return nil
		}
		select {
		case <-stop:
			return errors.New("healed before the trap fired")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no recovery reached the trapped step within %v", trapWait)
		}
	}
}

// background runs job beside the fault until it ends or Heal stops it.
func (l *Lab) background(job func(stop <-chan struct{})) {
	l.mu.Lock()
	if l.bgStop == nil {
		l.bgStop = make(chan struct{})
	}
	stop := l.bgStop
	l.bg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.bg.Done()
		job(stop)
	}()
}

// stopBackground stops the faults' background jobs and waits for them.
func (l *Lab) stopBackground() {
	l.mu.Lock()
	if l.bgStop != nil {
		close(l.bgStop)
		l.bgStop = nil
	}
	l.mu.Unlock()
	l.bg.Wait()
}

// superviseCrash: once the trap fired, a one-manager lab starts its crashed manager again
// after supervisorDelay (a service manager's restart); with several managers the others
// carry on and Heal starts it.
func (l *Lab) superviseCrash(stop <-chan struct{}) {
	if err := l.waitTrap(stop); err != nil {
		l.progressf("manager-crash: %v", err)
		return
	}
	managers := l.nodesOfKind(KindManager)
	if len(managers) != 1 {
		return
	}
	select {
	case <-stop:
		return
	case <-time.After(supervisorDelay):
	}
	if err := l.refresh(); err != nil {
		l.warnf("manager-crash: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.Start(ctx, managers[0].Name); err != nil {
		l.warnf("manager-crash: restart %s: %v", managers[0].Name, err)
		return
	}
	l.progressf("manager-crash: %s restarted after %v, as a service manager would", managers[0].Name, supervisorDelay)
}

// consulOutage stops the Consul servers named (once the trap fired, when there is one), lets
// a paused recovery go on, and starts them again after downFor (0: Heal does).
func (l *Lab) consulOutage(names []string, trapped bool, downFor time.Duration) func(stop <-chan struct{}) {
	return func(stop <-chan struct{}) {
		if trapped {
			if err := l.waitTrap(stop); err != nil {
				l.progressf("consul-down: %v", err)
				return
			}
		}
		for _, name := range names {
			if err := l.Signal(name, syscall.SIGKILL); err != nil {
				l.warnf("consul-down: %v", err)
			}
		}
		if trapped {
			if err := l.disarmTrap(); err != nil {
				l.warnf("consul-down: release the paused recovery: %v", err)
			}
		}
		l.progressf("consul-down: %v stopped", names)
		if downFor <= 0 {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(downFor):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var nodes []Node
		for _, name := range names {
			if n, err := l.Node(name); err == nil {
				nodes = append(nodes, n)
			}
		}
		if err := inParallel(nodes, func(n Node) error { return l.Start(ctx, n.Name) }); err != nil {
			l.warnf("consul-down: start again: %v", err)
			return
		}
		l.progressf("consul-down: %v started again after %v", names, downFor)
	}
}
