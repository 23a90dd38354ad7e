package postgres

import (
	"errors"
	"testing"

	"github.com/dbha/dbha/topology"
)

func TestForkPoint(t *testing.T) {
	sw := func(pairs ...uint64) []topology.TimelineSwitch {
		var out []topology.TimelineSwitch
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, topology.TimelineSwitch{Timeline: uint32(pairs[i]), Switch: LSN(pairs[i+1])})
		}
		return out
	}
	cases := []struct {
		name             string
		former, primary  lineage
		want             fork
		wantErr, notFork bool
	}{
		{name: "first failover: the old primary went on writing timeline 1 after the standby left it",
			former: lineage{Current: 1}, primary: lineage{Current: 2, Switches: sw(1, 0x3000148)},
			want: fork{At: 0x3000148, TLI: 1}},
		{name: "second failover: the old primary on timeline 2, the new one on 3",
			former:  lineage{Current: 2, Switches: sw(1, 0x3000148)},
			primary: lineage{Current: 3, Switches: sw(1, 0x3000148, 2, 0x5000060)},
			want:    fork{At: 0x5000060, TLI: 2}},
		{name: "an older old primary, two failovers behind",
			former:  lineage{Current: 1},
			primary: lineage{Current: 3, Switches: sw(1, 0x3000148, 2, 0x5000060)},
			want:    fork{At: 0x3000148, TLI: 1}},
		{name: "the former left timeline 1 earlier, onto a timeline the primary never had",
			former:  lineage{Current: 3, Switches: sw(1, 0x2000000)},
			primary: lineage{Current: 2, Switches: sw(1, 0x3000148)},
			want:    fork{At: 0x2000000, TLI: 3}},
		{name: "the former left the primary's current timeline",
			former:  lineage{Current: 3, Switches: sw(1, 0x3000148, 2, 0x4000000)},
			primary: lineage{Current: 2, Switches: sw(1, 0x3000148)},
			want:    fork{At: 0x4000000, TLI: 3}},
		{name: "the same switch point, then a timeline the primary does not have",
			former:  lineage{Current: 4, Switches: sw(1, 0x3000148)},
			primary: lineage{Current: 2, Switches: sw(1, 0x3000148)},
			want:    fork{At: 0x3000148, TLI: 4}},
		{name: "the former went on along timeline 2 past the primary's switch, then switched itself",
			former:  lineage{Current: 4, Switches: sw(1, 0x3000148, 2, 0x6000000)},
			primary: lineage{Current: 3, Switches: sw(1, 0x3000148, 2, 0x5000060)},
			want:    fork{At: 0x5000060, TLI: 2}},
		{name: "both on the same timeline: nothing forked",
			former: lineage{Current: 2, Switches: sw(1, 0x3000148)}, primary: lineage{Current: 2, Switches: sw(1, 0x3000148)},
			wantErr: true, notFork: true},
		{name: "no common timeline",
			former: lineage{Current: 5}, primary: lineage{Current: 2, Switches: sw(1, 0x3000148)},
			wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := forkPoint(tc.former, tc.primary)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("forkPoint = %+v, want an error", got)
				}
				if errors.Is(err, errNotForked) != tc.notFork {
					t.Fatalf("forkPoint error %v: errNotForked is %v, want %v", err, !tc.notFork, tc.notFork)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("forkPoint = %+v, %v; want {At: %s TLI: %d}", got, err, tc.want.At, tc.want.TLI)
			}
		})
	}
}
