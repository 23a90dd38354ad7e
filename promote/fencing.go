package promote

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dbha/dbha/topology"
)

// Layer is one way of making sure the old primary cannot take writes
// before the new primary does.
type Layer string

const (
	// LayerReadOnly: the old primary answered within old_primary_timeout
	// and was made read-only with its client sessions ended.
	LayerReadOnly Layer = "read-only"
	// LayerLease: a guard held its write lease; the lease was revoked and
	// the guard fenced its server or the lease ran out (Leases.Revoke).
	LayerLease Layer = "lease"
	// LayerCommand: promotion.fence_command exited 0.
	LayerCommand Layer = "fence-command"
	// LayerLossless: its commits cannot be acknowledged without another
	// server, and every acknowledger dbha knows of is stopped from
	// following it before the promotion.
	LayerLossless Layer = "lossless"
	// LayerNone: nothing secured it; two writers are possible until it
	// returns and the keeper fences it.
	LayerNone Layer = "none"
)

// Fencing errors; a failover stopped by one was aborted before anything
// changed (Record.Aborted) and says why in Record.Error.
var (
	// ErrNotFenced: promotion.require_fencing, and no layer secured the
	// old primary.
	ErrNotFenced = errors.New("no fencing layer secured the old primary, and promotion.require_fencing is set")
	// ErrFenceFailed: promotion.fence_command failed (fence_failure: stop)
	// and no other layer secured the old primary.
	ErrFenceFailed = errors.New("the fence command failed")
)

// FencingPolicy is what planning knows of the fencing layers a cluster
// has: the operator's configuration, whether guards may hold leases, and
// the last commit settings read from each instance.
type FencingPolicy struct {
	// Leases: write leases are in use (Env.Leases is set).
	Leases bool `json:"leases,omitempty"`
	// Command: promotion.fence_command is set.
	Command bool `json:"command,omitempty"`
	// Require: promotion.require_fencing.
	Require bool `json:"require,omitempty"`
	// ProceedOnCommandFailure: promotion.fence_failure is proceed.
	ProceedOnCommandFailure bool `json:"proceed_on_command_failure,omitempty"`
	// Managers is how many dbha managers stream from the primary, each of
	// which acknowledges its commits in lossless mode (manager.members; 0
	// or 1: this one).
	Managers int `json:"managers,omitempty"`
	// Acks are the commit settings last read from each instance while it
	// answered; they stand for a failover's old primary, which cannot be
	// asked now. An instance missing is unknown.
	Acks map[string]topology.Acknowledgement `json:"acks,omitempty"`
}

// Fencing is how a promotion secures the old primary, decided by
// PlanFencing and shown by `dbha promote --dry-run`.
type Fencing struct {
	// Layers are tried in this order before the promotion; the first that
	// secures the old primary ends the list (LayerLossless needs no step).
	Layers []Layer `json:"layers"`
	// Lossless: the old primary cannot acknowledge alone and no replica
	// can acknowledge for it once stopped (LosslessWhy says why or why
	// not).
	Lossless    bool   `json:"lossless"`
	LosslessWhy string `json:"lossless_why"`
	Require     bool   `json:"require,omitempty"`
	// StopOnCommandFailure: a failing fence command stops the failover
	// when no other layer secured the old primary.
	StopOnCommandFailure bool `json:"stop_on_command_failure,omitempty"`
	// Expect says in words what will secure the old primary.
	Expect string `json:"expect"`
}

// PlanFencing decides the fencing layers of a promotion. It is pure.
// A switchover's old primary is alive: it is made read-only (which must
// succeed), then its lease revoked. A failover tries, before the first
// change: the lease (cheapest when a guard holds it), read-only within
// old_primary_timeout, the fence command; then lossless commits secure it
// by construction; else nothing does.
func PlanFencing(s topology.Snapshot, old topology.Instance, kind Kind, pol FencingPolicy) Fencing {
	f := Fencing{Require: pol.Require, StopOnCommandFailure: pol.Command && !pol.ProceedOnCommandFailure}
	if kind == Switchover {
		f.Layers = []Layer{LayerReadOnly}
		if pol.Leases {
			f.Layers = append(f.Layers, LayerLease)
		}
		f.Expect = "read-only with its client sessions ended before the candidate catches up (it answers)"
		return f
	}
	if pol.Leases {
		f.Layers = append(f.Layers, LayerLease)
	}
	f.Layers = append(f.Layers, LayerReadOnly)
	if pol.Command {
		f.Layers = append(f.Layers, LayerCommand)
	}
	f.Lossless, f.LosslessWhy = losslessHolds(s, old, pol.Acks)
	if f.Lossless && pol.Managers > 1 {
		// Each manager's stream acknowledges: one cut off on the old
		// primary's side of a partition still would, and dbha cannot stop
		// it from here. Guards (leases) or a fence command are what
		// secure an old primary with several managers.
		f.Lossless = false
		f.LosslessWhy = fmt.Sprintf("%s; but each of the %d managers' streams acknowledges its commits, and one left on its side of a partition still may", f.LosslessWhy, pol.Managers)
	}
	if f.Lossless {
		f.Layers = append(f.Layers, LayerLossless)
	}
	f.Expect = expect(f, pol)
	return f
}

