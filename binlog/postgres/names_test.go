package postgres

import (
	"testing"
)

const mib = 1 << 20

func TestSegmentNames(t *testing.T) {
	cases := []struct {
		name  string
		size  segments
		tli   uint32
		segno uint64
		want  string
	}{
		{"first segment", 16 * mib, 1, 1, "000000010000000000000001"},
		{"last segment of xlogid 0", 16 * mib, 1, 0xFF, "0000000100000000000000FF"},
		{"first segment of xlogid 1", 16 * mib, 1, 0x100, "000000010000000100000000"},
		{"timeline 10", 16 * mib, 10, 0x1A3, "0000000A00000001000000A3"},
		{"1 GiB segments", 1 << 30, 2, 5, "000000020000000100000001"},
		{"1 MiB segments", 1 * mib, 1, 0x1001, "000000010000000100000001"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.size.name(tc.tli, tc.segno); got != tc.want {
				t.Fatalf("name = %s, want %s", got, tc.want)
			}
			f, ok := tc.size.parse(tc.want)
			if !ok || f != (segFile{TLI: tc.tli, SegNo: tc.segno}) {
				t.Fatalf("parse(%s) = %+v, %v", tc.want, f, ok)
			}
			f, ok = tc.size.parse(tc.want + ".partial")
			if !ok || !f.Partial || tc.size.fileName(f) != tc.want+".partial" {
				t.Fatalf("parse(%s.partial) = %+v, %v", tc.want, f, ok)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	seg := segments(16 * mib)
	for _, name := range []string{
		"00000001000000000000001",    // 23 digits
		"000000010000000000000001.x", // unknown suffix
		"00000001000000000000000a",   // lower case
		"000000000000000000000001",   // timeline 0
		"000000010000000000000100",   // low part beyond 256 segments of 16 MiB
		"00000002.history",
		"status.json",
	} {
		t.Run(name, func(t *testing.T) {
			if f, ok := seg.parse(name); ok {
				t.Fatalf("parse(%q) = %+v, want rejected", name, f)
			}
		})
	}
}

func TestLSNSegmentMath(t *testing.T) {
	seg := segments(16 * mib)
	cases := []struct {
		name   string
		lsn    LSN
		segno  uint64
		floor  LSN
		offset int64
	}{
		{"segment start", 0x3000000, 3, 0x3000000, 0},
		{"inside", 0x3000060, 3, 0x3000000, 0x60},
		{"last byte", 0x3FFFFFF, 3, 0x3000000, 0xFFFFFF},
		{"across 4 GiB", 0x1_00000028, 0x100, 0x1_00000000, 0x28},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if seg.no(tc.lsn) != tc.segno || seg.floor(tc.lsn) != tc.floor || seg.offset(tc.lsn) != tc.offset {
				t.Fatalf("no/floor/offset(%s) = %d %s %d, want %d %s %d", tc.lsn,
					seg.no(tc.lsn), seg.floor(tc.lsn), seg.offset(tc.lsn), tc.segno, tc.floor, tc.offset)
			}
		})
	}
}

func TestParseSegmentSize(t *testing.T) {
	cases := []struct {
		in      string
		want    segments
		wantErr bool
	}{
		{"16MB", 16 * mib, false},
		{"1GB", 1 << 30, false},
		{"1MB", mib, false},
		{"64MB", 64 * mib, false},
		{"16777216B", 16 * mib, false},
		{"512kB", 0, true},
		{"2GB", 0, true},
		{"24MB", 0, true},
		{"sixteen", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSegmentSize(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseSegmentSize(%q) = %d, %v", tc.in, got, err)
			}
		})
	}
}

func TestHistoryNames(t *testing.T) {
	if got := historyName(0x1A); got != "0000001A.history" {
		t.Fatalf("historyName = %s", got)
	}
	for name, want := range map[string]uint32{"00000002.history": 2, "0000001A.history": 26, "00000000.history": 0, "0000001a.history": 0, "2.history": 0} {
		got, ok := parseHistoryName(name)
		if got != want || ok != (want != 0) {
			t.Errorf("parseHistoryName(%q) = %d, %v", name, got, ok)
		}
	}
}
