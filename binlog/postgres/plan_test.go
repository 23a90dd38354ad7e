package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/dbha/dbha/topology"
)

func TestChooseStart(t *testing.T) {
	seg := segments(16 * mib)
	at := func(segno uint64) LSN { return seg.start(segno) }
	done := func(tli uint32, segno uint64) segFile { return segFile{TLI: tli, SegNo: segno} }
	partial := func(tli uint32, segno uint64) segFile { return segFile{TLI: tli, SegNo: segno, Partial: true} }
	tl1 := lineage{Current: 1}
	// timeline 1 ended at 0/5000100, inside segment 5; timeline 2 is current.
	tl2 := lineage{Current: 2, Switches: []topology.TimelineSwitch{{Timeline: 1, Switch: at(5) + 0x100}}}
	// 1 ended inside segment 5 and 2 ended in the same segment: 3 is current.
	tl3 := lineage{Current: 3, Switches: []topology.TimelineSwitch{{Timeline: 1, Switch: at(5) + 0x100}, {Timeline: 2, Switch: at(5) + 0x900}}}
	// a switch exactly on a segment boundary.
	tl2b := lineage{Current: 2, Switches: []topology.TimelineSwitch{{Timeline: 1, Switch: at(6)}}}

	cases := []struct {
		name    string
		in      startInput
		want    startPoint
		wantErr error
	}{
		{"empty store, no slot: the primary's position, at its segment start",
			startInput{Server: tl1, Flush: at(9) + 0x28},
			startPoint{LSN: at(9), TLI: 1}, nil},
		{"empty store: the slot's restart_lsn",
			startInput{Server: tl1, Flush: at(9), Slot: slotState{Exists: true, Restart: at(4) + 0xD8, TLI: 1}},
			startPoint{LSN: at(4), TLI: 1}, nil},
		{"a slot that reserved nothing is ignored",
			startInput{Server: tl1, Flush: at(9), Slot: slotState{Exists: true}},
			startPoint{LSN: at(9), TLI: 1}, nil},
		{"after the newest complete segment",
			startInput{Files: []segFile{done(1, 2), done(1, 3)}, Server: tl1, Flush: at(9)},
			startPoint{LSN: at(4), TLI: 1}, nil},
		{"the store wins over the slot",
			startInput{Files: []segFile{done(1, 3)}, Server: tl1, Flush: at(9), Slot: slotState{Exists: true, Restart: at(8), TLI: 1}},
			startPoint{LSN: at(4), TLI: 1}, nil},
		{"rewrite the newest .partial from its start",
			startInput{Files: []segFile{done(1, 3), partial(1, 4)}, Server: tl1, Flush: at(4) + 0x500},
			startPoint{LSN: at(4), TLI: 1}, nil},
		{"a complete segment ending at the primary's flush position",
			startInput{Files: []segFile{done(1, 8)}, Server: tl1, Flush: at(9)},
			startPoint{LSN: at(9), TLI: 1}, nil},
		{"the store ahead of the primary on its timeline is refused",
			startInput{Files: []segFile{done(1, 8)}, Server: tl1, Flush: at(8) + 0x28},
			startPoint{}, errStoreAhead},
		{"old timeline well before the switch: stream it, the server switches us",
			startInput{Files: []segFile{done(1, 2)}, Server: tl2, Flush: at(7)},
			startPoint{LSN: at(3), TLI: 1}, nil},
		{"old timeline's .partial holds the switch point: keep it, start timeline 2 at that segment",
			startInput{Files: []segFile{done(1, 4), partial(1, 5)}, Server: tl2, Flush: at(7)},
			startPoint{LSN: at(5), TLI: 2}, nil},
		{"old timeline complete up to the switch segment: continue on timeline 2",
			startInput{Files: []segFile{done(1, 4)}, Server: tl2, Flush: at(7)},
			startPoint{LSN: at(5), TLI: 2}, nil},
		{"WAL of the old timeline beyond the switch point (a forked tail) is kept, not continued",
			startInput{Files: []segFile{done(1, 5), done(1, 6), partial(1, 7)}, Server: tl2, Flush: at(9)},
			startPoint{LSN: at(5), TLI: 2}, nil},
		{"timeline 2 files already held win over the old timeline",
			startInput{Files: []segFile{done(1, 4), partial(1, 5), done(2, 5), partial(2, 6)}, Server: tl2, Flush: at(9)},
			startPoint{LSN: at(6), TLI: 2}, nil},
		{"diverged timeline 1 beyond timeline 2's files: timeline 2's files decide",
			startInput{Files: []segFile{done(1, 5), done(1, 6), done(1, 7), done(2, 5)}, Server: tl2, Flush: at(9)},
			startPoint{LSN: at(6), TLI: 2}, nil},
		{"two switches in one segment: straight to timeline 3",
			startInput{Files: []segFile{partial(1, 5)}, Server: tl3, Flush: at(9)},
			startPoint{LSN: at(5), TLI: 3}, nil},
		{"switch on a segment boundary: the old timeline is complete",
			startInput{Files: []segFile{done(1, 5)}, Server: tl2b, Flush: at(9)},
			startPoint{LSN: at(6), TLI: 2}, nil},
		{"slot on an old timeline is settled on the lineage",
			startInput{Server: tl2, Flush: at(9), Slot: slotState{Exists: true, Restart: at(5) + 0x20, TLI: 1}},
			startPoint{LSN: at(5), TLI: 2}, nil},
		{"files on a timeline the primary never had are skipped",
			startInput{Files: []segFile{done(1, 3), done(3, 6)}, Server: tl2, Flush: at(9)},
			startPoint{LSN: at(4), TLI: 1, OffLineage: 1}, nil},
		{"only files the primary's history does not contain: refused",
			startInput{Files: []segFile{done(3, 6)}, Server: tl2, Flush: at(9)},
			startPoint{}, errOffLineage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Seg = seg
			got, err := chooseStart(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("chooseStart error = %v, want %v", err, tc.wantErr)
			}
			if got.Why == "" && err == nil {
				t.Errorf("no reason given")
			}
			got.Why = ""
			if got != tc.want {
				t.Fatalf("chooseStart = %+v (%s tl%d), want %+v (%s tl%d)", got, got.LSN, got.TLI, tc.want, tc.want.LSN, tc.want.TLI)
			}
		})
	}
}

