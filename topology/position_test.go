package topology

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

const (
	u1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	u2 = "3e11fa47-71ca-11e1-9e33-c80aa9429563"
)

func mustMariaDB(t testing.TB, s string) Position {
	t.Helper()
	p, err := ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustMySQL(t testing.TB, s string) Position {
	t.Helper()
	p, err := ParseMySQL(strings.NewReplacer("U1", u1, "U2", u2).Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustHistory(t testing.TB, s string) []TimelineSwitch {
	t.Helper()
	h, err := ParseTimelineHistory(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// mirror is what Compare(b, a) must answer when Compare(a, b) answers o.
func mirror(o Order) Order {
	switch o {
	case Ahead:
		return Behind
	case Behind:
		return Ahead
	}
	return o
}

// checkCompare checks Compare(a, b) and, by antisymmetry, Compare(b, a).
func checkCompare(t *testing.T, a, b Position, want Order) {
	t.Helper()
	for _, c := range []struct {
		x, y Position
		want Order
	}{{a, b, want}, {b, a, mirror(want)}} {
		got, err := Compare(c.x, c.y)
		if err != nil || got != c.want {
			t.Errorf("Compare(%q, %q) = %v, %v; want %v", c.x, c.y, got, err, c.want)
		}
	}
}

func TestParseMariaDB(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "single", in: "0-1-5", want: "0-1-5"},
		{name: "sorted by domain then server", in: "1-2-9,0-3-4,0-1-5", want: "0-1-5,0-3-4,1-2-9"},
		{name: "whitespace and newlines", in: " 0-1-5,\n1-2-9 ,\t2-1-1\n", want: "0-1-5,1-2-9,2-1-1"},
		{name: "empty is known", in: "", want: ""},
		{name: "blank is known", in: " \n", want: ""},
		{name: "leading zeros", in: "00-01-005", want: "0-1-5"},
		{name: "max values", in: "4294967295-4294967295-18446744073709551615", want: "4294967295-4294967295-18446744073709551615"},
		{name: "junk", in: "0-1-5,abc", wantErr: `"abc"`},
		{name: "two parts", in: "0-1", wantErr: `"0-1"`},
		{name: "four parts", in: "0-1-2-3", wantErr: `"0-1-2-3"`},
		{name: "negative", in: "0--1-5", wantErr: `"0--1-5"`},
		{name: "empty entry", in: "0-1-5,,1-1-1", wantErr: "entry 2 is empty"},
		{name: "trailing comma", in: "0-1-5,", wantErr: "entry 2 is empty"},
		{name: "space inside", in: "0 -1-5", wantErr: `"0 -1-5"`},
		{name: "domain overflow", in: "4294967296-1-5", wantErr: "domain"},
		{name: "server overflow", in: "0-4294967296-5", wantErr: "server"},
		{name: "seq overflow", in: "0-1-18446744073709551616", wantErr: "seq_no"},
		{name: "duplicate pair", in: "0-1-5,1-1-1,0-1-7", wantErr: `"0-1-5" and "0-1-7"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseMariaDB(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMariaDB(%q) error = %v; want one containing %s", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || p.String() != tc.want || p.Engine() != MariaDB || p.IsZero() {
				t.Fatalf("ParseMariaDB(%q) = %q (%s), %v; want %q", tc.in, p, p.Engine(), err, tc.want)
			}
		})
	}
}

func TestCompareMariaDB(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       Order
	}{
		{"same gtid", "0-1-5", "0-1-5", Equal},
		{"both empty", "", "", Equal},
		{"empty behind", "", "0-1-5", Behind},
		{"higher seq same server", "0-1-6", "0-1-5", Ahead},
		{"lower seq same server", "0-1-4", "0-1-5", Behind},
		{"same seq other server", "0-2-5", "0-1-5", Diverged},
		{"current_pos form is linear across servers", "0-2-10", "0-1-5", Ahead},
		{"domain only in a", "0-1-5,1-1-3", "0-1-5", Ahead},
		{"domain only in b", "0-1-5", "0-1-5,1-1-3", Behind},
		{"ahead in one domain, equal in other", "0-1-6,1-1-3", "0-1-5,1-1-3", Ahead},
		{"ahead in one domain, behind in other", "0-1-6,1-1-2", "0-1-5,1-1-3", Diverged},
		{"extra domain but behind in other", "0-1-4,1-1-1", "0-1-5", Diverged},
		{"diverged domain wins", "0-2-5,1-1-9", "0-1-5,1-1-3", Diverged},
		{"binlog_state holds b's last", "0-1-5,0-2-10", "0-1-5", Ahead},
		{"binlog_state holds later seq of b's server", "0-1-7,0-2-10", "0-1-5", Ahead},
		{"binlog_state older seq of b's server", "0-1-3,0-2-10", "0-1-5", Diverged},
		{"binlog_state lacks b's server", "0-2-3,0-3-10", "0-1-5", Diverged},
		{"both binlog_state, errant write replicated", "0-1-100,0-2-101", "0-1-105,0-2-101", Behind},
		{"both binlog_state, equal", "0-1-100,0-2-101", "0-2-101,0-1-100", Equal},
		{"both binlog_state, same last different history", "0-1-100,0-2-101", "0-1-99,0-2-101", Equal},
		{"tie at top vs one of the tied", "0-1-5,0-2-5", "0-1-5", Diverged},
		{"tie at top vs same tie", "0-1-5,0-2-5", "0-2-5,0-1-5", Equal},
		{"tie at top ahead of older", "0-1-5,0-2-5", "0-1-4", Ahead},
		{"b tied, a lacks one tied server", "0-1-9,0-3-1", "0-1-5,0-2-5", Diverged},
		{"local write looks ahead of primary", "0-2-101", "0-1-100", Ahead},
		{"local write looks behind newer primary", "0-2-101", "0-1-105", Behind},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkCompare(t, mustMariaDB(t, tc.a), mustMariaDB(t, tc.b), tc.want)
		})
	}
}

func TestErrantAndBehindMariaDB(t *testing.T) {
	tests := []struct {
		name, replica, primary, errant string
		behind                         int64
	}{
		{"local write vs older primary", "0-2-101", "0-1-100", "0-2-101", 0},
		{"local write vs newer primary", "0-2-101", "0-1-105", "0-2-101", 4},
		{"plain lag", "0-1-100", "0-1-105", "", 5},
		{"in sync", "0-1-105", "0-1-105", "", 0},
		{"replicated local write is covered", "0-1-100,0-2-101", "0-1-105,0-2-101", "", 4},
		{"several errant", "0-1-100,0-2-102,1-3-4", "0-1-105,0-2-101", "0-2-102,1-3-4", 3},
		{"domain missing on replica counts from 0", "0-1-5", "0-1-9,1-1-3", "", 7},
		{"empty replica", "", "0-1-5", "", 5},
		{"saturates", "", "0-1-18446744073709551615,1-1-18446744073709551615", "", math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, p := mustMariaDB(t, tc.replica), mustMariaDB(t, tc.primary)
			e := Errant(r, p)
			if e.Engine() != MariaDB || e.String() != tc.errant {
				t.Errorf("Errant = %q (%s); want %q", e, e.Engine(), tc.errant)
			}
			if got := TransactionsBehind(r, p); got != tc.behind {
				t.Errorf("TransactionsBehind = %d; want %d", got, tc.behind)
			}
			if got := BytesBehind(r, p); got != 0 {
				t.Errorf("BytesBehind = %d; want 0", got)
			}
		})
	}
}

func TestParseMySQL(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "gaps", in: u2 + ":1-3," + u1 + ":7:1-5", want: u1 + ":1-5:7," + u2 + ":1-3"},
		{name: "newlines", in: u1 + ":1-5,\n" + u2 + ":1-3\n", want: u1 + ":1-5," + u2 + ":1-3"},
		{name: "upper case", in: strings.ToUpper(u1) + ":1-5", want: u1 + ":1-5"},
		{name: "tagged", in: u1 + ":1-5:Tag_a:1-2", want: u1 + ":1-5:tag_a:1-2"},
		{name: "empty is known", in: "", want: ""},
		{name: "no interval", in: u1, wantErr: u1},
		{name: "bad uuid", in: "junk:1-5", wantErr: `"junk:1-5"`},
		{name: "reversed interval", in: u1 + ":5-3", wantErr: "5-3"},
		{name: "zero", in: u1 + ":0-3", wantErr: "below 1"},
		{name: "empty entry", in: u1 + ":1,," + u2 + ":1", wantErr: "MySQL GTID set"},
		{name: "overflow", in: u1 + ":1-9223372036854775807", wantErr: "MySQL GTID set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseMySQL(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMySQL(%q) error = %v; want one containing %s", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || p.String() != tc.want || p.Engine() != MySQL || p.IsZero() {
				t.Fatalf("ParseMySQL(%q) = %q, %v; want %q", tc.in, p, err, tc.want)
			}
		})
	}
}

func TestCompareMySQL(t *testing.T) {
	tests := []struct {
		name, a, b, errant string
		want               Order
		behind             int64
	}{
		{"equal", "U1:1-5:7", "U1:1-5:7", "", Equal, 0},
		{"both empty", "", "", "", Equal, 0},
		{"empty behind", "", "U1:1-3", "", Behind, 3},
		{"gap filled by b", "U1:1-5:7", "U1:1-7", "", Behind, 1},
		{"gap on both sides", "U1:1-5:7", "U1:1-6", "U1:7", Diverged, 1},
		{"a contains b with gaps", "U1:1-10", "U1:1-5:7", "U1:6:8-10", Ahead, 0},
		{"other server's transactions", "U1:1-5,U2:1-2", "U1:1-5", "U2:1-2", Ahead, 0},
		{"disjoint servers", "U2:1-2", "U1:1-5", "U2:1-2", Diverged, 5},
		{"errant and behind", "U1:1-5:7,U2:1-3", "U1:1-10,U2:1-2", "U2:3", Diverged, 4},
		{"tags are separate", "U1:1-5:t:1", "U1:1-5", "U1:t:1", Ahead, 0},
	}
	expand := strings.NewReplacer("U1", u1, "U2", u2).Replace
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mustMySQL(t, tc.a), mustMySQL(t, tc.b)
			checkCompare(t, a, b, tc.want)
			if e := Errant(a, b); e.Engine() != MySQL || e.String() != expand(tc.errant) {
				t.Errorf("Errant = %q; want %q", e, expand(tc.errant))
			}
			if got := TransactionsBehind(a, b); got != tc.behind {
				t.Errorf("TransactionsBehind = %d; want %d", got, tc.behind)
			}
		})
	}
}

func TestMinusIntervals(t *testing.T) {
	iv := func(xs ...int64) mysql.IntervalSlice { // pairs of [start, stop)
		var s mysql.IntervalSlice
		for i := 0; i+1 < len(xs); i += 2 {
			s = append(s, mysql.Interval{Start: xs[i], Stop: xs[i+1]})
		}
		return s
	}
	tests := []struct {
		name    string
		a, b, w mysql.IntervalSlice
	}{
		{"nothing taken", iv(1, 5), nil, iv(1, 5)},
		{"all taken", iv(1, 5), iv(1, 5), nil},
		{"taken by wider", iv(3, 4), iv(1, 9), nil},
		{"hole in the middle", iv(1, 10), iv(4, 6), iv(1, 4, 6, 10)},
		{"head and tail", iv(1, 10), iv(0, 2, 8, 12), iv(2, 8)},
		{"one b across two a", iv(1, 5, 7, 10), iv(4, 8), iv(1, 4, 8, 10)},
		{"b between a", iv(1, 3, 7, 9), iv(4, 6), iv(1, 3, 7, 9)},
		{"several holes", iv(1, 20), iv(2, 3, 5, 6, 19, 25), iv(1, 2, 3, 5, 6, 19)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := minusIntervals(tc.a, tc.b); !slices.Equal(got, tc.w) {
				t.Errorf("minusIntervals(%v, %v) = %v; want %v", tc.a, tc.b, got, tc.w)
			}
		})
	}
}

func TestCompareErrors(t *testing.T) {
	ma, my, pg := mustMariaDB(t, "0-1-5"), mustMySQL(t, "U1:1"), PostgresAt(1, 1)
	tests := []struct {
		name string
		a, b Position
		want error
	}{
		{"zero a", Position{}, ma, ErrUnknownPosition},
		{"zero b", pg, Position{}, ErrUnknownPosition},
		{"both zero", Position{}, Position{}, ErrUnknownPosition},
		{"mariadb vs mysql", ma, my, ErrEngineMismatch},
		{"postgres vs mariadb", pg, ma, ErrEngineMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compare(tc.a, tc.b); !errors.Is(err, tc.want) {
				t.Errorf("Compare error = %v; want %v", err, tc.want)
			}
			if e := Errant(tc.a, tc.b); !e.IsZero() {
				t.Errorf("Errant = %q (%s); want zero", e, e.Engine())
			}
			if n := TransactionsBehind(tc.a, tc.b) + BytesBehind(tc.a, tc.b); n != 0 {
				t.Errorf("behind = %d; want 0", n)
			}
		})
	}
}

func TestPositionJSON(t *testing.T) {
	hist := []TimelineSwitch{{1, 0x3000148}, {2, 0x5000000}}
	tests := []struct {
		name string
		p    Position
		want string
	}{
		{"zero", Position{}, `null`},
		{"mariadb", mustMariaDB(t, "1-2-9,0-1-5"), `{"engine":"mariadb","gtid":"0-1-5,1-2-9"}`},
		{"mariadb empty", mustMariaDB(t, ""), `{"engine":"mariadb","gtid":""}`},
		{"mysql", mustMySQL(t, "U1:1-5:7"), `{"engine":"mysql","gtid":"` + u1 + `:1-5:7"}`},
		{"mysql empty", mustMySQL(t, ""), `{"engine":"mysql","gtid":""}`},
		{"postgres", PostgresAt(0x3000060, 1), `{"engine":"postgres","lsn":"0/3000060","timeline":1}`},
		{"postgres with history", PostgresAt(0x16B374D848, 3).WithHistory(hist),
			`{"engine":"postgres","lsn":"16/B374D848","timeline":3,"history":[{"timeline":1,"switch":"0/3000148"},{"timeline":2,"switch":"0/5000000"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.p)
			if err != nil || string(b) != tc.want {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tc.want)
			}
			var got struct{ P Position }
			if err := json.Unmarshal([]byte(`{"P":`+string(b)+`}`), &got); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			q := got.P
			if q.Engine() != tc.p.Engine() || q.String() != tc.p.String() || !slices.Equal(q.history, tc.p.history) {
				t.Fatalf("round trip = %q %v; want %q %v", q, q.history, tc.p, tc.p.history)
			}
			if o, err := Compare(q, tc.p); !tc.p.IsZero() && (err != nil || o != Equal) {
				t.Errorf("Compare(round trip, original) = %v, %v; want equal", o, err)
			}
		})
	}
}

func TestPositionUnmarshalErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not an object", `"0-1-5"`},
		{"no gtid", `{"engine":"mariadb"}`},
		{"bad gtid", `{"engine":"mariadb","gtid":"0-1"}`},
		{"bad mysql gtid", `{"engine":"mysql","gtid":"x:1"}`},
		{"mixed fields", `{"engine":"mysql","gtid":"","lsn":"0/1"}`},
		{"unknown engine", `{"engine":"oracle","gtid":"1"}`},
		{"no engine", `{"gtid":"0-1-5"}`},
		{"no timeline", `{"engine":"postgres","lsn":"0/1"}`},
		{"bad lsn", `{"engine":"postgres","lsn":"0-1","timeline":1}`},
		{"bad history", `{"engine":"postgres","lsn":"0/1","timeline":2,"history":[{"timeline":1,"switch":"x"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Position
			if err := json.Unmarshal([]byte(tc.in), &p); err == nil {
				t.Errorf("Unmarshal(%s) = %q; want an error", tc.in, p)
			}
		})
	}
}

func TestOrderString(t *testing.T) {
	for o, want := range map[Order]string{Behind: "behind", Equal: "equal", Ahead: "ahead", Diverged: "diverged", 0: "Order(0)"} {
		t.Run(want, func(t *testing.T) {
			if got := o.String(); got != want {
				t.Errorf("String() = %q; want %q", got, want)
			}
		})
	}
}

func TestLSN(t *testing.T) {
	tests := []struct {
		name, in, want string
		lsn            LSN
		wantErr        bool
	}{
		{name: "typical", in: "16/B374D848", lsn: 0x16B374D848, want: "16/B374D848"},
		{name: "zero", in: "0/0", lsn: 0, want: "0/0"},
		{name: "lower case", in: "16/b374d848", lsn: 0x16B374D848, want: "16/B374D848"},
		{name: "leading zeros", in: "00000016/00000001", lsn: 0x1600000001, want: "16/1"},
		{name: "max", in: "FFFFFFFF/FFFFFFFF", lsn: math.MaxUint64, want: "FFFFFFFF/FFFFFFFF"},
		{name: "empty", in: "", wantErr: true},
		{name: "no slash", in: "16", wantErr: true},
		{name: "empty low", in: "16/", wantErr: true},
		{name: "empty high", in: "/1", wantErr: true},
		{name: "nine digits", in: "123456789/0", wantErr: true},
		{name: "not hex", in: "G/0", wantErr: true},
		{name: "sign", in: "+1/0", wantErr: true},
		{name: "prefix", in: "0/0x1", wantErr: true},
		{name: "space", in: " 1/0", wantErr: true},
		{name: "two slashes", in: "1/2/3", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLSN(tc.in)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
					t.Fatalf("ParseLSN(%q) = %v, %v; want an error quoting the input", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.lsn || got.String() != tc.want {
				t.Fatalf("ParseLSN(%q) = %v (%d), %v; want %s (%d)", tc.in, got, uint64(got), err, tc.want, tc.lsn)
			}
		})
	}
}

func TestParseTimelineHistory(t *testing.T) {
	tests := []struct {
		name, in string
		want     []TimelineSwitch
		wantErr  string
	}{
		{name: "empty", in: ""},
		{name: "postgres file", in: "1\t0/3000148\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point \"x\"\n",
			want: []TimelineSwitch{{1, 0x3000148}, {2, 0x5000000}}},
		{name: "skipped timeline", in: "1\t0/10\tx\n3\t0/20\ty", want: []TimelineSwitch{{1, 0x10}, {3, 0x20}}},
		{name: "no reason", in: "1 0/10", want: []TimelineSwitch{{1, 0x10}}},
		{name: "no lsn", in: "1\n", wantErr: `line 1 "1"`},
		{name: "bad timeline", in: "x\t0/10", wantErr: "timeline"},
		{name: "timeline zero", in: "0\t0/10", wantErr: "timeline 0"},
		{name: "bad lsn", in: "1\t0/10\n2\t10", wantErr: `line 2`},
		{name: "not increasing", in: "2\t0/10\n2\t0/20", wantErr: "does not follow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTimelineHistory(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v; want one containing %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("= %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestComparePostgres(t *testing.T) {
	// Timeline 2 began at 0/5000000 and timeline 3 at 0/9000000.
	h3 := mustHistory(t, "1\t0/5000000\tx\n2\t0/9000000\ty\n")
	forked := mustHistory(t, "1\t0/5000000\tx\n") // timeline 3 promoted from 1, not from 2
	at := PostgresAt
	tests := []struct {
		name   string
		a, b   Position
		want   Order
		behind int64 // BytesBehind(a, b)
	}{
		{"same timeline, same lsn", at(100, 2), at(100, 2), Equal, 0},
		{"same timeline, behind", at(100, 2), at(160, 2), Behind, 60},
		{"same timeline, ahead", at(160, 2), at(100, 2), Ahead, 0},
		{"same timeline ignores history", at(100, 3).WithHistory(h3), at(100, 3), Equal, 0},
		{"lower timeline before switch", at(0x8000000, 2), at(0x9000100, 3).WithHistory(h3), Behind, 0x1000100},
		{"lower timeline at switch", at(0x9000000, 2), at(0x9000100, 3).WithHistory(h3), Behind, 0x100},
		{"lower timeline past switch", at(0x9000001, 2), at(0x9000100, 3).WithHistory(h3), Diverged, 0},
		{"ancestor two timelines back", at(0x4000000, 1), at(0x9000100, 3).WithHistory(h3), Behind, 0x5000100},
		{"ancestor two timelines back, past switch", at(0x6000000, 1), at(0x9000100, 3).WithHistory(h3), Diverged, 0},
		{"timeline not in history", at(0x4000000, 2), at(0x9000100, 3).WithHistory(forked), Diverged, 0},
		{"no history, linear", at(0x8000000, 2), at(0x9000000, 3), Behind, 0x1000000},
		{"no history, equal lsn", at(0x9000000, 2), at(0x9000000, 3), Behind, 0},
		{"no history, lower timeline further", at(0x9000001, 2), at(0x9000000, 3), Diverged, 0},
		{"lower position's own history is irrelevant", at(0x8000000, 2).WithHistory(forked), at(0x9000000, 3), Behind, 0x1000000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkCompare(t, tc.a, tc.b, tc.want)
			if got := BytesBehind(tc.a, tc.b); got != tc.behind {
				t.Errorf("BytesBehind = %d; want %d", got, tc.behind)
			}
			if e := Errant(tc.a, tc.b); !e.IsZero() {
				t.Errorf("Errant = %q; want zero", e)
			}
			if n := TransactionsBehind(tc.a, tc.b); n != 0 {
				t.Errorf("TransactionsBehind = %d; want 0", n)
			}
		})
	}
}

func TestPostgresPosition(t *testing.T) {
	h := []TimelineSwitch{{1, 0x10}}
	p := PostgresAt(0x3000060, 2).WithHistory(h)
	h[0].Switch = 0x20 // WithHistory must have copied
	tests := []struct{ name, got, want string }{
		{"string", p.String(), "0/3000060 tl2"},
		{"lsn", p.LSN().String(), "0/3000060"},
		{"timeline", strings.Repeat("x", int(p.Timeline())), "xx"},
		{"history copied", p.history[0].Switch.String(), "0/10"},
		{"history only for postgres", mustMariaDB(t, "0-1-5").WithHistory(h).String(), "0-1-5"},
		{"zero string", Position{}.String(), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q; want %q", tc.got, tc.want)
			}
		})
	}
}

// The binlog state a rewound former primary is reset to names, last in each
// domain, the entry with the highest seq_no: the one the server takes as
// the domain's last GTID.
func TestBinlogStateOrdersEachDomainBySeq(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0-1-646,0-2-4276,0-3-2499", "0-1-646,0-3-2499,0-2-4276"},
		{"0-3-2499,1-2-10,1-1-11", "0-3-2499,1-2-10,1-1-11"},
		{"0-1-5", "0-1-5"},
	} {
		p, err := ParseMariaDB(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.BinlogState(); got != tc.want {
			t.Errorf("BinlogState(%s) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := ParseMariaDB(p.BinlogState())
		if err != nil || back.String() != p.String() {
			t.Errorf("BinlogState(%s) does not parse back to the same position: %v, %v", tc.in, back, err)
		}
	}
}

// TimelineAt: an LSN before a switch lies on the timeline that ended
// there; at or past the last switch, on the position's own timeline.
func TestTimelineAt(t *testing.T) {
	h, err := ParseTimelineHistory("1\t0/3000000\tno recovery target specified\n2\t0/5000000\tno recovery target specified\n")
	if err != nil {
		t.Fatal(err)
	}
	p := PostgresAt(0x6000000, 3).WithHistory(h)
	for _, c := range []struct {
		lsn  LSN
		want uint32
	}{{0x1000000, 1}, {0x2FFFFFF, 1}, {0x3000000, 2}, {0x4FFFFFF, 2}, {0x5000000, 3}, {0x7000000, 3}} {
		if got := p.TimelineAt(c.lsn); got != c.want {
			t.Errorf("TimelineAt(%s) = %d, want %d", c.lsn, got, c.want)
		}
	}
	if got := PostgresAt(0x1000, 1).TimelineAt(0x900); got != 1 {
		t.Errorf("without history: %d, want 1", got)
	}
}