// losslessHolds: the old primary's commit settings (as it answered last)
// do not fall back, and every replica can be stopped from acknowledging
// for it: each is reachable (the failover stops each from following it
// before the promotion: a MariaDB replica's IO thread, a PostgreSQL
// standby's walreceiver).
func losslessHolds(s topology.Snapshot, old topology.Instance, acks map[string]topology.Acknowledgement) (bool, string) {
	ack := old.Ack
	if ack == nil {
		if a, ok := acks[old.Addr]; ok {
			ack = &a
		}
	}
	ok, why := ack.Lossless(s.Engine)
	if !ok {
		return false, why
	}
	for _, in := range s.Instances {
		if in.Addr == old.Addr {
			continue
		}
		if !in.Reachable {
			return false, fmt.Sprintf("%s; but %s cannot be reached and may still acknowledge its commits", why, in.Addr)
		}
	}
	return true, why + "; every replica is reachable and stops following it before the promotion"
}

func expect(f Fencing, pol FencingPolicy) string {
	var ways []string
	if pol.Leases {
		ways = append(ways, "its guard's lease, revoked, if a guard holds it")
	}
	ways = append(ways, "read-only if it answers within old_primary_timeout")
	if pol.Command {
		ways = append(ways, "the fence command")
	}
	if f.Lossless {
		return strings.Join(ways, ", else ") + ", else lossless commits: it cannot acknowledge alone: " + f.LosslessWhy
	}
	tail := "else not fenced: two writers possible until it returns (lossless: " + f.LosslessWhy + ")"
	if f.Require {
		tail = "else the failover stops (promotion.require_fencing)"
	}
	if f.StopOnCommandFailure {
		tail += "; a failing fence command stops the failover"
	}
	return strings.Join(ways, ", else ") + ", " + tail
}

// FenceOutcome is what the fencing steps of a failover did.
type FenceOutcome struct {
	// ReadOnly: made read-only with its sessions ended.
	ReadOnly bool `json:"read_only,omitempty"`
	// Revocation is what Leases.Revoke found (nil: not revoked).
	Revocation *Revocation `json:"revocation,omitempty"`
	// Command: "ok", or why it failed; "" when it did not run.
	Command string `json:"command,omitempty"`
	// SecuredBy is the layer that secured the old primary, once decided.
	SecuredBy Layer `json:"secured_by,omitempty"`
}

// secured is the layer that already secured the old primary, or "".
func (o FenceOutcome) secured() Layer {
	switch {
	case o.ReadOnly:
		return LayerReadOnly
	case o.Revocation != nil && o.Revocation.Guarded:
		return LayerLease
	case o.Command == "ok":
		return LayerCommand
	}
	return ""
}

// Secure decides, once the fencing steps ran, whether the failover may
// promote: the layer that secured the old primary, or an error wrapping
// ErrFenceFailed or ErrNotFenced when it must stop. LayerNone with a nil
// error: the failover proceeds unfenced. It is pure.
func Secure(f Fencing, o FenceOutcome) (Layer, error) {
	if l := o.secured(); l != "" {
		return l, nil
	}
	if f.Lossless {
		return LayerLossless, nil
	}
	if o.Command != "" && f.StopOnCommandFailure {
		return LayerNone, fmt.Errorf("%w: %s (promotion.fence_failure: stop)", ErrFenceFailed, o.Command)
	}
	if f.Require {
		return LayerNone, fmt.Errorf("%w (%s)", ErrNotFenced, f.LosslessWhy)
	}
	return LayerNone, nil
}

// FencingWarning is `dbha check`'s word on a cluster's fencing: empty
// when a failover of primary would have a layer that secures it without
// reaching it (guard leases, a fence command, commits that cannot be
// acknowledged alone), else a warning that says what is missing. It is
// pure.
func FencingWarning(s topology.Snapshot, primary string, pol FencingPolicy) string {
	if pol.Leases || pol.Command {
		return ""
	}
	in, _ := s.Instance(primary)
	ack := in.Ack
	if ack == nil || !in.Reachable {
		if a, ok := pol.Acks[primary]; ok {
			ack = &a
		}
	}
	ok, why := ack.Lossless(s.Engine)
	if ok {
		return ""
	}
	return "no fencing layer: two writers possible after an isolate (no guard lease, no promotion.fence_command; lossless: " + why + ")"
}
