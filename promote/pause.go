package promote

import (
	"errors"
	"fmt"
	"time"
)

// Pause is a cluster's maintenance mode: while it is set, no manager
// starts an automatic recovery of the cluster (detection, alerts and a
// recovery already half-done go on; so does fencing a second writer).
// `dbha pause` sets it, `dbha resume` lifts it.
type Pause struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// ErrPaused: the cluster is in maintenance mode; no automatic recovery
// was started.
var ErrPaused = errors.New("automatic failover is paused")

// PausedError is the error Recover returns for an automatic recovery of a
// paused cluster. errors.Is(err, ErrPaused) matches it.
type PausedError struct {
	Cluster string
	Pause   Pause
}

func (e *PausedError) Is(target error) bool { return target == ErrPaused }

func (e *PausedError) Error() string {
	return fmt.Sprintf("%v for %s: %s", ErrPaused, e.Cluster, e.Pause.Describe())
}

// Describe says who paused, when and why.
func (p Pause) Describe() string {
	s := fmt.Sprintf("paused by %s at %s", p.By, p.At.UTC().Format(time.RFC3339))
	if p.Reason != "" {
		s += " (" + p.Reason + ")"
	}
	return s
}

// Lift is the command that resumes automatic failover.
func (e *PausedError) Lift() string { return "dbha resume --cluster " + e.Cluster }
