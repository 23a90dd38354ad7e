package consul

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
)

// TestBlockJSON: the anti-flap block keeps its JSON form. A block an older
// dbha wrote (until, recovery, reason) still reads, with no instance named;
// the fields added since are omitted when empty, and round-trip when set;
// and promote.Block reads the same bytes the same way.
func TestBlockJSON(t *testing.T) {
	until := time.Date(2026, 12, 6, 1, 30, 0, 0, time.UTC)
	old := `{"until":"2026-12-06T01:30:00Z","recovery":"r1","reason":"DeadPrimary"}`
	var b Block
	if err := json.Unmarshal([]byte(old), &b); err != nil || !b.Until.Equal(until) || b.Recovery != "r1" || b.OldPrimary != "" || b.Failed != nil {
		t.Fatalf("an older block reads as %+v (%v)", b, err)
	}
	if got, _ := json.Marshal(b); string(got) != old {
		t.Errorf("an older block writes back as %s, want %s", got, old)
	}

	full := Block{Until: until, Recovery: "r2", Reason: "DeadPrimary", At: until.Add(-30 * time.Minute),
		OldPrimary: "a:3306", NewPrimary: "b:3306", Failed: []string{"c:3306"}}
	raw, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var back Block
	var p promote.Block
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	for _, got := range []Block{back, Block(p)} {
		if !got.Until.Equal(full.Until) || !got.At.Equal(full.At) || got.Recovery != full.Recovery || got.OldPrimary != full.OldPrimary ||
			got.NewPrimary != full.NewPrimary || !slices.Equal(got.Failed, full.Failed) {
			t.Errorf("%s reads back as %+v, want %+v", raw, got, full)
		}
	}
}
