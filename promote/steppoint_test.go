package promote

import "testing"

func TestStepPoint(t *testing.T) {
	p := Plan{Steps: []Step{{N: 1, Action: ActLock}, {N: 2, Action: ActRepoint}, {N: 3, Action: ActPromote}, {N: 4, Action: ActRepoint}}}
	cases := []struct {
		name, in string
		step     int  // the step of p to match
		want     bool // matches
		bad      bool // a parse error
	}{
		{name: "action alone is its first occurrence", in: "repoint", step: 2, want: true},
		{name: "first occurrence does not match the second", in: "repoint", step: 4},
		{name: "second occurrence", in: "repoint:2", step: 4, want: true},
		{name: "explicit first", in: "repoint:1", step: 2, want: true},
		{name: "other action", in: "promote", step: 2},
		{name: "single action", in: "lock", step: 1, want: true},
		{name: "occurrence beyond the plan", in: "repoint:3", step: 4},
		{name: "unknown action", in: "reboot", bad: true},
		{name: "zero occurrence", in: "repoint:0", bad: true},
		{name: "not a number", in: "repoint:x", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := ParseStepPoint(tc.in)
			if (err != nil) != tc.bad {
				t.Fatalf("ParseStepPoint(%q) error %v, want error %v", tc.in, err, tc.bad)
			}
			if tc.bad {
				return
			}
			if got := sp.Matches(p, p.Steps[tc.step-1]); got != tc.want {
				t.Errorf("%s matches step %d: %v, want %v", sp, tc.step, got, tc.want)
			}
		})
	}
}
