package promote

import (
	"fmt"
	"slices"

	"github.com/dbha/dbha/topology"
)

// rank orders the replicas: excluded ones last, then the most advanced
// first, then preferred, then by priority, then in configuration order.
func (pl *planner) rank() []Candidate {
	var cands []Candidate
	for _, in := range pl.s.Instances {
		if in.Addr != pl.old.Addr {
			cands = append(cands, pl.candidate(in))
		}
	}
	rules := pl.r.Rules
	slices.SortStableFunc(cands, func(a, b Candidate) int {
		if a.Excluded != b.Excluded {
			return boolOrder(a.Excluded)
		}
		if a.Inconsistent != b.Inconsistent {
			return boolOrder(a.Inconsistent)
		}
		if o, err := topology.Compare(a.Position, b.Position); err == nil && (o == topology.Ahead || o == topology.Behind) {
			return boolOrder(o == topology.Behind)
		}
		if pa, pb := slices.Contains(rules.Prefer, a.Addr), slices.Contains(rules.Prefer, b.Addr); pa != pb {
			return boolOrder(pb)
		}
		return rules.Priority[b.Addr] - rules.Priority[a.Addr]
	})
	n := 0
	for i := range cands {
		if !cands[i].Excluded {
			n++
			cands[i].Rank = n
			cands[i].Reasons = append(cands[i].Reasons, rankReason(cands, i, rules))
		}
	}
	return cands
}

// boolOrder sorts true after false.
func boolOrder(later bool) int {
	if later {
		return 1
	}
	return -1
}

// candidate judges one replica's eligibility, with the reasons.
func (pl *planner) candidate(in topology.Instance) Candidate {
	c := Candidate{Addr: in.Addr, Position: held(in)}
	exclude := func(why string) {
		c.Excluded = true
		c.Reasons = append(c.Reasons, why)
	}
	switch {
	case !in.Reachable:
		exclude("unreachable: " + in.Error)
		return c
	case in.Replication == nil:
		exclude("not a replica: it follows no source")
		return c
	}
	rules := pl.r.Rules
	if slices.Contains(rules.Never, in.Addr) {
		exclude("listed under never")
	}
	if i := slices.IndexFunc(pl.r.Avoid, func(a Avoid) bool { return a.Addr == in.Addr }); i >= 0 {
		exclude(pl.r.Avoid[i].Reason)
	}
	if e := pl.errant[in.Addr]; e != "" {
		exclude("errant transactions " + e + " (diverged from the primary)")
	}
	if in.Replication.SQLError != "" {
		exclude("replication broken: " + in.Replication.SQLError)
	}
	if lag := lagSeconds(in); rules.MaxLagSeconds > 0 && lag != nil && *lag > rules.MaxLagSeconds {
		exclude(fmt.Sprintf("lag %.0fs over the limit of %.0fs", *lag, rules.MaxLagSeconds))
	}
	if why, ok := pl.r.Inconsistent[in.Addr]; ok {
		c.Inconsistent = true
		c.Reasons = append(c.Reasons, "ranked below the others: it "+why)
	}
	if pl.old.Reachable && in.Replication.Source != pl.old.Addr {
		exclude("does not replicate from the primary " + pl.old.Addr + " (a switchover catches the candidate up from it)")
	}
	return c
}

// lagSeconds is the replica's lag as last measured against the primary, or
// as the replica itself reports it when the primary is gone.
func lagSeconds(in topology.Instance) *float64 {
	if in.Lag != nil && in.Lag.Seconds != nil {
		return in.Lag.Seconds
	}
	return in.Replication.SecondsBehind
}

func rankReason(cands []Candidate, i int, rules Rules) string {
	c := cands[i]
	why := fmt.Sprintf("holds %s", orEmpty(c.Position.String()))
	if i+1 < len(cands) && !cands[i+1].Excluded {
		if o, err := topology.Compare(c.Position, cands[i+1].Position); err == nil && o == topology.Ahead {
			why += ", ahead of the next candidate"
		}
	}
	if slices.Contains(rules.Prefer, c.Addr) {
		why += "; preferred"
	}
	if p := rules.Priority[c.Addr]; p != 0 {
		why += fmt.Sprintf("; priority %d", p)
	}
	return why
}
