package promote

import (
	"fmt"
	"slices"

	"github.com/dbha/dbha/topology"
)

// Action is one kind of step. Execute knows how to carry out each.
type Action string

const (
	ActLock          Action = "lock"           // take the cluster's lock in Consul, record the intent (an automatic recovery has planned around the anti-flap block)
	ActHookBefore    Action = "hook-before"    // run the before-promote hooks; a failure vetoes the promotion
	ActFence         Action = "fence"          // the old primary: read-only and client sessions killed when reachable; kept out of the writer service
	ActRevokeLease   Action = "revoke-lease"   // withdraw the old primary's write lease; with a guard, wait until it cannot be writable
	ActFenceCommand  Action = "fence-command"  // run promotion.fence_command against the old primary (STONITH)
	ActSecure        Action = "secure"         // decide from the fencing steps whether the failover may promote (Secure)
	ActGrantLease    Action = "grant-lease"    // give the new primary the write lease, before it is made writable
	ActStopFollowing Action = "stop-following" // a replica stops replicating from the old primary
	ActWaitApplied   Action = "wait-applied"   // an instance applies what it holds, up to Position
	ActApply         Action = "apply-missing"  // apply the events Source holds beyond the instance's position, up to Position
	ActPromote       Action = "promote"        // the new primary stops replicating and becomes writable
	ActRepoint       Action = "repoint"        // an instance replicates from the new primary
	ActMoveWriter    Action = "move-writer"    // Consul: deregister the old writer, then register the new one
	ActUpdateReaders Action = "update-readers" // Consul: the reader service lists healthy replicas under the lag limit
	ActHookAfter     Action = "hook-after"     // run the after-promote hooks
	ActUnlock        Action = "unlock"         // write the audit record, set the anti-flap block after an automatic recovery, release the lock
)

// Step is one thing Execute does, in order.
type Step struct {
	N        int               `json:"n"`
	Action   Action            `json:"action"`
	Target   string            `json:"target,omitempty"`
	Source   string            `json:"source,omitempty"` // an instance address, or StreamSource
	Position topology.Position `json:"position"`
	Detail   string            `json:"detail"`
}

// steps lays out the promotion. Failover and switchover differ in how the
// old primary is stopped and where the candidate catches up from.
func steps(s topology.Snapshot, p Plan) []Step {
	var out []Step
	add := func(st Step) {
		st.N = len(out) + 1
		out = append(out, st)
	}
	add(Step{Action: ActLock, Detail: fmt.Sprintf("lock dbha/%s/leader; an automatic recovery plans around the anti-flap block", p.Cluster)})
	add(Step{Action: ActHookBefore, Detail: "a failing hook vetoes the promotion"})

	others := otherReplicas(s, p)
	if p.Kind == Switchover {
		add(Step{Action: ActFence, Target: p.OldPrimary, Detail: "set read-only and end client sessions: writes stop here"})
		if slices.Contains(p.Fencing.Layers, LayerLease) {
			add(Step{Action: ActRevokeLease, Target: p.OldPrimary, Detail: "withdraw its write lease, so that its guard keeps it read-only"})
		}
		add(Step{Action: ActWaitApplied, Target: p.NewPrimary, Source: p.OldPrimary, Position: p.Target,
			Detail: "catch up to the old primary's final position (read once it is read-only)"})
	} else {
		fencingSteps(p, add)
		for _, addr := range append([]string{p.NewPrimary}, others...) {
			add(Step{Action: ActStopFollowing, Target: addr, Source: p.OldPrimary,
				Detail: "stop receiving from the old primary and acknowledging its commits, so that none follows it if it returns"})
		}
		for _, g := range p.Gaps {
			if g.Instance != p.NewPrimary {
				continue
			}
			for _, src := range g.From {
				switch src.Kind {
				case FromRelayLog:
					add(Step{Action: ActWaitApplied, Target: p.NewPrimary, Position: src.Upto, Detail: "apply its own relay log / received WAL"})
				default:
					add(Step{Action: ActApply, Target: p.NewPrimary, Source: sourceName(src), Position: src.Upto,
						Detail: fmt.Sprintf("apply what %s holds beyond the candidate, keeping the original GTIDs / WAL", sourceName(src))})
				}
			}
		}
	}
	if slices.Contains(p.Fencing.Layers, LayerLease) {
		add(Step{Action: ActGrantLease, Target: p.NewPrimary, Detail: "its guard may keep it writable from now on"})
	}
	add(Step{Action: ActPromote, Target: p.NewPrimary, Position: p.Target, Detail: promoteDetail(s.Engine)})
	if p.Kind == Switchover {
		add(Step{Action: ActRepoint, Target: p.OldPrimary, Source: p.NewPrimary, Detail: "the old primary becomes a replica of the new one"})
	}
	for _, addr := range others {
		add(Step{Action: ActRepoint, Target: addr, Source: p.NewPrimary, Detail: repointDetail(s.Engine)})
	}
	add(Step{Action: ActMoveWriter, Target: p.NewPrimary, Source: p.OldPrimary,
		Detail: fmt.Sprintf("%s-writer: deregister %s, then register %s", p.Cluster, p.OldPrimary, p.NewPrimary)})
	add(Step{Action: ActUpdateReaders, Detail: fmt.Sprintf("%s-reader: the healthy replicas of %s", p.Cluster, p.NewPrimary)})
	add(Step{Action: ActHookAfter})
	add(Step{Action: ActUnlock, Detail: "write the audit record with the loss ledger, set the anti-flap block if automatic, release the lock"})
	return out
}

// fencingSteps secure a failover's old primary before the first change,
// in the order PlanFencing chose; each is bounded, so that a vanished host
// delays the promotion by at most its bound. A step is skipped at run
// time once an earlier one secured the old primary.
func fencingSteps(p Plan, add func(Step)) {
	for _, l := range p.Fencing.Layers {
		switch l {
		case LayerLease:
			add(Step{Action: ActRevokeLease, Target: p.OldPrimary,
				Detail: "withdraw its write lease; with a guard, wait until the guard fenced it or the lease ran out"})
		case LayerReadOnly:
			add(Step{Action: ActFence, Target: p.OldPrimary,
				Detail: "if it answers within old_primary_timeout: read-only and client sessions ended; in every case kept out of the writer service until it rejoins"})
		case LayerCommand:
			add(Step{Action: ActFenceCommand, Target: p.OldPrimary, Detail: "promotion.fence_command, bounded by promotion.fence_timeout"})
		}
	}
	add(Step{Action: ActSecure, Target: p.OldPrimary, Detail: p.Fencing.Expect})
}

// otherReplicas are the reachable instances that will follow the new
// primary, in configuration order.
func otherReplicas(s topology.Snapshot, p Plan) []string {
	var out []string
	for _, in := range s.Instances {
		if in.Addr != p.NewPrimary && in.Addr != p.OldPrimary && in.Reachable {
			out = append(out, in.Addr)
		}
	}
	return out
}

// StreamSource, as a step's Source, stands for dbha's change-stream store:
// an apply step from it hands over what only dbha holds.
const StreamSource = string(FromStream)

func sourceName(src Source) string {
	if src.Kind == FromStream {
		return StreamSource
	}
	return src.Addr
}

func promoteDetail(e topology.Engine) string {
	if e == topology.Postgres {
		return "pg_promote(); the new timeline starts here"
	}
	return "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF"
}

func repointDetail(e topology.Engine) string {
	if e == topology.Postgres {
		return "primary_conninfo to the new primary and reload; it follows the new timeline"
	}
	return "CHANGE MASTER TO the new primary with MASTER_USE_GTID=slave_pos; START SLAVE"
}
