package promote

import (
	"errors"
	"testing"
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
