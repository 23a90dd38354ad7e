package promote

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dbha/dbha/topology"
)

// Kind says which way the primary is replaced.
type Kind string

const (
	Failover   Kind = "failover"   // the old primary is dead or unreachable
	Switchover Kind = "switchover" // the old primary is alive: no loss, brief write block
)

// Sentinel errors callers branch on.
var (
	ErrNoPrimary   = errors.New("no primary to replace")
	ErrNoCandidate = errors.New("no replica can be promoted")
	ErrNotEligible = errors.New("the requested instance cannot be promoted")
)

// Rules are an operator's promotion preferences for a cluster.
type Rules struct {
	// Prefer ranks these first among equally advanced candidates.
	Prefer []string `json:"prefer,omitempty"`
	// Never are not promoted, even when they are the most advanced (they
	// still serve as sources of missing events).
	Never []string `json:"never,omitempty"`
	// Priority breaks remaining ties, higher first (default 0).
	Priority map[string]int `json:"priority,omitempty"`
	// MaxLagSeconds excludes a replica whose last known lag is higher; 0
	// means no limit.
	MaxLagSeconds float64 `json:"max_lag_seconds,omitempty"`
}

// Held is what dbha's change stream holds for the cluster.
type Held struct {
	Position topology.Position `json:"position"` // last complete position on disk
	From     string            `json:"from"`     // the primary it streamed from
}

// Request is what an operator or the daemon asks for.
type Request struct {
	// To names the instance to promote; empty lets the ranking choose.
	To string `json:"to,omitempty"`
	// Force allows a target that the rules exclude (errant transactions,
	// broken replication, never, lag); what it overrode is recorded.
	Force bool  `json:"force,omitempty"`
	Rules Rules `json:"rules"`
	// Held is what dbha's stream holds; nil when no stream runs.
	Held *Held `json:"held,omitempty"`
	// LastSeen is the old primary's last position the monitor saw before
	// it failed; zero when unknown. It measures the expected loss.
	LastSeen topology.Position `json:"last_seen"`
	// LastPrimary is the primary as dbha last knew it (the one the monitor
	// or the stream followed). It names the old primary when the snapshot
	// cannot: a dead primary whose replicas no longer say whom they follow.
	LastPrimary string `json:"last_primary,omitempty"`
	// Avoid are instances the anti-flap rule keeps an automatic recovery
	// from promoting (see AntiFlap); they are excluded with their reason.
	Avoid []Avoid `json:"avoid,omitempty"`
	// Fencing is what the cluster has to secure the old primary with.
	Fencing FencingPolicy `json:"fencing"`
	// Inconsistent are the replicas consistency checks (dbha checksum)
	// found different from the primary, with why: they rank below the
	// others, and promoting one by name needs Force.
	// ConsistencyUnknown says why that could not be read.
	Inconsistent       map[string]string `json:"inconsistent,omitempty"`
	ConsistencyUnknown string            `json:"consistency_unknown,omitempty"`
}

// Candidate is one replica as the ranking sees it.
type Candidate struct {
	Addr string `json:"addr"`
	// Rank is 1 for the best eligible candidate, 2 for the next...; 0 for
	// an excluded one.
	Rank     int               `json:"rank"`
	Position topology.Position `json:"position"` // what it holds: received, applied or not
	Excluded bool              `json:"excluded"`
	// Inconsistent: consistency checks found it different from the
	// primary (Request.Inconsistent).
	Inconsistent bool     `json:"inconsistent,omitempty"`
	Reasons      []string `json:"reasons"`
}

