package drill

import (
	"slices"
	"time"
)

// Observation is everything a run's verdict is computed from: the history
// the writers recorded, when the fault was injected and healed, and what
// every server held at the end.
type Observation struct {
	History []Write
	// Fault is when the fault was injected (just before Inject was
	// called); Healed when the heal began (zero when none was needed).
	Fault, Healed time.Time
	// OldPrimary is the primary's address before the fault.
	OldPrimary string
	// ExpectFailover: the fault should make another instance the primary
	// (kill, host-down, ...). When false (manager-cut, a minority split,
	// packet loss, a flap), any change of writer is a false failover.
	ExpectFailover bool
	// Final holds, by address, the ids each instance held at the end (each
	// with the writer number stored in its row). An instance that could not
	// be read is absent.
	Final map[string]map[int64]int
	// FinalPrimary is the primary once the cluster was whole again; "" when
	// it never settled on one.
	FinalPrimary string
	// Identities is what each instance reports as its identity (see
	// Conn.Server), by address; an instance that could not be asked is
	// absent.
	Identities map[string]string
}

// Verdict is what one run cost, from the clients' side.
type Verdict struct {
	Sent      int `json:"sent"`
	AckedRows int `json:"acked_rows"`
	Refused   int `json:"refused"`
	Unknown   int `json:"unknown"`
	// InFlight are the writes sent before the fault and not answered before
	// it: the commits actually at risk when it struck.
	InFlight []int64 `json:"in_flight"`
	// NewPrimary is the first instance other than the old primary to
	// acknowledge a write after the fault ("" when none did); RTOSeconds is
	// from the fault to that acknowledgement (0 when none).
	NewPrimary string  `json:"new_primary,omitempty"`
	RTOSeconds float64 `json:"rto_seconds"`
	// FalseFailover: the writer changed although the fault should not have
	// caused a failover.
	FalseFailover bool `json:"false_failover"`
	// Lost are the acknowledged ids the final primary lacks; LostChecked
	// is false when there was no final primary to look in.
	Lost        []int64    `json:"lost"`
	LostChecked bool       `json:"lost_checked"`
	TwoWriters  TwoWriters `json:"two_writers"`
	// AckRate is how many writes per second were acknowledged before the
	// fault (from the first write sent to the fault): the load the figures
	// were measured under.
	AckRate float64 `json:"acks_per_second_before_fault"`
	// MaxGapSeconds is the longest time after the fault during which no
	// write was acknowledged, up to the last answer the writers had.
	MaxGapSeconds float64 `json:"max_gap_seconds"`
	// UnknownCommitted counts the writes of unknown outcome that the final
	// primary holds (committed after all; nothing was promised for them).
	UnknownCommitted int `json:"unknown_committed"`
	// RefusedPresent are refused writes the final primary holds: a refusal
	// that was not one, which would make the lost figure wrong.
	RefusedPresent []int64 `json:"refused_present,omitempty"`
	// WrongWriter are rows of the final primary whose stored writer number
	// is not the one that sent that id.
	WrongWriter []int64 `json:"wrong_writer,omitempty"`
	// Misattributed are acknowledged writes whose connection reported
	// another identity than the instance at that address reports now.
	Misattributed []int64 `json:"misattributed,omitempty"`
}

// TwoWriters is how long, after the fault, two instances both
// acknowledged writes.
type TwoWriters struct {
	// Instances are the addresses that acknowledged writes after the
	// fault, in the order of their first acknowledgement.
	Instances []string `json:"instances,omitempty"`
	// WindowSeconds is how long the acknowledgement spans (first to last
	// acknowledgement after the fault) of two or more instances overlapped.
	WindowSeconds float64 `json:"window_seconds"`
	// OldAfterNew counts the writes the old primary acknowledged after the
	// new primary's first acknowledged write.
	OldAfterNew int `json:"old_after_new"`
}

// Happened reports whether two instances acknowledged writes at once.
func (t TwoWriters) Happened() bool { return t.WindowSeconds > 0 || t.OldAfterNew > 0 }

