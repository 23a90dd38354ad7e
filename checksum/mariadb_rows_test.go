package checksum

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDifferingKeys(t *testing.T) {
	text := func(cols ...string) string {
		var s string
		for i, c := range cols {
			if i > 0 {
				s += ","
			}
			s += hex.EncodeToString([]byte(c))
		}
		return s
	}
	primary := map[string]uint32{text("1", "a,b"): 10, text("2", "x"): 20, text("3", "y"): 30}
	replica := map[string]uint32{text("1", "a,b"): 10, text("2", "x"): 21, text("4", "z"): 40}
	var got []string
	for _, k := range differingKeys(primary, replica) {
		got = append(got, k[0]+"|"+k[1])
	}
	// A changed row, one the replica lacks, one only the replica holds;
	// a comma inside a key's column survives.
	if want := []string{"2|x", "3|y", "4|z"}; !slices.Equal(got, want) {
		t.Errorf("differing keys %q, want %q", got, want)
	}
	if keys := differingKeys(primary, primary); len(keys) != 0 {
		t.Errorf("the same rows differ: %v", keys)
	}
}

func TestDifferingChunks(t *testing.T) {
	diffs := []Difference{{Chunk: 5, Replica: "b"}, {Chunk: 2, Replica: "a"}, {Chunk: 5, Replica: "a"}}
	if got := differingChunks(diffs); !slices.Equal(got, []int{2, 5}) {
		t.Errorf("differing chunks %v, want [2 5]", got)
	}
}

func TestReportMissing(t *testing.T) {
	r := Report{Skipped: []Skipped{{Table: "a.nokey", Reason: "too big"}, {Table: "a.gone", Reason: "no such table", Missing: true}}}
	if got := r.Missing(); !slices.Equal(got, []string{"a.gone"}) {
		t.Errorf("missing %v, want [a.gone]", got)
	}
}

func TestOnReplicaBoundsASilentReplica(t *testing.T) {
	silent := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	err := onReplica(context.Background(), 20*time.Millisecond, silent)
	if err == nil || !strings.Contains(err.Error(), "no answer within 20ms") {
		t.Errorf("a replica that never answers: %v", err)
	}
	// The run's own end is not the replica's fault.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := onReplica(ctx, time.Minute, silent); !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "no answer") {
		t.Errorf("a run stopped: %v", err)
	}
}