// Plan is everything a promotion will do, as data. Execute runs it as is;
// `dbha promote --dry-run` prints it.
type Plan struct {
	Cluster    string          `json:"cluster"`
	Engine     topology.Engine `json:"engine"`
	Kind       Kind            `json:"kind"`
	OldPrimary string          `json:"old_primary"`
	NewPrimary string          `json:"new_primary"`
	// Target is what the new primary will hold before it takes writes:
	// everything any usable source holds.
	Target     topology.Position `json:"target"`
	Candidates []Candidate       `json:"candidates"`
	Gaps       []Gap             `json:"gaps"`
	Loss       Loss              `json:"loss"`
	// Fencing is how the old primary is secured before the new primary
	// takes writes (PlanFencing).
	Fencing Fencing `json:"fencing"`
	Steps   []Step  `json:"steps"`
	// Forced lists what --force overrode.
	Forced   []string `json:"forced,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// ConsistencyUnknown says why what consistency checks found was not
	// read (Request.ConsistencyUnknown): the ranking knew of no
	// difference, not that there is none. A warning says it too.
	ConsistencyUnknown string `json:"consistency_unknown,omitempty"`
}

// MakePlan works out a promotion from a snapshot. It is pure: no I/O, no
// clock. (DESIGN.md calls it promote.Plan; Go does not allow a function and
// a type of one name in a package, and the Plan value is what operators see.)
func MakePlan(s topology.Snapshot, r Request) (Plan, error) {
	p := Plan{Cluster: s.Cluster, Engine: s.Engine}
	old, err := oldPrimary(s, r.LastPrimary)
	if err != nil {
		return p, err
	}
	pl := &planner{s: s, old: old, r: r}
	pl.errant = pl.findErrant()
	p.OldPrimary = old.Addr
	p.Kind = Failover
	if old.Reachable {
		p.Kind = Switchover
	}

	p.Candidates = pl.rank()
	chosen, forced, err := choose(p.Candidates, r)
	if err != nil {
		return p, err
	}
	p.NewPrimary, p.Forced = chosen.Addr, forced
	p.Target, p.Warnings = pl.target(p.Kind, chosen)
	if chosen.Inconsistent && r.To == "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("no candidate without a known difference: promoting %s, which %s", chosen.Addr, r.Inconsistent[chosen.Addr]))
	}
	if r.ConsistencyUnknown != "" {
		p.ConsistencyUnknown = r.ConsistencyUnknown
		p.Warnings = append(p.Warnings, "what consistency checks found could not be read: "+r.ConsistencyUnknown)
	}
	for _, in := range s.Instances {
		switch e := pl.errant[in.Addr]; {
		case e == "":
		case in.Addr == chosen.Addr:
			p.Warnings = append(p.Warnings, fmt.Sprintf("the new primary keeps its errant transactions %s; replicas that lack them will receive them", e))
		default:
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s has errant transactions %s: it will not replicate cleanly from the new primary until they are removed or it is reseeded", in.Addr, e))
		}
	}
	p.Gaps = pl.gaps(p)
	p.Loss = pl.loss(p)
	p.Fencing = PlanFencing(s, old, p.Kind, r.Fencing)
	if r.Force && (p.Fencing.Require || p.Fencing.StopOnCommandFailure) {
		// An operator who has made sure of the old primary by other means.
		p.Fencing.Require, p.Fencing.StopOnCommandFailure = false, false
		p.Fencing.Expect = expect(p.Fencing, FencingPolicy{Leases: r.Fencing.Leases, Command: r.Fencing.Command})
		p.Forced = append(p.Forced, "fencing: promotion.require_fencing and fence_failure: stop do not stop this failover")
	}
	if p.Kind == Failover && !p.Fencing.Lossless && !r.Fencing.Leases && !r.Fencing.Command {
		p.Warnings = append(p.Warnings, "no fencing layer beyond reaching the old primary: no guard lease, no promotion.fence_command, commits that can be acknowledged alone")
	}
	p.Steps = steps(s, p)
	return p, nil
}

// planner holds what every part of planning reads.
type planner struct {
	s   topology.Snapshot
	old topology.Instance
	r   Request
	// errant maps an instance to the errant transactions it holds.
	errant map[string]string
}

// oldPrimary is the instance being replaced: the snapshot's primary, or
// the last known one when the snapshot names none and that instance is
// down. A cluster with two writable primaries is refused: dbha does not
// guess which one clients used.
func oldPrimary(s topology.Snapshot, last string) (topology.Instance, error) {
	for _, pr := range s.Problems {
		if pr.Code == topology.TwoWritablePrimaries {
			return topology.Instance{}, fmt.Errorf("cluster %s: %w: %s", s.Cluster, ErrNoPrimary, pr.Message)
		}
	}
	if in, ok := s.Instance(s.Primary); s.Primary != "" && ok {
		return in, nil
	}
	if in, ok := s.Instance(last); last != "" && ok && !in.Reachable {
		return in, nil
	}
	return topology.Instance{}, fmt.Errorf("cluster %s: %w: the snapshot names no primary", s.Cluster, ErrNoPrimary)
}

// held is what an instance holds: what it received (applied or not), or
// what it executed when it does not say.
func held(in topology.Instance) topology.Position {
	if !in.Received.IsZero() {
		return in.Received
	}
	return in.Current
}

// history is an instance's fullest GTID record: its binlog state, else its
// current position.
func history(in topology.Instance) topology.Position {
	if !in.History.IsZero() {
		return in.History
	}
	return in.Current
}

// findErrant returns each instance's errant transactions. With the primary
// alive, the snapshot compared every replica with it. With the primary gone
// (MariaDB), a replica's own writes that no other source holds are errant.
func (pl *planner) findErrant() map[string]string {
	out := map[string]string{}
	for _, in := range pl.s.Instances {
		if e := in.Errant.String(); e != "" {
			out[in.Addr] = e
			continue
		}
		if pl.old.Reachable || !in.Reachable || pl.s.Engine != topology.MariaDB {
			continue
		}
		refs := []topology.Position{pl.r.LastSeen}
		if h := pl.r.Held; h != nil {
			refs = append(refs, h.Position)
		}
		for _, other := range pl.s.Instances {
			if other.Addr != in.Addr && other.Reachable {
				refs = append(refs, history(other))
			}
		}
		if e := topology.LocalErrant(history(in), in.ServerID, refs...).String(); e != "" {
			out[in.Addr] = e
		}
	}
	return out
}

// choose picks the requested instance or the best ranked one.
func choose(cands []Candidate, r Request) (Candidate, []string, error) {
	if r.To == "" {
		if len(cands) == 0 || cands[0].Excluded {
			return Candidate{}, nil, fmt.Errorf("%w: %s", ErrNoCandidate, describeExcluded(cands))
		}
		return cands[0], nil, nil
	}
	i := slices.IndexFunc(cands, func(c Candidate) bool { return c.Addr == r.To })
	if i < 0 {
		return Candidate{}, nil, fmt.Errorf("%w: %s is not a replica of this cluster", ErrNotEligible, r.To)
	}
	c := cands[i]
	if !c.Excluded && c.Inconsistent {
		if !r.Force {
			return Candidate{}, nil, fmt.Errorf("%w: %s %s (--force promotes it anyway)", ErrNotEligible, c.Addr, r.Inconsistent[c.Addr])
		}
		return c, []string{c.Addr + " " + r.Inconsistent[c.Addr]}, nil
	}
	if !c.Excluded {
		return c, nil, nil
	}
	if !r.Force || c.Position.IsZero() {
		return Candidate{}, nil, fmt.Errorf("%w: %s: %v (--force overrides the rules, not an unreachable instance)", ErrNotEligible, c.Addr, c.Reasons)
	}
	return c, c.Reasons, nil
}

func describeExcluded(cands []Candidate) string {
	if len(cands) == 0 {
		return "the cluster has no replica"
	}
	var out []string
	for _, c := range cands {
		out = append(out, fmt.Sprintf("%s: %v", c.Addr, c.Reasons))
	}
	return fmt.Sprint(out)
}

func orEmpty(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}
