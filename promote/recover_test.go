package promote

import (
	"errors"
	"testing"
	"time"
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

// The monitor's failed probe of the primary shortens the recovery's own
// question only while it is fresh, and only for the primary it lost.
func TestTriggerRecheck(t *testing.T) {
	now := time.Unix(100, 0)
	for _, tc := range []struct {
		name string
		t    Trigger
		want bool
	}{
		{"fresh", Trigger{Primary: "db1", UnansweredAt: now.Add(-100 * time.Millisecond)}, true},
		{"as old as the bound", Trigger{Primary: "db1", UnansweredAt: now.Add(-500 * time.Millisecond)}, false},
		{"answered", Trigger{Primary: "db1"}, false},
		{"no primary named", Trigger{UnansweredAt: now}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.t.recheck(now, 500*time.Millisecond, 200*time.Millisecond)
			if (len(got) == 1) != tc.want {
				t.Fatalf("bounds %+v, want one: %v", got, tc.want)
			}
			if tc.want && (got[0].Addr != "db1" || got[0].Timeout != 200*time.Millisecond) {
				t.Fatalf("bound %+v, want db1 under 200ms", got[0])
			}
		})
	}
}
