package topology

import (
	"encoding/json"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

var mariaSeeds = []string{
	"", "0-1-5", "0-1-5,1-2-9", " 0-1-5 ,\n1-2-9\n", "0-1-5,0-2-10", "0-1-3,0-2-10",
	"0-2-101", "0-1-100", "0-1-105", "0-1-100,0-2-101", "0-1-5,0-2-5",
	"4294967295-4294967295-18446744073709551615", "0-1-5,0-1-6", "0-1", "a-b-c", "0-1-5,",
}

var mysqlSeeds = []string{
	"", u1 + ":1-5:7", u1 + ":1-7", u1 + ":1-10," + u2 + ":1-3", u2 + ":1-2", u1 + ":1-5:t:1",
	u1 + ":1-5,\n" + u2 + ":3", u1 + ":0", u1 + ":1-9223372036854775806", u1,
}

// checkConsistent checks the laws every Compare must obey, whatever the
// engine: reflexivity, antisymmetry, and that the "how much" functions agree
// with the "which way" answer.
func checkConsistent(t *testing.T, a, b Position) Order {
	t.Helper()
	for _, p := range []Position{a, b} {
		if o, err := Compare(p, p); err != nil || o != Equal {
			t.Fatalf("Compare(%q, itself) = %v, %v", p, o, err)
		}
		if n := TransactionsBehind(p, p) + BytesBehind(p, p); n != 0 {
			t.Fatalf("%q is %d behind itself", p, n)
		}
	}
	ab, err := Compare(a, b)
	if err != nil {
		t.Fatalf("Compare(%q, %q): %v", a, b, err)
	}
	if ba, _ := Compare(b, a); ba != mirror(ab) {
		t.Fatalf("Compare(%q, %q) = %v but Compare(b, a) = %v", a, b, ab, ba)
	}
	if ab == Equal || ab == Ahead {
		if n := TransactionsBehind(a, b) + BytesBehind(a, b); n != 0 {
			t.Fatalf("Compare(%q, %q) = %v but a is %d behind", a, b, ab, n)
		}
	}
	return ab
}

// checkJSON checks that p survives a JSON round trip.
func checkJSON(t *testing.T, p Position) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("Marshal(%q): %v", p, err)
	}
	var q Position
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	if o, err := Compare(p, q); err != nil || o != Equal || q.String() != p.String() {
		t.Fatalf("JSON round trip of %q gave %q (%v, %v)", p, q, o, err)
	}
}

func FuzzParseMariaDB(f *testing.F) {
	for _, s := range mariaSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseMariaDB(s)
		if err != nil {
			return
		}
		q, err := ParseMariaDB(p.String())
		if err != nil {
			t.Fatalf("String() of %q is %q, which does not parse: %v", s, p, err)
		}
		if o, err := Compare(p, q); err != nil || o != Equal || q.String() != p.String() {
			t.Fatalf("%q re-parsed from %q is %v, %v", p, s, o, err)
		}
		if e := Errant(p, p); e.IsZero() || e.String() != "" {
			t.Fatalf("Errant(%q, itself) = %q", p, e)
		}
		checkJSON(t, p)
	})
}

func FuzzCompareMariaDB(f *testing.F) {
	for _, a := range mariaSeeds {
		for _, b := range mariaSeeds[:8] {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, sa, sb string) {
		a, errA := ParseMariaDB(sa)
		b, errB := ParseMariaDB(sb)
		if errA != nil || errB != nil {
			return
		}
		checkConsistent(t, a, b)
	})
}

func FuzzCompareMySQL(f *testing.F) {
	for _, a := range mysqlSeeds {
		for _, b := range mysqlSeeds[:6] {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, sa, sb string) {
		a, errA := ParseMySQL(sa)
		b, errB := ParseMySQL(sb)
		if errA != nil || errB != nil {
			return
		}
		checkJSON(t, a)
		o := checkConsistent(t, a, b)
		// The difference must be exactly what inclusion says is missing.
		errant := Errant(a, b)
		if errant.set.IsEmpty() != (o == Equal || o == Behind) {
			t.Fatalf("Compare(%q, %q) = %v but Errant = %q", a, b, o, errant)
		}
		if (TransactionsBehind(a, b) == 0) != (o == Equal || o == Ahead) {
			t.Fatalf("Compare(%q, %q) = %v but TransactionsBehind = %d", a, b, o, TransactionsBehind(a, b))
		}
		if !a.set.Contain(errant.set) || mysqlCount(mysqlMinus(errant.set, b.set)) != mysqlCount(errant.set) {
			t.Fatalf("Errant(%q, %q) = %q is not inside a and outside b", a, b, errant)
		}
		u := b.set.Clone().(*mysql.MysqlGTIDSet)
		if err := u.Update(errant.String()); err != nil || !u.Contain(a.set) {
			t.Fatalf("b ∪ Errant(%q, %q) does not hold a: %v", a, b, err)
		}
	})
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"16/B374D848", "0/0", "FFFFFFFF/FFFFFFFF", "0/3000060", "1/", "/1", "123456789/0", "+1/0", "0/0x1"} {
		f.Add(s, uint64(0x16B374D848))
	}
	f.Fuzz(func(t *testing.T, s string, v uint64) {
		if l, err := ParseLSN(v2s(v)); err != nil || uint64(l) != v {
			t.Fatalf("ParseLSN(%q) = %v, %v; want %d", v2s(v), l, err, v)
		}
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		if m, err := ParseLSN(l.String()); err != nil || m != l {
			t.Fatalf("%q parsed as %v, which re-parses as %v, %v", s, l, m, err)
		}
	})
}

func v2s(v uint64) string { return LSN(v).String() }

func FuzzComparePostgres(f *testing.F) {
	h := "1\t0/5000000\tx\n2\t0/9000000\ty\n"
	f.Add(uint64(0x8000000), uint32(2), "", uint64(0x9000100), uint32(3), h)
	f.Add(uint64(0x9000001), uint32(2), "", uint64(0x9000100), uint32(3), h)
	f.Add(uint64(0x4000000), uint32(2), "", uint64(0x9000100), uint32(3), "1\t0/5000000\tx\n")
	f.Add(uint64(100), uint32(1), "", uint64(100), uint32(1), "")
	f.Add(uint64(5), uint32(1), "#c\n\n1 0/1", uint64(4), uint32(7), "3\t1/0\n2\t0/1")
	f.Fuzz(func(t *testing.T, la uint64, ta uint32, ha string, lb uint64, tb uint32, hb string) {
		histA, errA := ParseTimelineHistory(ha)
		histB, errB := ParseTimelineHistory(hb)
		if errA != nil || errB != nil {
			return
		}
		a := PostgresAt(LSN(la), ta).WithHistory(histA)
		b := PostgresAt(LSN(lb), tb).WithHistory(histB)
		checkJSON(t, a)
		o := checkConsistent(t, a, b)
		if ta < tb && o == Ahead {
			t.Fatalf("%q on a lower timeline is ahead of %q", a, b)
		}
		if (o == Equal) != (ta == tb && la == lb) {
			t.Fatalf("Compare(%q, %q) = %v", a, b, o)
		}
		if n := BytesBehind(a, b); n < 0 || n > 0 && o != Behind {
			t.Fatalf("BytesBehind(%q, %q) = %d with Compare %v", a, b, n, o)
		}
	})
}
