package postgres

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

func TestSameAncestry(t *testing.T) {
	server := lineage{Current: 3, Switches: []topology.TimelineSwitch{{Timeline: 1, Switch: 0x5000100}, {Timeline: 2, Switch: 0x7000000}}}
	cases := []struct {
		name   string
		stored []topology.TimelineSwitch
		tli    uint32
		want   bool
	}{
		{"timeline 2 forked where the server says", []topology.TimelineSwitch{{Timeline: 1, Switch: 0x5000100}}, 2, true},
		{"the current timeline's history", server.Switches, 3, true},
		{"timeline 2 forked elsewhere: created twice", []topology.TimelineSwitch{{Timeline: 1, Switch: 0x5000200}}, 2, false},
		{"timeline 3 with another ancestry", []topology.TimelineSwitch{{Timeline: 1, Switch: 0x5000100}}, 3, false},
		{"a timeline the server does not know is not a contradiction", []topology.TimelineSwitch{{Timeline: 1, Switch: 0x9000000}}, 4, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameAncestry(tc.stored, server, tc.tli); got != tc.want {
				t.Fatalf("sameAncestry = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSetAside: the files of a timeline created twice, and of later
// timelines, move out of the store intact; earlier ones stay.
func TestSetAside(t *testing.T) {
	dir, _ := syntheticStore(t) // timeline 1 segments 3-5, timeline 2 segments 5-6
	seg := segments(mib)
	walDir := filepath.Join(dir, walSubdir)
	before, _ := os.ReadFile(filepath.Join(walDir, seg.name(2, 5)))
	dest, err := setAside(dir, seg, 2, time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dest) != "tl2-20261121T120000Z" {
		t.Errorf("set aside in %s", dest)
	}
	l, _ := list(walDir, seg)
	var left []string
	for _, f := range l.Segments {
		left = append(left, seg.fileName(f))
	}
	want := []string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005.partial"}
	if !slices.Equal(left, want) || len(l.Histories) != 0 {
		t.Fatalf("store keeps %v and histories %v, want %v", left, l.Histories, want)
	}
	moved, err := os.ReadFile(filepath.Join(dest, walSubdir, seg.name(2, 5)))
	if err != nil || !slices.Equal(moved, before) {
		t.Fatalf("the set-aside segment: %v", err)
	}
	for _, p := range []string{filepath.Join(walSubdir, "00000002.history"), filepath.Join(walSubdir, seg.name(2, 6)+partialSuffix),
		filepath.Join(arrivalsSubdir, seg.name(2, 6))} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not set aside: %v", err)
		}
	}
}
