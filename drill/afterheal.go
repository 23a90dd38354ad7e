package drill

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dbha/dbha/topology"
)

// AfterHeal is the cluster as it stood once the fault was healed and the
// drill stopped waiting: what dbha promises is one writable primary and
// every other instance either replicating from it or fenced with a reason,
// and an old primary's divergence reported.
type AfterHeal struct {
	// Whole: one writable primary, every other instance replicating from
	// it, no problem reported.
	Whole   bool   `json:"whole"`
	Primary string `json:"primary,omitempty"`
	// Writable are the instances that take writes; more than one is two
	// primaries.
	Writable    []string `json:"writable,omitempty"`
	Replicating []string `json:"replicating,omitempty"`
	Fenced      []Fenced `json:"fenced,omitempty"`
	Unreachable []string `json:"unreachable,omitempty"`
	// Divergence lists the instances whose rows, transactions or WAL
	// differ from the primary's.
	Divergence []Divergence `json:"divergence,omitempty"`
	Problems   []string     `json:"problems,omitempty"`
}

// Fenced is an instance that neither takes writes nor replicates from the
// primary, and why.
type Fenced struct {
	Addr   string `json:"addr"`
	Reason string `json:"reason"`
}

// Divergence is how one instance differs from the final primary.
type Divergence struct {
	Addr string `json:"addr"`
	// Extra counts the drill's rows this instance holds and the final
	// primary lacks; Missing the rows the primary holds and it lacks (a
	// replica still behind, or one cut off).
	Extra   int `json:"extra_rows,omitempty"`
	Missing int `json:"missing_rows,omitempty"`
	// Errant are MariaDB's errant GTIDs, TimelineForked a PostgreSQL
	// timeline that left the primary's, as discovery reports them.
	Errant         string `json:"errant,omitempty"`
	TimelineForked bool   `json:"timeline_forked,omitempty"`
	// RewoundTransactions / RewoundBytes: what dbha saved and undone on it
	// to rejoin it (the latest recovery's ledger).
	RewoundTransactions int   `json:"rewound_transactions,omitempty"`
	RewoundBytes        int64 `json:"rewound_wal_bytes,omitempty"`
}

func (d Divergence) zero() bool {
	return d.Extra == 0 && d.Missing == 0 && d.Errant == "" && !d.TimelineForked &&
		d.RewoundTransactions == 0 && d.RewoundBytes == 0
}

// StateOf reads the state after heal from a topology snapshot: which
// instance is the primary, which replicate from it, which are fenced (with
// the problems discovery reports for them as the reason), errant
// transactions and forked timelines.
func StateOf(s topology.Snapshot) AfterHeal {
	a := AfterHeal{Primary: s.Primary, Whole: s.Healthy() && s.Primary != ""}
	reasons := map[string][]string{}
	for _, p := range s.Problems {
		a.Problems = append(a.Problems, fmt.Sprintf("%s: %s", p.Code, p.Message))
		if p.Instance != "" {
			reasons[p.Instance] = append(reasons[p.Instance], string(p.Code))
		}
	}
	for _, in := range s.Instances {
		r := in.Replication
		switch {
		case !in.Reachable:
			a.Unreachable = append(a.Unreachable, in.Addr)
		case !in.ReadOnly:
			a.Writable = append(a.Writable, in.Addr)
		case in.Addr != s.Primary && r != nil && r.Source == s.Primary && r.IORunning && r.SQLRunning:
			a.Replicating = append(a.Replicating, in.Addr)
		default:
			a.Fenced = append(a.Fenced, Fenced{Addr: in.Addr, Reason: fenceReason(in, reasons[in.Addr])})
		}
		d := Divergence{Addr: in.Addr, TimelineForked: slices.Contains(reasons[in.Addr], string(topology.TimelineForked))}
		if !in.Errant.IsZero() {
			d.Errant = in.Errant.String()
		}
		if !d.zero() {
			a.Divergence = append(a.Divergence, d)
		}
	}
	return a
}

