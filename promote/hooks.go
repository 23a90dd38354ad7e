package promote

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dbha/dbha/command"
)

// Phase is when hooks run.
type Phase string

const (
	// BeforePromote runs before the first change; a failure vetoes the
	// promotion.
	BeforePromote Phase = "before-promote"
	// AfterPromote runs once the writer has moved; a failure is recorded.
	AfterPromote Phase = "after-promote"
)

// CommandHooks runs an operator's commands around a promotion: each gets
// the record (with the plan) as JSON on stdin and the main facts as DBHA_*
// variables. Commands of a phase run in order; the first that fails stops
// the phase. Their output is kept, cut to a few KiB, in the error.
type CommandHooks struct {
	Before [][]string
	After  [][]string
	// Timeout bounds each command.
	Timeout time.Duration
}

// Run runs the commands of one phase.
func (h CommandHooks) Run(ctx context.Context, phase Phase, r *Record) error {
	cmds := h.Before
	if phase == AfterPromote {
		cmds = h.After
	}
	input, err := json.Marshal(r)
	if err != nil {
		return err
	}
	for _, argv := range cmds {
		if err := h.run(ctx, argv, phase, r, input); err != nil {
			return err
		}
	}
	return nil
}

func (h CommandHooks) run(ctx context.Context, argv []string, phase Phase, r *Record, input []byte) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := command.Run(ctx, argv, command.Options{Stdin: input, Env: []string{
		"DBHA_PHASE=" + string(phase),
		"DBHA_CLUSTER=" + r.Cluster,
		"DBHA_RECOVERY_ID=" + r.ID,
		"DBHA_KIND=" + string(r.Plan.Kind),
		"DBHA_OLD_PRIMARY=" + r.Plan.OldPrimary,
		"DBHA_NEW_PRIMARY=" + r.Plan.NewPrimary,
		"DBHA_REASON=" + r.Reason,
	}})
	if err != nil {
		return fmt.Errorf("%s hook %w", phase, err)
	}
	return nil
}
