package drill

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// okRun is a recovered run with a failover in rto seconds.
func okRun(n int, rto float64) Run {
	r := Run{N: n, ExpectFailover: true, Recovered: true, Pass: true, AfterHeal: AfterHeal{Whole: true}}
	r.NewPrimary, r.RTOSeconds, r.AckedRows, r.InFlightRows, r.LostChecked = "new", rto, 100, 3, true
	return r
}

func TestSummarise(t *testing.T) {
	o := DefaultOptions()
	o.TargetMedian, o.TargetMax = 2*time.Second, 3*time.Second
	cases := []struct {
		name                    string
		asked                   int
		runs                    []Run
		median, max             float64
		failed, notRun, falseFO int
		pass                    bool
	}{
		{"all fast", 3, []Run{okRun(1, 0.5), okRun(2, 1.5), okRun(3, 0.7)}, 0.7, 1.5, 0, 0, 0, true},
		{"even count takes the middle two", 4, []Run{okRun(1, 1), okRun(2, 2), okRun(3, 3), okRun(4, 0.5)}, 1.5, 3, 0, 0, 0, true},
		{"a failed run is counted, not dropped", 2, []Run{okRun(1, 0.5), func() Run {
			r := okRun(2, 0)
			r.NewPrimary, r.Error, r.Recovered, r.Pass = "", "no write reached a new primary", false, false
			return r
		}()}, 0.5, 0.5, 1, 0, 0, false},
		{"runs not made after a broken one", 3, []Run{func() Run {
			r := okRun(1, 0.5)
			r.Recovered, r.Error, r.Pass = false, "not whole", false
			return r
		}()}, 0.5, 0.5, 1, 2, 0, false},
		{"the median over target fails the drill", 3, []Run{okRun(1, 2.5), okRun(2, 2.6), okRun(3, 0.1)}, 2.5, 2.6, 0, 0, 0, false},
		{"a false failover is counted, its RTO is not", 1, []Run{func() Run {
			r := okRun(1, 4)
			r.ExpectFailover, r.FalseFailover, r.Pass = false, true, false
			return r
		}()}, 0, 0, 0, 0, 1, false},
		{"no run", 1, nil, 0, 0, 0, 1, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o.Runs = tc.asked
			s := Summarise(o, tc.runs)
			if s.MedianRTO != tc.median || s.MaxRTO != tc.max || s.Failed != tc.failed || s.NotRun != tc.notRun ||
				s.FalseFailovers != tc.falseFO || s.Pass != tc.pass {
				t.Errorf("median %v max %v failed %d not run %d false %d pass %v; want %v %v %d %d %d %v",
					s.MedianRTO, s.MaxRTO, s.Failed, s.NotRun, s.FalseFailovers, s.Pass,
					tc.median, tc.max, tc.failed, tc.notRun, tc.falseFO, tc.pass)
			}
			if len(s.Runs) != len(tc.runs) || s.Writers != 8 {
				t.Errorf("%d runs, %d writers", len(s.Runs), s.Writers)
			}
		})
	}
}

func TestTargetsFromTheCatalogue(t *testing.T) {
	o := DefaultOptions()
	o.Fault = Fault{Name: "host-down"}
	if m, x := o.Targets(); m != 2500*time.Millisecond || x != 4*time.Second {
		t.Errorf("host-down targets %v %v", m, x)
	}
	o.Fault = Fault{Name: "manager-cut"}
	if m, x := o.Targets(); m != 0 || x != 0 {
		t.Errorf("manager-cut targets %v %v, want none", m, x)
	}
	o.TargetMax = time.Second
	if _, x := o.Targets(); x != time.Second {
		t.Errorf("the options' target is not used: %v", x)
	}
}

func TestRunJSONKeepsTheDrillFields(t *testing.T) {
	r := okRun(1, 0.5)
	r.OldPrimary, r.LostRows, r.Lost = "old", 2, []int64{7, 9}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"n":1`, `"old_primary":"old"`, `"new_primary":"new"`, `"rto_seconds":0.5`, `"acked_rows":100`,
		`"lost_rows":2`, `"lost":[7,9]`, `"in_flight_rows":3`, `"writers":0`, `"lab":""`, `"two_writers":{`, `"after_heal":{`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("%s missing from %s", key, raw)
		}
	}
}

func TestMatrix(t *testing.T) {
	o := DefaultOptions()
	o.Runs, o.Engine, o.Mode, o.Lab, o.Managers = 2, "mariadb", "async", LabHosts, []string{"manager-1"}
	o.Fault = Fault{Name: "isolate"}
	two := okRun(2, 1.2)
	two.TwoWriters = TwoWriters{WindowSeconds: 3.5, OldAfterNew: 40}
	two.Pass = false
	two.AfterHeal = AfterHeal{Whole: false, Fenced: []Fenced{{Addr: "old", Reason: "read-only | halted"}}}
	two.Error = "not whole"
	one := okRun(1, 0.8)
	one.AckRate, two.AckRate = 100, 300
	one.Fault = Fault{Name: "isolate", Host: "mariadb-1"}
	rows := []MatrixRow{RowOf(Summarise(o, []Run{one, two}))}
	r := rows[0]
	if r.Fault != "isolate mariadb-1" || r.Runs != 2 || r.Failed != 1 || r.TwoWriterRuns != 1 || r.MaxTwoWriter != 3.5 ||
		r.OldAfterNew != 40 || r.WholeAfterHeal != 1 || len(r.AfterHeal) != 1 || len(r.Errors) != 1 || r.Managers != 1 || r.WriteTimeout != 1 {
		t.Errorf("row %+v", r)
	}
	md := MatrixMarkdown("make faults", rows)
	for _, want := range []string{"`make faults`", "| Fault | Engine |", "| isolate mariadb-1 | mariadb | async | hosts | 1 | 8 | 2/2 (**1 failed**) | 200/s | 1.00 s / 1.20 s | 6 | 0 | **1 run(s)**, 3.50 s, 40 writes | 0 |",
		`read-only \| halted`, "error: not whole", "**no** |", "write 1 s, dial 0.5 s", "In flight"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	noFailover := RowOf(Summarise(Options{Runs: 1, Fault: Fault{Name: "manager-cut"}}, []Run{{Recovered: true, Pass: true}}))
	if c := rtoCell(noFailover); c != "none expected" {
		t.Errorf("manager-cut RTO cell %q", c)
	}
	raw, err := MatrixJSON(rows)
	if err != nil || !strings.Contains(string(raw), `"two_writer_runs": 1`) {
		t.Errorf("json %s %v", raw, err)
	}
}
