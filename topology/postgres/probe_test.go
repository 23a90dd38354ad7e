package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestFillHeartbeats: a primary reports how often its walsenders ping an
// idle standby (half of wal_sender_timeout), a standby how soon it pings a
// silent source itself (half of wal_receiver_timeout); a disabled timeout
// promises nothing.
func TestFillHeartbeats(t *testing.T) {
	lsn := func(s string) *string { return &s }
	primary := state{version: "15", currentLSN: lsn("0/4AFC9C0"), walFile: lsn("000000010000000000000004"),
		senderTimeout: 1000, receiverTimeout: 4000}
	var in topology.Instance
	if err := primary.fill(&in); err != nil {
		t.Fatal(err)
	}
	if in.Keepalive != topology.Duration(500*time.Millisecond) || in.Replication != nil {
		t.Errorf("primary: keepalive %v, replication %+v; want 500ms and none", time.Duration(in.Keepalive), in.Replication)
	}
	for _, tc := range []struct {
		receiverTimeout int64
		want            time.Duration
	}{{4000, 2 * time.Second}, {0, 0}} {
		standby := state{version: "15", inRecovery: true, receiverRunning: true, receiverStatus: "streaming", receivedTimeline: 1,
			receiveLSN: lsn("0/4AFC9C0"), replayLSN: lsn("0/4AFC9C0"), senderTimeout: 1000, receiverTimeout: tc.receiverTimeout}
		var in topology.Instance
		if err := standby.fill(&in); err != nil {
			t.Fatal(err)
		}
		if in.Keepalive != 0 || in.Replication == nil || time.Duration(in.Replication.Heartbeat) != tc.want {
			t.Errorf("standby with wal_receiver_timeout %dms: keepalive %v, replication %+v; want heartbeat %v",
				tc.receiverTimeout, time.Duration(in.Keepalive), in.Replication, tc.want)
		}
	}
}

// TestHistoryFetchedOncePerTimeline: a timeline's history never changes, so
// the prober reads it once per address and timeline; a failed read is not
// remembered, and a new timeline is read afresh.
func TestHistoryFetchedOncePerTimeline(t *testing.T) {
	p := NewProber("dbha", "secret")
	var fetched []string
	fail := false
	p.fetchHistory = func(_ context.Context, addr string, tl uint32) ([]topology.TimelineSwitch, error) {
		fetched = append(fetched, fmt.Sprintf("%s@%d", addr, tl))
		if fail {
			return nil, errors.New("refused")
		}
		return []topology.TimelineSwitch{{Timeline: tl - 1}}, nil
	}
	ctx := context.Background()
	steps := []struct {
		addr    string
		tl      uint32
		fail    bool
		wantErr bool
	}{
		{"a:1", 2, false, false},
		{"a:1", 2, false, false}, // remembered
		{"b:1", 2, true, true},   // failed: not remembered
		{"b:1", 2, false, false},
		{"a:1", 3, false, false}, // a new timeline
		{"a:1", 3, false, false},
	}
	for i, st := range steps {
		fail = st.fail
		h, err := p.history(ctx, st.addr, st.tl)
		if (err != nil) != st.wantErr || (err == nil && (len(h) != 1 || h[0].Timeline != st.tl-1)) {
			t.Fatalf("step %d: history %+v, %v", i, h, err)
		}
	}
	if want := "a:1@2 b:1@2 b:1@2 a:1@3"; strings.Join(fetched, " ") != want {
		t.Errorf("fetched %s, want %s", strings.Join(fetched, " "), want)
	}
}
