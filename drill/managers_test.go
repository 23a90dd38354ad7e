package drill

import (
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
)

func TestLiveManagers(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	before := []checks.PeerView{{Manager: "a", At: t0}, {Manager: "b", At: t0}, {Manager: "stopped", At: t0.Add(-time.Hour)}}
	after := []checks.PeerView{{Manager: "a", At: t0.Add(time.Second)}, {Manager: "b", At: t0}, {Manager: "stopped", At: t0.Add(-time.Hour)},
		{Manager: "new", At: t0.Add(time.Second)}}
	if got, want := LiveManagers(before, after), []string{"a", "new"}; !slices.Equal(got, want) {
		t.Errorf("LiveManagers = %v, want %v", got, want)
	}
	if got := LiveManagers(before, before); len(got) != 0 {
		t.Errorf("nothing moved, yet LiveManagers = %v", got)
	}
}
