package drill

import (
	"testing"
	"time"
)

func TestRTO(t *testing.T) {
	t0 := time.Unix(1000, 0)
	acks := []ack{
		{1, "old", t0}, {2, "old", t0.Add(10 * time.Millisecond)},
		{3, "new", t0.Add(1510 * time.Millisecond)}, {4, "new", t0.Add(1520 * time.Millisecond)},
	}
	got, n := rto(acks, "old", "new")
	if n != 4 || got < 1.4999 || got > 1.5001 {
		t.Fatalf("rto = %v over %d acks, want 1.5s over 4", got, n)
	}
}

func TestSummarise(t *testing.T) {
	o := Options{TargetMedian: 2 * time.Second, TargetMax: 3 * time.Second}
	cases := []struct {
		name   string
		runs   []Run
		median float64
		max    float64
		pass   bool
	}{
		{"all fast, none lost", []Run{{RTOSeconds: 0.5}, {RTOSeconds: 1.5}, {RTOSeconds: 0.7}}, 0.7, 1.5, true},
		{"even count takes the middle two", []Run{{RTOSeconds: 1}, {RTOSeconds: 2}, {RTOSeconds: 3}, {RTOSeconds: 0.5}}, 1.5, 3, true},
		{"a lost row fails", []Run{{RTOSeconds: 0.5, LostRows: 1}}, 0.5, 0.5, false},
		{"a slow run fails", []Run{{RTOSeconds: 0.5}, {RTOSeconds: 3.5}, {RTOSeconds: 0.6}}, 0.6, 3.5, false},
		{"a failed run fails", []Run{{RTOSeconds: 0.5}, {Error: "no new primary"}}, 0.5, 0.5, false},
		{"no run", nil, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Summary{Runs: tc.runs}
			s.summarise(o)
			if s.MedianRTO != tc.median || s.MaxRTO != tc.max || s.Pass != tc.pass {
				t.Fatalf("median %v max %v pass %v; want %v %v %v", s.MedianRTO, s.MaxRTO, s.Pass, tc.median, tc.max, tc.pass)
			}
		})
	}
}
