package mysql

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGapRange(t *testing.T) {
	cases := []struct {
		name, held, oldest string
		want               []string
	}{
		{"purged past dbha's position", "0-1-57", "0-1-80",
			[]string{"GTIDs 0-*-58 to 0-1-80 (domain 0, seq_no 58 to 80)"}},
		{"one transaction missing", "0-1-57", "0-2-58",
			[]string{"GTIDs 0-*-58 to 0-2-58 (domain 0, seq_no 58 to 58)"}},
		{"a domain dbha never saw", "0-1-57", "0-1-50,1-4-9",
			[]string{"GTIDs 1-*-1 to 1-4-9 (domain 1, seq_no 1 to 9)"}},
		{"the primary still has everything", "0-1-57", "0-1-57", nil},
		{"dbha is ahead of the primary's oldest binlog", "0-1-90", "0-1-80", nil},
		{"two domains purged", "0-1-5,1-2-5", "0-1-8,1-2-6",
			[]string{"GTIDs 0-*-6 to 0-1-8 (domain 0, seq_no 6 to 8)", "GTIDs 1-*-6 to 1-2-6 (domain 1, seq_no 6 to 6)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := gapRange(mustState(t, tc.held), mustState(t, tc.oldest)); !slices.Equal(got, tc.want) {
				t.Errorf("gapRange = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDescribeBroken(t *testing.T) {
	purged := describeBroken("db1:3306", mustState(t, "0-1-57"), "mariadb-bin.000009", mustState(t, "0-1-80"), "0-1-99", "Could not find GTID state")
	for _, want := range []string{"db1:3306", "dbha holds up to 0-1-57", "mariadb-bin.000009", "GTIDs 0-*-58 to 0-1-80", "dbha stream reset"} {
		if !strings.Contains(purged, want) {
			t.Errorf("purged: %q lacks %q", purged, want)
		}
	}
	ahead := describeBroken("db1:3306", mustState(t, "0-1-120"), "mariadb-bin.000009", mustState(t, "0-1-80"), "0-1-99", "not in the master's binlog")
	for _, want := range []string{"cannot serve dbha's position 0-1-120", "ends at 0-1-99", "dbha stream events --since 0-1-99"} {
		if !strings.Contains(ahead, want) {
			t.Errorf("ahead: %q lacks %q", ahead, want)
		}
	}
}

func TestDescribeBrokenMySQL(t *testing.T) {
	const u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	held, _ := parseState("mysql", u+":1-57")
	purged := describeBrokenMySQL("db1:3306", held, u+":1-80", u+":1-99", "purged")
	if !strings.Contains(purged, u+":58-80 are missing") {
		t.Errorf("purged: %q", purged)
	}
	ahead := describeBrokenMySQL("db1:3306", held, u+":1-20", u+":1-40", "not found")
	if !strings.Contains(ahead, "cannot serve dbha's position "+u+":1-57") {
		t.Errorf("ahead: %q", ahead)
	}
}

func TestServerIDConflict(t *testing.T) {
	cases := []struct {
		name string
		in   primaryInfo
		want string // "" for no conflict, else a fragment of the message
	}{
		{"unique", primaryInfo{serverID: 1, replicas: []uint32{2, 3}, binlogState: "0-1-9,0-2-4"}, ""},
		{"the primary's", primaryInfo{serverID: 7}, "the primary db1:3306's own"},
		{"a replica's", primaryInfo{serverID: 1, replicas: []uint32{2, 7}}, "used by a replica"},
		{"a former primary's, in the binlog state", primaryInfo{serverID: 1, binlogState: "0-1-9,0-7-4"}, "wrote transactions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := serverIDConflict(7, "db1:3306", tc.in)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("serverIDConflict = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
	b.reset()
	if b.next() != 100*time.Millisecond {
		t.Errorf("after reset: not back to the minimum")
	}
}

func TestBrokenError(t *testing.T) {
	err := error(&brokenError{sentinel: ErrServerIDInUse, text: "server_id 1 is taken"})
	if !errors.Is(err, ErrBroken) || !errors.Is(err, ErrServerIDInUse) || brokenText(err) != "server_id 1 is taken" {
		t.Errorf("brokenError: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("an empty Config was accepted")
	} else {
		for _, want := range []string{"Cluster", "Dir", "User", "ServerID", "Flavor", "Primary"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not name %s", err, want)
			}
		}
	}
}
