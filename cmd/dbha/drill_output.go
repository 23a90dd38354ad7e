package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/dbha/dbha/drill"
)

// writeDrill prints a drill's summary: every run, failed ones included,
// then the totals.
func writeDrill(w io.Writer, s drill.Summary, format string) error {
	if format == "json" {
		return writeJSON(w, s)
	}
	fmt.Fprintf(w, "%s (%s, %s), %s lab, %d writers (write deadline %gs, dial %gs, reconnect after %gs; %.0f writes/s acknowledged before the fault, mean), fault %s\n",
		s.Cluster, s.Engine, s.Mode, s.Lab, s.Writers, s.WriteTimeout, s.DialTimeout, s.ConnLifetime, s.AckRate, s.Fault)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tFAULT\tOLD -> NEW\tRTO\tACKED\tACKS/S BEFORE\tIN FLIGHT\tUNKNOWN\tLOST\tTWO WRITERS\tFALSE FAILOVER\tWHOLE AFTER HEAL\tAFTER HEAL\tPASS")
	for _, r := range s.Runs {
		rto := "-"
		if r.NewPrimary != "" {
			rto = fmt.Sprintf("%.3fs", r.RTOSeconds)
		}
		lost := fmt.Sprint(r.LostRows)
		if len(r.Lost) > 0 {
			lost += fmt.Sprintf(" %v", firstN(r.Lost, 10))
		}
		if !r.LostChecked {
			lost = "not checked"
		}
		two := "none"
		if r.TwoWriters.Happened() {
			two = fmt.Sprintf("%.3fs, %d by old", r.TwoWriters.WindowSeconds, r.TwoWriters.OldAfterNew)
		}
		whole := "NO"
		if r.Recovered {
			whole = fmt.Sprintf("%.3fs", r.RejoinSeconds)
		}
		pass := fmt.Sprint(r.Pass)
		if r.Error != "" {
			pass += " (" + r.Error + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s -> %s\t%s\t%d\t%.0f\t%d\t%d\t%s\t%s\t%v\t%s\t%s\t%s\n", r.N, r.Fault, r.OldPrimary, orNone(r.NewPrimary), rto,
			r.AckedRows, r.AckRate, r.InFlightRows, r.Unknown, lost, two, r.FalseFailover, whole, r.AfterHeal.Summary(), pass)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d of %d run(s) made, %d failed; RTO median %.3fs, max %.3fs%s; %d acknowledged, %d in flight at the fault, %d lost; "+
		"two writers in %d run(s) (longest %.3fs); %d false failover(s); whole after heal %d: pass %v\n",
		len(s.Runs), s.RunsAsked, s.Failed, s.MedianRTO, s.MaxRTO, targetNote(s), s.AckedRows, s.InFlightRows, s.LostRows,
		s.TwoWriterRuns, s.MaxTwoWriterSeconds, s.FalseFailovers, s.WholeAfterHeal, s.Pass)
	return nil
}

func targetNote(s drill.Summary) string {
	if s.TargetMedianRTO == 0 && s.TargetMaxRTO == 0 {
		return ""
	}
	return fmt.Sprintf(" (targets: median <= %gs, max <= %gs)", s.TargetMedianRTO, s.TargetMaxRTO)
}

func firstN(ids []int64, n int) []int64 {
	if len(ids) > n {
		return ids[:n]
	}
	return ids
}
