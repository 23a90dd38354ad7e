package postgres

import (
	"testing"

	"github.com/dbha/dbha/topology"
)

// TestFillTimeline: which timeline a standby's positions are on. With its
// receiver running, the receiver's; stopped (the primary died), the
// highest timeline of the WAL it holds, never an older restartpoint's.
func TestFillTimeline(t *testing.T) {
	lsn := func(s string) *string { return &s }
	cases := []struct {
		name string
		st   state
		want uint32
	}{
		{"receiver streaming", state{receiverRunning: true, receivedTimeline: 25, checkpointTimeline: 1, walTimeline: 0}, 25},
		{"receiver stopped: the WAL it holds, not its last restartpoint", state{checkpointTimeline: 1, walTimeline: 25}, 25},
		{"receiver stopped, no WAL listed: its checkpoint's", state{checkpointTimeline: 3}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			st.inRecovery, st.version = true, "15"
			st.receiveLSN, st.replayLSN = lsn("0/4AFC9C0"), lsn("0/4AFC9C0")
			var in topology.Instance
			if err := st.fill(&in); err != nil {
				t.Fatal(err)
			}
			if in.Received.Timeline() != tc.want || in.Applied.Timeline() != tc.want {
				t.Errorf("received %s, applied %s; want timeline %d", in.Received, in.Applied, tc.want)
			}
		})
	}
}