// Analyze computes the verdict of one run. It is a pure function of o.
func Analyze(o Observation) Verdict {
	var v Verdict
	for _, w := range o.History {
		v.Sent++
		switch w.Outcome {
		case Acked:
			v.AckedRows++
		case Refused:
			v.Refused++
		default:
			v.Unknown++
		}
		if w.Sent.Before(o.Fault) && !w.Done.Before(o.Fault) {
			v.InFlight = append(v.InFlight, w.ID)
		}
		if w.Outcome == Acked {
			if id, ok := o.Identities[w.Addr]; ok && id != w.Server {
				v.Misattributed = append(v.Misattributed, w.ID)
			}
		}
	}
	after := acksAfter(o.History, o.Fault)
	for _, w := range after {
		if w.Addr != o.OldPrimary {
			v.NewPrimary, v.RTOSeconds = w.Addr, w.Done.Sub(o.Fault).Seconds()
			break
		}
	}
	changed := v.NewPrimary != "" || (o.FinalPrimary != "" && o.FinalPrimary != o.OldPrimary)
	v.FalseFailover = !o.ExpectFailover && changed
	v.TwoWriters = twoWriters(after, o.OldPrimary, v.NewPrimary)
	v.MaxGapSeconds = maxGap(after, o.Fault, lastAnswer(o.History)).Seconds()
	v.AckRate = ackRate(o.History, o.Fault)
	if final, ok := o.Final[o.FinalPrimary]; ok && o.FinalPrimary != "" {
		v.LostChecked = true
		v.checkFinal(o.History, final)
	}
	sortIDs(v.InFlight, v.Lost, v.RefusedPresent, v.WrongWriter, v.Misattributed)
	return v
}

// checkFinal compares the history with the final primary's rows.
func (v *Verdict) checkFinal(history []Write, final map[int64]int) {
	for _, w := range history {
		writer, held := final[w.ID]
		switch {
		case w.Outcome == Acked && !held:
			v.Lost = append(v.Lost, w.ID)
		case w.Outcome == Unknown && held:
			v.UnknownCommitted++
		case w.Outcome == Refused && held:
			v.RefusedPresent = append(v.RefusedPresent, w.ID)
		}
		if held && writer != w.Writer {
			v.WrongWriter = append(v.WrongWriter, w.ID)
		}
	}
}

// acksAfter returns the writes acknowledged at or after t, in the order
// of their acknowledgement.
func acksAfter(history []Write, t time.Time) []Write {
	var out []Write
	for _, w := range history {
		if w.Outcome == Acked && !w.Done.Before(t) {
			out = append(out, w)
		}
	}
	slices.SortStableFunc(out, func(a, b Write) int { return a.Done.Compare(b.Done) })
	return out
}

// twoWriters measures the overlap of the instances' acknowledgement spans
// in acks (sorted by acknowledgement).
func twoWriters(acks []Write, old, newPrimary string) TwoWriters {
	type span struct{ first, last time.Time }
	spans := map[string]*span{}
	var t TwoWriters
	for _, w := range acks {
		s, ok := spans[w.Addr]
		if !ok {
			spans[w.Addr] = &span{w.Done, w.Done}
			t.Instances = append(t.Instances, w.Addr)
			continue
		}
		s.last = w.Done
	}
	if newPrimary != "" {
		firstNew := spans[newPrimary].first
		for _, w := range acks {
			if w.Addr == old && w.Done.After(firstNew) {
				t.OldAfterNew++
			}
		}
	}
	// Sweep the span ends: the window is the time during which at least
	// two spans are open.
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.first, +1}, edge{s.last, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return b.delta - a.delta // opening before closing at the same instant
	})
	open := 0
	var window time.Duration
	for i, e := range edges {
		if open >= 2 && i > 0 {
			window += e.at.Sub(edges[i-1].at)
		}
		open += e.delta
	}
	t.WindowSeconds = window.Seconds()
	return t
}

// maxGap is the longest time in [fault, end] without an acknowledgement
// (acks sorted by acknowledgement, all at or after fault).
func maxGap(acks []Write, fault, end time.Time) time.Duration {
	if end.Before(fault) {
		return 0
	}
	var gap time.Duration
	prev := fault
	for _, w := range acks {
		gap = max(gap, w.Done.Sub(prev))
		prev = w.Done
	}
	return max(gap, end.Sub(prev))
}

// ackRate is the acknowledgements per second before fault, from the
// first write sent.
func ackRate(history []Write, fault time.Time) float64 {
	var first time.Time
	n := 0
	for _, w := range history {
		if first.IsZero() || w.Sent.Before(first) {
			first = w.Sent
		}
		if w.Outcome == Acked && w.Done.Before(fault) {
			n++
		}
	}
	if d := fault.Sub(first); n > 0 && d > 0 {
		return float64(n) / d.Seconds()
	}
	return 0
}

// lastAnswer is when the last answer of the history came back.
func lastAnswer(history []Write) time.Time {
	var t time.Time
	for _, w := range history {
		if w.Done.After(t) {
			t = w.Done
		}
	}
	return t
}

func sortIDs(lists ...[]int64) {
	for _, l := range lists {
		slices.Sort(l)
	}
}
