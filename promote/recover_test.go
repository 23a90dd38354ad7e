package promote

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// TestQuorumAllows: an operator's failover needs the voters' majority
// unless forced, and a forced one records what it overrode.
func TestQuorumAllows(t *testing.T) {
	lost := &QuorumCount{Held: true, Summary: "3 of 4"}
	short := &QuorumCount{Summary: "2 of 4 voters say the primary is lost, 3 needed"}
	cases := []struct {
		name       string
		kind       Kind
		force      bool
		quorum     *QuorumCount
		err        error
		overridden string
	}{
		{"failover the voters back", Failover, false, lost, nil, ""},
		{"failover without a majority is refused", Failover, false, short, ErrNoQuorum, ""},
		{"forced failover records the override", Failover, true, short, nil, short.Summary},
		{"no count taken (an automatic recovery)", Failover, false, nil, nil, ""},
		{"a switchover needs no quorum", Switchover, false, short, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := quorumAllows(Plan{Kind: tc.kind}, Request{Force: tc.force}, Trigger{Quorum: tc.quorum})
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) || got != tc.overridden {
				t.Fatalf("quorumAllows = %q, %v; want %q, %v", got, err, tc.overridden, tc.err)
			}
		})
	}
}

// The monitor's failed probe of the primary stands for the recovery's own
// question only while it is fresh, and only for the primary it lost.
func TestTriggerUnanswered(t *testing.T) {
	now := time.Unix(100, 0)
	silent := &topology.Instance{Addr: "db1", Error: "dial tcp: i/o timeout", TimedOut: true}
	for _, tc := range []struct {
		name string
		t    Trigger
		want bool
	}{
		{"fresh", Trigger{Primary: "db1", Unanswered: silent, UnansweredAt: now.Add(-100 * time.Millisecond)}, true},
		{"as old as the bound", Trigger{Primary: "db1", Unanswered: silent, UnansweredAt: now.Add(-500 * time.Millisecond)}, false},
		{"answered", Trigger{Primary: "db1", Unanswered: &topology.Instance{Addr: "db1", Reachable: true}, UnansweredAt: now}, false},
		{"another instance", Trigger{Primary: "db2", Unanswered: silent, UnansweredAt: now}, false},
		{"none", Trigger{Primary: "db1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			known, at := tc.t.unanswered(now, 500*time.Millisecond)
			if got := len(known) == 1; got != tc.want {
				t.Fatalf("known %+v, want one: %v", known, tc.want)
			}
			if tc.want && (!at.Equal(tc.t.UnansweredAt) || known[0].Reachable || !strings.Contains(known[0].Error, "not asked again")) {
				t.Fatalf("known %+v at %v", known[0], at)
			}
		})
	}
}