func TestChooseStartExplains(t *testing.T) {
	seg := segments(16 * mib)
	tl2 := lineage{Current: 2, Switches: []topology.TimelineSwitch{{Timeline: 1, Switch: seg.start(5) + 0x100}}}
	got, err := chooseStart(startInput{Files: []segFile{{TLI: 1, SegNo: 5, Partial: true}}, Server: tl2, Flush: seg.start(7), Seg: seg})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"000000010000000000000005.partial", "timeline 1 ended at 0/5000100", "continuing on timeline 2"} {
		if !strings.Contains(got.Why, want) {
			t.Errorf("Why = %q, want it to mention %q", got.Why, want)
		}
	}
}

func TestLineage(t *testing.T) {
	l, err := lineageOf(5, []byte("1\t0/5000100\tno recovery target specified\n\n3\t0/7000000\tbefore 2000-01-01\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		tli      uint32
		next     uint32
		end      LSN
		historic bool
		ok       bool
	}{
		{"first ancestor", 1, 3, 0x5000100, true, true},
		{"ancestor that skipped a number", 3, 5, 0x7000000, true, true},
		{"current", 5, 0, 0, false, true},
		{"abandoned timeline", 2, 0, 0, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			end, historic, ok := l.end(tc.tli)
			if end != tc.end || historic != tc.historic || ok != tc.ok || l.next(tc.tli) != tc.next {
				t.Fatalf("end/next(%d) = %s %v %v %d", tc.tli, end, historic, ok, l.next(tc.tli))
			}
		})
	}
	if _, err := lineageOf(2, []byte("3\t0/5000100\tx\n")); err == nil {
		t.Errorf("a history listing a later timeline as ancestor was accepted")
	}
}
