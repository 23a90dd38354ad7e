package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/dbha/dbha/integration"
	"github.com/dbha/dbha/promote"
)

// stepTrapEnv names the file of a step trap: a TESTING HOOK, set by the
// lab of hosts on its managers so that a drill can interrupt a recovery
// exactly at a step; never set in production.
//
// The file holds one line, "<action>[:<n>] <mode>" (see
// promote.ParseStepPoint). Before each step of a recovery, the manager
// reads it; when the line names the step, the manager claims the trap by
// renaming the file to <file>.fired (one manager of several wins, once)
// and then, by mode:
//   - crash: kills itself with SIGKILL, exactly a kill -9 at that step
//     (the steps before it are recorded, this one is not started);
//   - pause: waits, up to stepTrapPause, until <file>.fired is removed, and
//     goes on with the step (the lab breaks something meanwhile).
//
// A missing or unreadable file arms nothing.
const stepTrapEnv = integration.StepTrapEnv

// stepTrapPause bounds a pause trap's wait.
const stepTrapPause = time.Minute

// stepTrap returns the Env.BeforeStep hook of the trap stepTrapEnv names,
// or nil when it names none.
func stepTrap(lookupEnv func(string) (string, bool), log *slog.Logger) func(promote.Plan, promote.Step) {
	path, ok := lookupEnv(stepTrapEnv)
	if !ok || path == "" {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(p promote.Plan, st promote.Step) {
		raw, err := os.ReadFile(path)
		if err != nil {
			return
		}
		fields := strings.Fields(string(raw))
		if len(fields) != 2 {
			return
		}
		sp, err := promote.ParseStepPoint(fields[0])
		if err != nil || !sp.Matches(p, st) {
			return
		}
		fired := path + ".fired"
		if os.Rename(path, fired) != nil {
			return // another manager claimed it
		}
		note := fmt.Sprintf("%s %s: pid %d, step %d (%s %s) at %s\n", fields[0], fields[1], os.Getpid(), st.N, st.Action, st.Target, time.Now().UTC().Format(time.RFC3339Nano))
		_ = os.WriteFile(fired, []byte(note), 0o644)
		log.Warn("step trap (testing hook "+stepTrapEnv+") fired", "step", st.N, "action", string(st.Action), "target", st.Target, "mode", fields[1])
		switch fields[1] {
		case "crash":
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal lands before any further step
		case "pause":
			for deadline := time.Now().Add(stepTrapPause); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(fired); os.IsNotExist(err) {
					return
				}
			}
		}
	}
}
