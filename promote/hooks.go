package promote

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
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

// Run runs the commands of one phase ("before-promote", "after-promote").
func (h CommandHooks) Run(ctx context.Context, phase string, r *Record) error {
	cmds := h.Before
	if phase == "after-promote" {
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

func (h CommandHooks) run(ctx context.Context, argv []string, phase string, r *Record, input []byte) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"DBHA_PHASE="+phase,
		"DBHA_CLUSTER="+r.Cluster,
		"DBHA_RECOVERY_ID="+r.ID,
		"DBHA_KIND="+string(r.Plan.Kind),
		"DBHA_OLD_PRIMARY="+r.Plan.OldPrimary,
		"DBHA_NEW_PRIMARY="+r.Plan.NewPrimary,
		"DBHA_REASON="+r.Reason,
	)
	cmd.Stdin = bytes.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 4096 {
			msg = msg[:4096] + "…"
		}
		return fmt.Errorf("%s hook %s: %w: %s", phase, argv[0], err, msg)
	}
	return nil
}
