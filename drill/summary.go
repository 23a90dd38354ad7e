package drill

import (
	"slices"
	"time"
)

// Summary is a whole drill: one fault, one cluster, every run asked for.
type Summary struct {
	Cluster  string `json:"cluster"`
	Engine   string `json:"engine"`
	Mode     string `json:"mode"`
	Lab      string `json:"lab"`
	Fault    Fault  `json:"fault"`
	Writers  int    `json:"writers"`
	Managers int    `json:"managers,omitempty"`
	// The writers' deadlines, in seconds.
	WriteTimeout float64 `json:"write_timeout_seconds"`
	DialTimeout  float64 `json:"dial_timeout_seconds"`
	// ConnLifetime: each writer reconnected (and looked the endpoint up)
	// after this many seconds on one connection (0: only after an error).
	ConnLifetime float64 `json:"conn_lifetime_seconds"`
	// RunsAsked is how many runs were asked for; Runs holds every run
	// made, recovered or not; NotRun counts those never started because an
	// earlier run left the cluster broken.
	RunsAsked int   `json:"runs_asked"`
	Runs      []Run `json:"runs"`
	NotRun    int   `json:"not_run"`
	// Failed counts the runs with an error or a cluster not whole after
	// the heal.
	Failed int `json:"failed"`
	// Failovers counts the runs where a new primary took writes; the RTO
	// figures are over those where one was expected.
	Failovers int     `json:"failovers"`
	MedianRTO float64 `json:"median_rto_seconds"`
	MaxRTO    float64 `json:"max_rto_seconds"`
	// AckRate is the mean of the runs' acknowledgements per second before
	// the fault: the load.
	AckRate float64 `json:"acks_per_second_before_fault"`
	// Totals over the runs.
	AckedRows    int `json:"acked_rows"`
	InFlightRows int `json:"in_flight_rows"`
	UnknownRows  int `json:"unknown_rows"`
	LostRows     int `json:"lost_rows"`
	// TwoWriterRuns counts the runs with two writers; MaxTwoWriterSeconds
	// is the longest window, OldAfterNew the total of writes the old
	// primary acknowledged after the new primary's first.
	TwoWriterRuns       int     `json:"two_writer_runs"`
	MaxTwoWriterSeconds float64 `json:"max_two_writer_seconds"`
	OldAfterNew         int     `json:"old_after_new"`
	FalseFailovers      int     `json:"false_failovers"`
	// WholeAfterHeal counts the runs after which the cluster was whole.
	WholeAfterHeal  int     `json:"whole_after_heal"`
	TargetMedianRTO float64 `json:"target_median_rto_seconds,omitempty"`
	TargetMaxRTO    float64 `json:"target_max_rto_seconds,omitempty"`
	Pass            bool    `json:"pass"`
	// Started and Finished bound the whole drill.
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Summarise totals runs made under o. Pure.
func Summarise(o Options, runs []Run) Summary {
	median, maxRTO := o.Targets()
	s := Summary{Cluster: o.Cluster, Engine: o.Engine, Mode: o.Mode, Lab: o.Lab, Fault: o.Fault,
		Writers: o.Writers.Writers, Managers: len(o.Managers),
		WriteTimeout: o.Writers.WriteTimeout.Seconds(), DialTimeout: o.Writers.DialTimeout.Seconds(), ConnLifetime: o.Writers.ConnLifetime.Seconds(), RunsAsked: o.Runs, Runs: runs,
		NotRun: max(0, o.Runs-len(runs)), TargetMedianRTO: median.Seconds(), TargetMaxRTO: maxRTO.Seconds()}
	var rtos []float64
	pass := len(runs) > 0 && s.NotRun == 0
	for _, r := range runs {
		if r.Error != "" || !r.Recovered {
			s.Failed++
		}
		if r.NewPrimary != "" {
			s.Failovers++
			if r.ExpectFailover {
				rtos = append(rtos, r.RTOSeconds)
			}
		}
		s.AckedRows += r.AckedRows
		s.AckRate += r.AckRate / float64(len(runs))
		s.InFlightRows += r.InFlightRows
		s.UnknownRows += r.Unknown
		s.LostRows += r.LostRows
		if r.TwoWriters.Happened() {
			s.TwoWriterRuns++
		}
		s.MaxTwoWriterSeconds = max(s.MaxTwoWriterSeconds, r.TwoWriters.WindowSeconds)
		s.OldAfterNew += r.TwoWriters.OldAfterNew
		if r.FalseFailover {
			s.FalseFailovers++
		}
		if r.AfterHeal.Whole {
			s.WholeAfterHeal++
		}
		pass = pass && r.Pass
	}
	s.MedianRTO, s.MaxRTO = medianMax(rtos)
	s.Pass = pass && (median == 0 || s.MedianRTO <= median.Seconds())
	return s
}

// medianMax of xs; zeros when empty.
func medianMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	mid := len(xs) / 2
	m := xs[mid]
	if len(xs)%2 == 0 {
		m = (xs[mid-1] + xs[mid]) / 2
	}
	return m, xs[len(xs)-1]
}
