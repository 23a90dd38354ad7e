package drill

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// MatrixRow is one (fault, engine, mode, managers) row of the fault matrix
// (docs/faults.md): the figures of one drill's Summary.
type MatrixRow struct {
	Fault          string  `json:"fault"` // as Fault.String: name, percent, host, sides
	Engine         string  `json:"engine"`
	Mode           string  `json:"mode"`
	Lab            string  `json:"lab"`
	Managers       int     `json:"managers"`
	Writers        int     `json:"writers"`
	WriteTimeout   float64 `json:"write_timeout_seconds"`
	DialTimeout    float64 `json:"dial_timeout_seconds"`
	ConnLifetime   float64 `json:"conn_lifetime_seconds"`
	ExpectFailover bool    `json:"expect_failover"`
	RunsAsked      int     `json:"runs_asked"`
	Runs           int     `json:"runs"`
	Failed         int     `json:"failed"`
	NotRun         int     `json:"not_run"`
	Failovers      int     `json:"failovers"`
	MedianRTO      float64 `json:"median_rto_seconds"`
	MaxRTO         float64 `json:"max_rto_seconds"`
	AckRate        float64 `json:"acks_per_second_before_fault"`
	AckedRows      int     `json:"acked_rows"`
	InFlightRows   int     `json:"in_flight_rows"`
	LostRows       int     `json:"lost_rows"`
	TwoWriterRuns  int     `json:"two_writer_runs"`
	MaxTwoWriter   float64 `json:"max_two_writer_seconds"`
	OldAfterNew    int     `json:"old_after_new"`
	FalseFailovers int     `json:"false_failovers"`
	WholeAfterHeal int     `json:"whole_after_heal"`
	// AfterHeal is every distinct state after heal that was not simply
	// whole, and Errors every distinct run error.
	AfterHeal []string `json:"after_heal,omitempty"`
	Errors    []string `json:"errors,omitempty"`
	Pass      bool     `json:"pass"`
}

// RowOf condenses a drill's summary into a matrix row.
func RowOf(s Summary) MatrixRow {
	f := s.Fault
	expect := false
	if len(s.Runs) > 0 {
		f, expect = s.Runs[0].Fault, s.Runs[0].ExpectFailover
	}
	r := MatrixRow{Fault: f.String(), Engine: s.Engine, Mode: s.Mode, Lab: s.Lab, Managers: s.Managers, Writers: s.Writers,
		WriteTimeout: s.WriteTimeout, DialTimeout: s.DialTimeout, ConnLifetime: s.ConnLifetime,
		ExpectFailover: expect, RunsAsked: s.RunsAsked, Runs: len(s.Runs), Failed: s.Failed, NotRun: s.NotRun,
		Failovers: s.Failovers, MedianRTO: s.MedianRTO, MaxRTO: s.MaxRTO, AckRate: s.AckRate, AckedRows: s.AckedRows,
		InFlightRows: s.InFlightRows, LostRows: s.LostRows, TwoWriterRuns: s.TwoWriterRuns,
		MaxTwoWriter: s.MaxTwoWriterSeconds, OldAfterNew: s.OldAfterNew, FalseFailovers: s.FalseFailovers,
		WholeAfterHeal: s.WholeAfterHeal, Pass: s.Pass}
	for _, run := range s.Runs {
		if st := run.AfterHeal.Summary(); st != "whole" && !slices.Contains(r.AfterHeal, st) {
			r.AfterHeal = append(r.AfterHeal, st)
		}
		if run.Error != "" && !slices.Contains(r.Errors, run.Error) {
			r.Errors = append(r.Errors, run.Error)
		}
	}
	return r
}

// MatrixJSON is the rows as indented JSON, for comparison across commits.
func MatrixJSON(rows []MatrixRow) ([]byte, error) {
	return json.MarshalIndent(rows, "", "  ")
}

