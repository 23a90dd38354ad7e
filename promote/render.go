package promote

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints a plan for an operator: who is replaced by whom and why,
// what each replica lacks and where it comes from, the expected loss, and
// the steps in order.
func WriteText(w io.Writer, p Plan) error {
	var b strings.Builder
	state := "alive"
	if p.Kind == Failover {
		state = "dead or unreachable"
	}
	fmt.Fprintf(&b, "%s of %s (%s): %s (%s) -> %s\n", p.Kind, p.Cluster, p.Engine, p.OldPrimary, state, p.NewPrimary)
	fmt.Fprintf(&b, "new primary will hold: %s\n", orEmpty(p.Target.String()))

	b.WriteString("candidates:\n")
	for _, c := range p.Candidates {
		rank := fmt.Sprintf("%d", c.Rank)
		if c.Excluded {
			rank = "-"
		}
		fmt.Fprintf(&b, "  %-2s %-22s %s\n", rank, c.Addr, strings.Join(c.Reasons, "; "))
	}
	b.WriteString("gaps:\n")
	for _, g := range p.Gaps {
		lacks := fmt.Sprintf("%d trx", g.Transactions)
		if p.Engine == "postgres" {
			lacks = fmt.Sprintf("%d bytes", g.Bytes)
		}
		var from []string
		for _, s := range g.From {
			where := string(s.Kind)
			if s.Addr != "" {
				where += " " + s.Addr
			}
			from = append(from, fmt.Sprintf("%s up to %s", where, orEmpty(s.Upto.String())))
		}
		if len(from) == 0 {
			from = []string{"nothing to fetch"}
		}
		fmt.Fprintf(&b, "  %-22s has %s, lacks %s; from: %s\n", g.Instance, orEmpty(g.Has.String()), lacks, strings.Join(from, ", then "))
	}
	fmt.Fprintf(&b, "expected loss: %s\n", p.Loss.Detail)
	fmt.Fprintf(&b, "fencing of %s: %s\n", p.OldPrimary, orEmpty(p.Fencing.Expect))
	for _, f := range p.Forced {
		fmt.Fprintf(&b, "FORCED past: %s\n", f)
	}
	for _, wn := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", wn)
	}
	b.WriteString("steps:\n")
	for _, s := range p.Steps {
		line := fmt.Sprintf("  %2d. %-15s", s.N, s.Action)
		if s.Target != "" {
			line += " " + s.Target
		}
		if s.Source != "" {
			line += " from " + s.Source
		}
		if !s.Position.IsZero() {
			line += " to " + s.Position.String()
		}
		if s.Detail != "" {
			line += "  (" + s.Detail + ")"
		}
		b.WriteString(line + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
