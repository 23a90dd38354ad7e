package checksum

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is one run over a cluster.
type Report struct {
	Cluster  string        `json:"cluster"`
	Engine   string        `json:"engine"`
	Primary  string        `json:"primary"`
	Replicas []string      `json:"replicas"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Tables   []TableReport `json:"tables"`
	// Skipped are the tables not checked, with why.
	Skipped []Skipped `json:"skipped,omitempty"`
	// Lost are the replicas that could not be checked to the end (gone
	// mid-run, or never reached), with why; what they were not compared
	// on is not proven.
	Lost []ReplicaProblem `json:"lost_replicas,omitempty"`
}

// TableReport is one table's outcome.
type TableReport struct {
	Table   string  `json:"table"`
	Chunks  int     `json:"chunks"`
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	// Differences are the chunks where a replica differs from the
	// primary.
	Differences []Difference `json:"differences,omitempty"`
	// Unstable are the chunks (PostgreSQL) that writes kept changing on
	// the primary through every attempt: not compared, not a difference.
	Unstable []string `json:"unstable_chunks,omitempty"`
	// Changing counts the rows (PostgreSQL) that writes changed while
	// their chunk was compared: the rest of their chunk was compared, they
	// were not (the next run compares them when they are quiet).
	Changing int64 `json:"rows_changing,omitempty"`
	// Error ends a table's check early (dropped mid-run, a lock wait).
	Error string `json:"error,omitempty"`
}

// Difference is one chunk on which one replica differs.
type Difference struct {
	Chunk int    `json:"chunk"`
	Range string `json:"range"`
	// Lower and Upper bound the chunk's keys: (Lower, Upper]; null for the
	// table's start or end.
	Lower       Key    `json:"lower"`
	Upper       Key    `json:"upper"`
	Replica     string `json:"replica"`
	PrimaryRows int64  `json:"primary_rows"`
	ReplicaRows int64  `json:"replica_rows"`
	PrimaryCRC  string `json:"primary_checksum"`
	ReplicaCRC  string `json:"replica_checksum"`
	// Keys are the differing rows' keys, when known (PostgreSQL always;
	// MariaDB with Options.Rows): rows that differ or that one side lacks.
	Keys []Key `json:"keys,omitempty"`
	// RowsNote says why no row is named when they were looked for.
	RowsNote string `json:"rows_note,omitempty"`
}

// Skipped is a table not checked.
type Skipped struct {
	Table  string `json:"table"`
	Reason string `json:"reason"`
	// Missing: a table named (Options.Tables) that does not exist.
	Missing bool `json:"missing,omitempty"`
}

// Missing are the tables named that do not exist.
func (r Report) Missing() []string {
	var out []string
	for _, s := range r.Skipped {
		if s.Missing {
			out = append(out, s.Table)
		}
	}
	return out
}

// ReplicaProblem is a replica that could not be compared on everything.
type ReplicaProblem struct {
	Replica string `json:"replica"`
	Reason  string `json:"reason"`
}

// Differences counts the differing chunks, over every table and replica.
func (r Report) Differences() int {
	n := 0
	for _, t := range r.Tables {
		n += len(t.Differences)
	}
	return n
}

// Complete says whether everything asked for was compared on every
// replica: no table cut short, no chunk left unstable, no replica lost.
// Skipped tables are reported, and do not make a run incomplete.
func (r Report) Complete() bool {
	for _, t := range r.Tables {
		if t.Error != "" || len(t.Unstable) > 0 {
			return false
		}
	}
	return len(r.Lost) == 0
}

// WriteText writes the report for a terminal.
func (r Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "checksum of %s (%s): primary %s against %s, %s\n", r.Cluster, r.Engine, r.Primary, strings.Join(r.Replicas, ", "),
		r.Finished.Sub(r.Started).Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tCHUNKS\tROWS\tSECONDS\tDIFFERING CHUNKS\tNOTE")
	for _, t := range r.Tables {
		note := t.Error
		if len(t.Unstable) > 0 {
			note = strings.TrimPrefix(note+"; ", "; ") + fmt.Sprintf("%d chunk(s) kept changing: not compared", len(t.Unstable))
		}
		if t.Changing > 0 {
			note = strings.TrimPrefix(note+"; ", "; ") + fmt.Sprintf("%d row(s) changed while compared: not compared", t.Changing)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%d\t%s\n", t.Table, t.Chunks, t.Rows, t.Seconds, len(t.Differences), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range r.Tables {
		for _, d := range t.Differences {
			fmt.Fprintf(w, "DIFFERENT: %s chunk %d, keys %s: %s has %d rows (checksum %s), the primary %d (checksum %s)\n",
				t.Table, d.Chunk, d.Range, d.Replica, d.ReplicaRows, d.ReplicaCRC, d.PrimaryRows, d.PrimaryCRC)
			for _, k := range d.Keys {
				fmt.Fprintf(w, "  row %s\n", k)
			}
			if d.RowsNote != "" {
				fmt.Fprintf(w, "  %s\n", d.RowsNote)
			}
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped: %s: %s\n", s.Table, s.Reason)
	}
	for _, l := range r.Lost {
		fmt.Fprintf(w, "not compared to the end: %s: %s\n", l.Replica, l.Reason)
	}
	verdict := "consistent: every replica holds the primary's data"
	switch {
	case r.Differences() > 0:
		verdict = fmt.Sprintf("DIFFERENT: %d chunk(s) differ", r.Differences())
	case !r.Complete():
		verdict = "no difference found, but the check is incomplete (above)"
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}