// MatrixMarkdown renders rows as docs/faults.md: a header that says what
// each column means, the lab mode and writers the figures come from and
// the command that made them, then one table row per MatrixRow, failed
// runs included.
func MatrixMarkdown(command string, rows []MatrixRow) string {
	var b strings.Builder
	b.WriteString("# Fault matrix\n\n")
	fmt.Fprintf(&b, "Made by `%s`. Each row is one fault against one engine in one mode, run N times by\n", command)
	b.WriteString("`dbha drill --hosts --fault NAME`: every figure comes from the clients' side. " +
		"W concurrent writers (the Writers column) each write unique ids on a connection of their own, " +
		"resolving `<cluster>-writer.service.consul` on every reconnect (deadlines: " + deadlines(rows) + "), " +
		"and record when each write was sent, when it was acknowledged (or failed, or got no answer) and which " +
		"server acknowledged it; after the heal every server's rows are read back.\n\n")
	b.WriteString("- **Lab**: `hosts` — servers, managers (`dbha run`) and Consul in network namespaces of their own on a bridge, " +
		"the writers in the clients' host; `loopback` — everything on 127.0.0.1, where a killed process resets its connections at once.\n")
	b.WriteString("- **Mode**: `async`, or `lossless` (dbha's stream acknowledges commits: MariaDB semi-sync, PostgreSQL synchronous standby, neither falling back); `+guards`: `dbha guard` beside every database server, write leases on (`promotion.lease_ttl`).\n")
	b.WriteString("- **Runs**: runs made of those asked; failed runs (an error, or the cluster not whole after the heal) are counted and shown, never dropped.\n")
	b.WriteString("- **RTO**: fault → first write acknowledged by the new primary, median / max over the runs with a failover; " +
		"`none expected` for faults that must not fail over.\n")
	b.WriteString("- **Load**: writes acknowledged per second before the fault (mean over the runs), all writers together.\n")
	b.WriteString("- **In flight**: writes sent before the fault and not answered before it — the commits actually at risk (total over the runs).\n")
	b.WriteString("- **Lost**: acknowledged writes the final primary lacks (total). Writes whose outcome was unknown are never counted as acknowledged.\n")
	b.WriteString("- **Two writers**: runs in which two instances acknowledged writes after the fault with overlapping spans; " +
		"the longest window, and the writes the old primary acknowledged after the new primary's first.\n")
	b.WriteString("- **False failovers**: runs in which the writer changed although the fault should not cause a failover " +
		"(manager-cut, a minority split, loss, a flap).\n")
	b.WriteString("- **After heal**: runs after which the cluster was whole (one writable primary, every other instance replicating from it), " +
		"and every other state seen (fenced instances with the reason, divergence: rows, errant GTIDs, rewound transactions or WAL).\n\n")
	b.WriteString("| Fault | Engine | Mode | Lab | Managers | Writers | Runs | Load | RTO median / max | In flight | Lost | Two writers | False failovers | After heal | Pass |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %s | %.0f/s | %s | %d | %d | %s | %d | %s | %s |\n",
			cell(r.Fault), cell(r.Engine), cell(r.Mode), cell(r.Lab), r.Managers, r.Writers, runsCell(r), r.AckRate, rtoCell(r),
			r.InFlightRows, r.LostRows, twoWritersCell(r), r.FalseFailovers, afterHealCell(r), passCell(r))
	}
	return b.String()
}

// deadlines lists the distinct writer deadlines of rows.
func deadlines(rows []MatrixRow) string {
	var out []string
	for _, r := range rows {
		d := fmt.Sprintf("write %g s, dial %g s, reconnect after %g s", r.WriteTimeout, r.DialTimeout, r.ConnLifetime)
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return "none recorded"
	}
	return strings.Join(out, "; ")
}

func runsCell(r MatrixRow) string {
	s := fmt.Sprintf("%d/%d", r.Runs, r.RunsAsked)
	if r.Failed > 0 || r.NotRun > 0 {
		s += fmt.Sprintf(" (**%d failed**", r.Failed)
		if r.NotRun > 0 {
			s += fmt.Sprintf(", %d not run", r.NotRun)
		}
		s += ")"
	}
	return s
}

func rtoCell(r MatrixRow) string {
	switch {
	case !r.ExpectFailover:
		return "none expected"
	case r.Failovers == 0:
		return "**no failover**"
	}
	return fmt.Sprintf("%.2f s / %.2f s", r.MedianRTO, r.MaxRTO)
}

func twoWritersCell(r MatrixRow) string {
	if r.TwoWriterRuns == 0 {
		return "none"
	}
	return fmt.Sprintf("**%d run(s)**, %.2f s, %d writes", r.TwoWriterRuns, r.MaxTwoWriter, r.OldAfterNew)
}

func afterHealCell(r MatrixRow) string {
	s := fmt.Sprintf("whole %d/%d", r.WholeAfterHeal, r.Runs)
	parts := append([]string{s}, r.AfterHeal...)
	for _, e := range r.Errors {
		parts = append(parts, "error: "+e)
	}
	return cell(strings.Join(parts, "; "))
}

func passCell(r MatrixRow) string {
	if r.Pass {
		return "yes"
	}
	return "**no**"
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
