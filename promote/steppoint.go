package promote

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// StepPoint names one step of a plan by its action and, when the action
// occurs more than once (stop-following, repoint), its occurrence:
// "repoint:2" is the plan's second repoint step. It is how a test or the
// lab says where a recovery is to be interrupted (Env.BeforeStep).
type StepPoint struct {
	Action Action
	N      int // 1-based occurrence of Action in the plan; 0 means 1
}

// ParseStepPoint reads "<action>[:<n>]" and checks the action is known.
func ParseStepPoint(s string) (StepPoint, error) {
	name, num, hasNum := strings.Cut(strings.TrimSpace(s), ":")
	sp := StepPoint{Action: Action(name)}
	if !slices.Contains(Actions, sp.Action) {
		return sp, fmt.Errorf("step %q: unknown action (known: %s)", s, actionList())
	}
	if hasNum {
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			return sp, fmt.Errorf("step %q: the occurrence after ':' must be a number from 1", s)
		}
		sp.N = n
	}
	return sp, nil
}

func (sp StepPoint) String() string {
	if sp.N > 1 {
		return fmt.Sprintf("%s:%d", sp.Action, sp.N)
	}
	return string(sp.Action)
}

// Matches reports whether st, a step of p, is the step sp names.
func (sp StepPoint) Matches(p Plan, st Step) bool {
	if st.Action != sp.Action {
		return false
	}
	n := 0
	for _, s := range p.Steps {
		if s.Action == sp.Action {
			n++
		}
		if s.N == st.N {
			return n == max(sp.N, 1)
		}
	}
	return false
}

// Actions lists every action, in the order a failover's plan uses them.
var Actions = []Action{ActLock, ActHookBefore, ActStopFollowing, ActWaitApplied, ActApply, ActPromote,
	ActRepoint, ActMoveWriter, ActFence, ActUpdateReaders, ActHookAfter, ActUnlock}

func actionList() string {
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}
