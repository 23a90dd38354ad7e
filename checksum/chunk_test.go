package checksum

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestChunkWhere(t *testing.T) {
	q := func(s string) string { return "`" + s + "`" }
	ph := func(col string, n int) string { return fmt.Sprintf("$%d:%s", n, col) }
	tests := []struct {
		name  string
		key   []string
		chunk Chunk
		where string
		args  []any
	}{
		{"whole table", []string{"id"}, Chunk{}, "1=1", nil},
		{"first chunk", []string{"id"}, Chunk{Upper: Key{"10"}}, "((`id` <= $1:id))", []any{"10"}},
		{"last chunk", []string{"id"}, Chunk{Lower: Key{"10"}}, "((`id` > $1:id))", []any{"10"}},
		{"middle, two columns", []string{"a", "b"}, Chunk{Lower: Key{"1", "x"}, Upper: Key{"2", "y"}},
			"((`a` > $1:a) OR (`a` = $2:a AND `b` > $3:b)) AND ((`a` < $4:a) OR (`a` = $5:a AND `b` <= $6:b))",
			[]any{"1", "1", "x", "2", "2", "y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			where, args := tc.chunk.Where(tc.key, q, ph, 1)
			if where != tc.where || !reflect.DeepEqual(args, tc.args) {
				t.Errorf("Where = %q %v\nwant    %q %v", where, args, tc.where, tc.args)
			}
		})
	}
	if got := (Chunk{Lower: Key{"1", "x"}}).Range(); got != "(1,x .. end" {
		t.Errorf("Range = %q", got)
	}
}

func TestSizingNext(t *testing.T) {
	s := Sizing{Target: 500 * time.Millisecond, First: 1000, Min: 100, Max: 100_000}
	tests := []struct {
		name string
		size int
		rows int64
		took time.Duration
		want int
	}{
		{"on target", 1000, 1000, 500 * time.Millisecond, 1000},
		{"twice as fast: twice the rows", 1000, 1000, 250 * time.Millisecond, 2000},
		{"very fast: at most four times", 1000, 1000, time.Millisecond, 4000},
		{"very slow: at least a quarter", 1000, 1000, 10 * time.Second, 250},
		{"never below min", 200, 200, 10 * time.Second, 100},
		{"never above max", 90_000, 90_000, 100 * time.Millisecond, 100_000},
		{"an empty chunk doubles", 1000, 0, time.Millisecond, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Next(tc.size, tc.rows, tc.took); got != tc.want {
				t.Errorf("Next(%d, %d, %v) = %d, want %d", tc.size, tc.rows, tc.took, got, tc.want)
			}
		})
	}
}

func TestReportVerdict(t *testing.T) {
	r := Report{Tables: []TableReport{{Table: "a.t", Chunks: 3}}}
	if r.Differences() != 0 || !r.Complete() {
		t.Fatalf("a clean run: %d differences, complete %v", r.Differences(), r.Complete())
	}
	r.Skipped = []Skipped{{Table: "a.nokey", Reason: "too big"}}
	if !r.Complete() {
		t.Error("a skipped table made the run incomplete")
	}
	r.Lost = []ReplicaProblem{{Replica: "r2", Reason: "gone"}}
	if r.Complete() {
		t.Error("a lost replica left the run complete")
	}
	r.Tables[0].Differences = []Difference{{Chunk: 2, Replica: "r1"}}
	if r.Differences() != 1 {
		t.Errorf("differences %d", r.Differences())
	}
}

func TestCompareRows(t *testing.T) {
	m := func(kv ...string) map[string]string {
		out := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	// The primary's four reads: k1 steady, k2 updated between, k3 steady,
	// k4 inserted between, k5 absent throughout.
	primary := []map[string]string{
		m("k1", "a", "k2", "b", "k3", "c"), m("k1", "a", "k2", "b2", "k3", "c", "k4", "d"),
		m("k1", "a", "k2", "b2", "k3", "c", "k4", "d"), m("k1", "a", "k2", "b2", "k3", "c", "k4", "d"),
	}
	standbys := map[string][]map[string]string{
		"same":    {m("k1", "a", "k2", "b", "k3", "c"), m("k1", "a", "k2", "b2", "k3", "c", "k4", "d")},
		"changed": {m("k1", "x", "k2", "b", "k3", "c"), m("k1", "x", "k2", "b2", "k3", "c")},
		"extra":   {m("k1", "a", "k3", "c", "k5", "e"), m("k1", "a", "k3", "c", "k5", "e")},
		"lacks":   {m("k1", "a"), m("k1", "a", "k3", "c")}, // k3 missing in one read is enough
	}
	res, diffs := CompareRows(primary, []string{"same", "changed", "extra", "lacks"}, func(s string) []map[string]string { return standbys[s] })
	if res.Changing != 2 {
		t.Errorf("changing %d, want 2 (k2, k4)", res.Changing)
	}
	want := map[string][]string{"changed": {"k1"}, "extra": {"k5"}, "lacks": {"k3"}}
	if !reflect.DeepEqual(diffs, want) {
		t.Errorf("diffs %v, want %v", diffs, want)
	}
}
