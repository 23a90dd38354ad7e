package checksum

import (
	"fmt"
	"strings"
	"time"
)

// Table is one table to check: its key (the primary key, else a unique
// key on NOT NULL columns) and its columns, in order.
type Table struct {
	// Database is PostgreSQL's ("" for MariaDB, whose schema is its
	// database).
	Database     string
	Schema, Name string
	// Index names the key's index (PRIMARY, or the unique key's name).
	Index string
	Key   []string
	// Columns are every column, in table order; Types their types
	// (PostgreSQL's format_type, for binding key values).
	Columns []string
	Types   map[string]string
	// Rows is the engine's estimate, for progress.
	Rows int64
}

func (t Table) String() string {
	if t.Database != "" {
		return t.Database + "." + t.Schema + "." + t.Name
	}
	return t.Schema + "." + t.Name
}

// Key is one key value, its columns' values in key order, as text (the
// engines compare and bind them as text, which both convert exactly for
// integers, strings and temporal types).
type Key []string

func (k Key) String() string { return strings.Join(k, ",") }

// Chunk is the rows whose key lies in (Lower, Upper]; a nil Lower is the
// start of the table, a nil Upper its end. Consecutive chunks share a
// bound, so together they cover the whole key space: rows inserted
// anywhere during the run fall in some chunk.
type Chunk struct {
	N            int
	Lower, Upper Key
}

// Range describes the chunk's keys for a person.
func (c Chunk) Range() string {
	lo, hi := "start", "end"
	if c.Lower != nil {
		lo = "(" + c.Lower.String()
	}
	if c.Upper != nil {
		hi = c.Upper.String() + "]"
	}
	return lo + " .. " + hi
}

// Where is the chunk's condition on the key columns (quoted by quote) and
// its arguments, in order. Placeholders come from ph, given the column and
// its number from first (MariaDB "?", PostgreSQL "$n::type").
func (c Chunk) Where(key []string, quote func(string) string, ph func(col string, n int) string, first int) (string, []any) {
	var conds []string
	var args []any
	n := first
	next := func(col string) string { s := ph(col, n); n++; return s }
	if c.Lower != nil {
		cond, a := compare(key, c.Lower, ">", quote, next)
		conds, args = append(conds, cond), append(args, a...)
	}
	if c.Upper != nil {
		cond, a := compare(key, c.Upper, "<=", quote, next)
		conds, args = append(conds, cond), append(args, a...)
	}
	if len(conds) == 0 {
		return "1=1", nil
	}
	return strings.Join(conds, " AND "), args
}

// compare expands (k1, k2, ...) op (v1, v2, ...) for op > or <= into
// comparisons an index range scan uses: (k1 > v1) OR (k1 = v1 AND k2 > v2)
// ..., the last column taking op itself.
func compare(key []string, v Key, op string, quote func(string) string, next func(col string) string) (string, []any) {
	strict := map[string]string{">": ">", "<=": "<"}[op]
	var ors []string
	var args []any
	for i := range key {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, quote(key[j])+" = "+next(key[j]))
			args = append(args, v[j])
		}
		o := strict
		if i == len(key)-1 {
			o = op
		}
		ands = append(ands, quote(key[i])+" "+o+" "+next(key[i]))
		args = append(args, v[i])
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

// Sizing bounds chunk sizes.
type Sizing struct {
	// Target is how long one chunk should take on the primary.
	Target time.Duration
	// First, Min and Max are rows: the first chunk's size and the bounds.
	First, Min, Max int
}

// DefaultSizing: half-second chunks, starting at 1000 rows.
func DefaultSizing() Sizing {
	return Sizing{Target: 500 * time.Millisecond, First: 1000, Min: 100, Max: 1_000_000}
}

// Next is the size of the next chunk after one of size rows took took:
// scaled toward the target, by at most a factor of 4 either way (one slow
// chunk, a lock wait, must not shrink the run to crumbs), within bounds.
// Pure.
func (s Sizing) Next(size int, rows int64, took time.Duration) int {
	if took <= 0 || rows <= 0 {
		return min(s.Max, max(s.Min, size*2))
	}
	rate := float64(rows) / took.Seconds()
	want := int(rate * s.Target.Seconds())
	want = min(want, size*4)
	want = max(want, size/4)
	return min(s.Max, max(s.Min, want))
}

func (s Sizing) validate() error {
	if s.Target <= 0 || s.First <= 0 || s.Min <= 0 || s.Max < s.Min {
		return fmt.Errorf("chunk sizing %+v: target, first, min must be positive and max at least min", s)
	}
	return nil
}
