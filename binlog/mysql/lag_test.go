package mysql

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func mustState(t *testing.T, s string) state {
	t.Helper()
	st, err := parseState("mariadb", s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func states(t *testing.T, ss ...string) []state {
	out := make([]state, len(ss))
	for i, s := range ss {
		out[i] = mustState(t, s)
	}
	return out
}

// Retention keeps every file from the first one holding a transaction the
// slowest position lacks.
func TestNeededFile(t *testing.T) {
	// File ends: after file 0 the store holds 0-1-10, after file 1 0-1-20
	// and 1-2-5, ...
	ends := states(t, "0-1-10", "0-1-20,1-2-5", "0-1-30,1-2-5", "0-2-40,1-2-9")
	cases := []struct {
		name string
		keep []string
		want int
	}{
		{"no replica known: only age and size bound the store", nil, 4},
		{"a caught-up replica needs nothing", []string{"0-2-40,1-2-9"}, 4},
		{"a replica at the end of file 1 needs file 2 on", []string{"0-1-20,1-2-5"}, 2},
		{"a replica inside file 1 needs file 1 on", []string{"0-1-15"}, 1},
		{"the slowest replica counts", []string{"0-2-40,1-2-9", "0-1-25,1-2-5", "0-1-35,1-2-9"}, 2},
		{"a replica lacking a domain needs the file that brought it", []string{"0-2-40"}, 1},
		{"a replica behind in one domain only", []string{"0-2-40,1-2-6"}, 3},
		{"a replica before the store needs everything", []string{"0-1-3"}, 0},
		{"an empty replica needs everything", []string{""}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := neededFile(ends, states(t, tc.keep...)); got != tc.want {
				t.Errorf("neededFile = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFileEnds(t *testing.T) {
	ends := fileEnds(states(t, "0-1-1", "0-1-5", "0-1-9"), mustState(t, "0-1-12"))
	var got []string
	for _, e := range ends {
		got = append(got, e.String())
	}
	if strings.Join(got, " ") != "0-1-5 0-1-9 0-1-12" {
		t.Errorf("fileEnds = %v", got)
	}
}

func TestLagCounter(t *testing.T) {
	txn := func(seq uint64, sec int) Txn {
		return Txn{GTID: GTID{Domain: 0, Server: 1, Seq: seq}, Time: t0.Add(time.Duration(sec) * time.Second), Size: 10}
	}
	c := lagCounter{p: mustState(t, "0-1-2")}
	for i, sec := range []int{0, 1, 5, 9} {
		c.add(txn(uint64(i+1), sec))
	}
	if got := c.result(t0.Add(20 * time.Second)); got.Transactions != 2 || got.Bytes != 20 || got.Seconds != 15 {
		t.Errorf("lag = %+v, want 2 transactions, 20 bytes, 15 s", got)
	}
}

func TestStateCovers(t *testing.T) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	my, err := parseState("mysql", sid.String()+":1-5:7")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		st   state
		g    GTID
		want bool
	}{
		{"MariaDB: same domain, lower seq", mustState(t, "0-1-5"), GTID{Domain: 0, Server: 1, Seq: 4}, true},
		{"MariaDB: same seq", mustState(t, "0-1-5"), GTID{Domain: 0, Server: 1, Seq: 5}, true},
		{"MariaDB: another server, lower seq (strict mode orders the domain)", mustState(t, "0-2-5"), GTID{Domain: 0, Server: 1, Seq: 3}, true},
		{"MariaDB: higher seq", mustState(t, "0-1-5"), GTID{Domain: 0, Server: 1, Seq: 6}, false},
		{"MariaDB: another domain", mustState(t, "0-1-5"), GTID{Domain: 1, Server: 1, Seq: 1}, false},
		{"MySQL: in the set", my, GTID{SID: sid, Seq: 3}, true},
		{"MySQL: in a gap", my, GTID{SID: sid, Seq: 6}, false},
		{"MySQL: after the set", my, GTID{SID: sid, Seq: 8}, false},
		{"MySQL: another source", my, GTID{SID: uuid.MustParse("00000000-0000-0000-0000-000000000001"), Seq: 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.st.covers(tc.g); got != tc.want {
				t.Errorf("%q covers %s = %v, want %v", tc.st, tc.g, got, tc.want)
			}
		})
	}
}

// The event recording a file's start position round-trips.
func TestListEncoding(t *testing.T) {
	for _, s := range []string{"", "0-1-5", "0-1-5,1-2-9,7-3-18446744073709551615"} {
		st := mustState(t, s)
		back, err := decodeList("mariadb", st.encodeList())
		if err != nil || back.String() != st.String() {
			t.Errorf("%q: decoded %q, %v", s, back, err)
		}
	}
	my, _ := parseState("mysql", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7")
	back, err := decodeList("mysql", my.encodeList())
	if err != nil || back.String() != my.String() {
		t.Errorf("MySQL: decoded %q, %v", back, err)
	}
}

func TestIndexRecord(t *testing.T) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	for _, x := range []Txn{
		{GTID: GTID{Domain: 7, Server: 3, Seq: 1 << 40}, Time: t0, Offset: 1 << 31, Size: 1 << 30, Events: 12},
		{GTID: GTID{SID: sid, Seq: 99}, Time: t0, Offset: 300, Size: 50, Events: 3},
	} {
		rec := appendRecord(nil, x)
		got, ok := decodeRecord(rec)
		if len(rec) != recordSize || !ok || got != x {
			t.Errorf("record round trip: %+v -> %+v (%v, %d bytes)", x, got, ok, len(rec))
		}
		rec[10] ^= 1
		if _, ok := decodeRecord(rec); ok {
			t.Errorf("a corrupt record decoded")
		}
	}
}
