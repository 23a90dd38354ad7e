package drill

import (
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// wr is a write sent at sent ms and answered at done ms.
func wr(id int64, writer int, addr string, sent, done int, o Outcome) Write {
	return Write{ID: id, Writer: writer, Addr: addr, Server: "id-" + addr, Sent: at(sent), Done: at(done), Outcome: o}
}

// rows is a final content holding ids, each with the writer wr gives
// (id%2 in these tests).
func rows(ids ...int64) map[int64]int {
	m := map[int64]int{}
	for _, id := range ids {
		m[id] = int(id % 2)
	}
	return m
}

func identities(addrs ...string) map[string]string {
	m := map[string]string{}
	for _, a := range addrs {
		m[a] = "id-" + a
	}
	return m
}

func TestAnalyze(t *testing.T) {
	const old, nw, third = "old", "new", "third"
	cases := []struct {
		name  string
		o     Observation
		check func(t *testing.T, v Verdict)
	}{
		{
			name: "clean kill: in flight at the fault, RTO to the new primary's first ack, nothing lost",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 0, 10, Acked),
					wr(2, 0, old, 20, 30, Acked),
					wr(3, 1, old, 40, 1040, Unknown), // in flight when the fault struck at 50
					wr(4, 0, old, 45, 60, Refused),   // in flight too: answered after it
					wr(5, 1, nw, 1500, 1510, Acked),
					wr(6, 0, nw, 1520, 1530, Acked),
				},
				Fault: at(50), OldPrimary: old, ExpectFailover: true,
				Final: map[string]map[int64]int{nw: rows(1, 2, 5, 6), old: rows(1, 2, 3)}, FinalPrimary: nw,
				Identities: identities(old, nw),
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "sent/acked/refused/unknown", []int{v.Sent, v.AckedRows, v.Refused, v.Unknown}, []int{6, 4, 1, 1})
				want(t, "in flight", v.InFlight, []int64{3, 4})
				want(t, "new primary", v.NewPrimary, nw)
				near(t, "RTO", v.RTOSeconds, 1.460)
				want(t, "lost", v.Lost, []int64(nil))
				want(t, "lost checked", v.LostChecked, true)
				want(t, "two writers", v.TwoWriters.Happened(), false)
				want(t, "false failover", v.FalseFailover, false)
				near(t, "max gap", v.MaxGapSeconds, 1.460)
				want(t, "unknown committed", v.UnknownCommitted, 0)
				near(t, "ack rate", v.AckRate, 2/0.050) // two acknowledged in the 50 ms before the fault
			},
		},
		{
			name: "acknowledged writes the final primary lacks are lost; an unknown one it holds committed after all",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 0, 10, Acked),
					wr(2, 0, old, 20, 30, Acked),
					wr(3, 1, old, 40, 45, Acked),
					wr(4, 0, old, 46, 900, Unknown),
					wr(5, 1, nw, 1000, 1010, Acked),
				},
				Fault: at(48), OldPrimary: old, ExpectFailover: true,
				Final: map[string]map[int64]int{nw: rows(1, 4, 5)}, FinalPrimary: nw,
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "lost", v.Lost, []int64{2, 3})
				want(t, "in flight", v.InFlight, []int64{4})
				want(t, "unknown committed", v.UnknownCommitted, 1)
			},
		},
		{
			name: "no final primary: lost not checked, not reported as none",
			o: Observation{
				History: []Write{wr(1, 1, old, 0, 10, Acked)},
				Fault:   at(20), OldPrimary: old, ExpectFailover: true,
				Final: map[string]map[int64]int{old: rows()},
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "lost checked", v.LostChecked, false)
				near(t, "ack rate", v.AckRate, 1/0.020)
				want(t, "lost", v.Lost, []int64(nil))
				want(t, "new primary", v.NewPrimary, "")
				want(t, "RTO", v.RTOSeconds, 0.0)
			},
		},
		{
			name: "isolated primary keeps acknowledging after the new one's first: two writers",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 0, 10, Acked),
					wr(2, 0, old, 100, 110, Acked),  // after the fault at 50
					wr(3, 1, nw, 1000, 1100, Acked), // the new primary's first
					wr(4, 0, old, 1200, 1300, Acked),
					wr(5, 1, old, 1400, 1600, Acked), // old's last: 500 ms after new's first
					wr(6, 0, nw, 1700, 1800, Acked),
				},
				Fault: at(50), OldPrimary: old, ExpectFailover: true,
				Final: map[string]map[int64]int{nw: rows(1, 3, 6)}, FinalPrimary: nw,
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "instances", v.TwoWriters.Instances, []string{old, nw})
				near(t, "window", v.TwoWriters.WindowSeconds, 0.5)
				want(t, "old after new", v.TwoWriters.OldAfterNew, 2)
				want(t, "lost", v.Lost, []int64{2, 4, 5})
				near(t, "RTO", v.RTOSeconds, 1.05)
			},
		},
		{
			name: "one late acknowledgement by the old primary: no window, still two writers",
			o: Observation{
				History: []Write{
					wr(1, 1, nw, 900, 1000, Acked),
					wr(2, 0, old, 40, 1500, Acked), // sent before the fault, acknowledged after the new primary's first
					wr(3, 1, nw, 1600, 1700, Acked),
				},
				Fault: at(50), OldPrimary: old, ExpectFailover: true,
				Final: map[string]map[int64]int{nw: rows(1, 2, 3)}, FinalPrimary: nw,
			},
			check: func(t *testing.T, v Verdict) {
				near(t, "window", v.TwoWriters.WindowSeconds, 0) // old's span is the one instant 1500
				want(t, "old after new", v.TwoWriters.OldAfterNew, 1)
				want(t, "happened", v.TwoWriters.Happened(), true)
			},
		},
		{
			name: "old primary's last acknowledgement before the new one's first: no two writers",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 40, 60, Acked),
					wr(2, 0, nw, 900, 1000, Acked),
				},
				Fault: at(50), OldPrimary: old, ExpectFailover: true,
				Final: map[string]map[int64]int{nw: rows(1, 2)}, FinalPrimary: nw,
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "happened", v.TwoWriters.Happened(), false)
				near(t, "window", v.TwoWriters.WindowSeconds, 0)
			},
		},
		{
			name: "three instances: the window counts the time at least two were open",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 90, 100, Acked), wr(2, 1, old, 390, 400, Acked),
					wr(3, 0, nw, 190, 200, Acked), wr(4, 0, nw, 290, 300, Acked),
					wr(5, 1, third, 340, 350, Acked), wr(6, 1, third, 590, 600, Acked),
				},
				// spans: old 100..400, new 200..300, third 350..600: two or more open
				// during 200..300 and 350..400.
				Fault: at(50), OldPrimary: old, ExpectFailover: true,
			},
			check: func(t *testing.T, v Verdict) {
				near(t, "window", v.TwoWriters.WindowSeconds, 0.150)
				want(t, "instances", v.TwoWriters.Instances, []string{old, nw, third})
			},
		},
		{
			name: "a manager-cut that moved the writer is a false failover",
			o: Observation{
				History: []Write{wr(1, 1, old, 0, 10, Acked), wr(2, 0, nw, 3000, 3010, Acked)},
				Fault:   at(50), OldPrimary: old, ExpectFailover: false,
				Final: map[string]map[int64]int{nw: rows(1, 2)}, FinalPrimary: nw,
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "false failover", v.FalseFailover, true)
				want(t, "new primary", v.NewPrimary, nw)
			},
		},
		{
			name: "a primary moved with no write to show for it is a false failover too",
			o: Observation{
				History: []Write{wr(1, 1, old, 0, 10, Acked)},
				Fault:   at(50), OldPrimary: old, ExpectFailover: false,
				Final: map[string]map[int64]int{nw: rows(1)}, FinalPrimary: nw,
			},
			check: func(t *testing.T, v Verdict) { want(t, "false failover", v.FalseFailover, true) },
		},
		{
			name: "a loss that left the primary in place: no false failover, the gap measured",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 0, 10, Acked), wr(2, 0, old, 60, 2060, Acked), wr(3, 1, old, 2070, 2080, Acked),
					wr(4, 0, old, 2090, 3090, Unknown),
				},
				Fault: at(50), OldPrimary: old, ExpectFailover: false,
				Final: map[string]map[int64]int{old: rows(1, 2, 3)}, FinalPrimary: old,
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "false failover", v.FalseFailover, false)
				want(t, "new primary", v.NewPrimary, "")
				near(t, "max gap", v.MaxGapSeconds, 2.010) // fault at 50 to the ack at 2060
			},
		},
		{
			name: "a refused write the primary holds, a row with another writer's number, an identity that changed",
			o: Observation{
				History: []Write{
					wr(1, 1, old, 0, 10, Refused),
					wr(2, 1, old, 20, 30, Acked), // stored with writer 0 below
					{ID: 3, Writer: 1, Addr: old, Server: "someone else", Sent: at(40), Done: at(45), Outcome: Acked},
				},
				Fault: at(100), OldPrimary: old, ExpectFailover: false,
				Final: map[string]map[int64]int{old: {1: 1, 2: 0, 3: 1}}, FinalPrimary: old,
				Identities: identities(old),
			},
			check: func(t *testing.T, v Verdict) {
				want(t, "refused present", v.RefusedPresent, []int64{1})
				want(t, "wrong writer", v.WrongWriter, []int64{2})
				want(t, "misattributed", v.Misattributed, []int64{3})
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, Analyze(tc.o)) })
	}
}

func want[T any](t *testing.T, what string, got, wantV T) {
	t.Helper()
	if !equal(got, wantV) {
		t.Errorf("%s = %v, want %v", what, got, wantV)
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case []int64:
		return slices.Equal(x, b.([]int64))
	case []int:
		return slices.Equal(x, b.([]int))
	case []string:
		return slices.Equal(x, b.([]string))
	}
	return a == b
}

func near(t *testing.T, what string, got, wantV float64) {
	t.Helper()
	if math.Abs(got-wantV) > 1e-6 {
		t.Errorf("%s = %v, want %v", what, got, wantV)
	}
}