// fenceReason says why a read-only instance does not replicate.
func fenceReason(in topology.Instance, codes []string) string {
	var why []string
	if r := in.Replication; r == nil {
		why = append(why, "read-only, no replication configured")
	} else {
		switch {
		case r.Halted:
			why = append(why, "read-only, replication halted")
		case !r.IORunning || !r.SQLRunning:
			why = append(why, fmt.Sprintf("read-only, replication from %s not running (io %s, sql %s)", r.Source, r.IOState, r.SQLState))
		default:
			why = append(why, "read-only, replicating from "+r.Source)
		}
	}
	why = append(why, codes...)
	return strings.Join(why, "; ")
}

// addContent adds to a how every instance's final rows differ from the
// final primary's.
func (a *AfterHeal) addContent(final map[string]map[int64]int, primary string) {
	want, ok := final[primary]
	if !ok {
		return
	}
	for addr, have := range final {
		if addr == primary {
			continue
		}
		var d Divergence
		for id := range have {
			if _, ok := want[id]; !ok {
				d.Extra++
			}
		}
		for id := range want {
			if _, ok := have[id]; !ok {
				d.Missing++
			}
		}
		if d.Extra > 0 || d.Missing > 0 {
			a.divergenceOf(addr).Extra, a.divergenceOf(addr).Missing = d.Extra, d.Missing
		}
	}
	slices.SortFunc(a.Divergence, func(x, y Divergence) int { return strings.Compare(x.Addr, y.Addr) })
}

// divergenceOf returns the entry of addr, added when missing.
func (a *AfterHeal) divergenceOf(addr string) *Divergence {
	for i := range a.Divergence {
		if a.Divergence[i].Addr == addr {
			return &a.Divergence[i]
		}
	}
	a.Divergence = append(a.Divergence, Divergence{Addr: addr})
	return &a.Divergence[len(a.Divergence)-1]
}

// AddRewound records what the latest recovery rewound on addr.
func (a *AfterHeal) AddRewound(addr string, transactions int, walBytes int64) {
	if transactions == 0 && walBytes == 0 {
		return
	}
	d := a.divergenceOf(addr)
	d.RewoundTransactions, d.RewoundBytes = transactions, walBytes
}

// Summary is one line: "whole", or what is not ("not read" when the run
// ended before the state was read).
func (a AfterHeal) Summary() string {
	if a.Primary == "" && !a.Whole && len(a.Writable)+len(a.Replicating)+len(a.Fenced)+len(a.Unreachable)+len(a.Problems) == 0 {
		return "not read"
	}
	var parts []string
	if a.Whole {
		parts = append(parts, "whole")
	} else {
		parts = append(parts, "NOT whole")
	}
	if len(a.Writable) > 1 {
		parts = append(parts, fmt.Sprintf("%d writable", len(a.Writable)))
	}
	for _, f := range a.Fenced {
		parts = append(parts, "fenced "+f.Addr+" ("+f.Reason+")")
	}
	if len(a.Unreachable) > 0 {
		parts = append(parts, "unreachable "+strings.Join(a.Unreachable, ","))
	}
	for _, d := range a.Divergence {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, "; ")
}

func (d Divergence) String() string {
	var parts []string
	if d.RewoundTransactions > 0 {
		parts = append(parts, fmt.Sprintf("%d trx rewound", d.RewoundTransactions))
	}
	if d.RewoundBytes > 0 {
		parts = append(parts, fmt.Sprintf("%d B WAL rewound", d.RewoundBytes))
	}
	if d.Errant != "" {
		parts = append(parts, "errant "+d.Errant)
	}
	if d.TimelineForked {
		parts = append(parts, "timeline forked")
	}
	if d.Extra > 0 {
		parts = append(parts, fmt.Sprintf("%d rows the primary lacks", d.Extra))
	}
	if d.Missing > 0 {
		parts = append(parts, fmt.Sprintf("%d rows missing", d.Missing))
	}
	return d.Addr + ": " + strings.Join(parts, ", ")
}
