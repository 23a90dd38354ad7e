package checks

import (
	"strings"
	"testing"

	"github.com/dbha/dbha/topology"
)

// TestShape: whether a cluster, as it stands, could fail over on its own.
func TestShape(t *testing.T) {
	follows := func(addr string, halted bool) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, Role: topology.RoleReplica,
			Replication: &topology.Replication{Source: prim, Halted: halted}}
	}
	cases := []struct {
		name      string
		instances []topology.Instance
		voters    Voters
		can       bool
		spare     int
		says      string
	}{
		{"two replicas, one manager: no voter to spare", []topology.Instance{follows(rep1, false), follows(rep2, false)},
			Voters{}, true, 0, "one voter more lost with it stops"},
		{"one replica, one manager: 2 of 3", []topology.Instance{follows(rep1, false)},
			Voters{}, true, 0, "2 of 3 voters could confirm"},
		{"a halted replica cannot confirm", []topology.Instance{follows(rep1, false), follows(rep2, true)},
			Voters{}, false, -1, "cannot fail over automatically in its current shape"},
		{"three managers survive the loss of a replica's host too", []topology.Instance{follows(rep1, false), follows(rep2, false)},
			Voters{Self: "m1", Managers: []string{"m1", "m2", "m3"}}, true, 1, "even with up to 1 more"},
		{"no replica: no candidate", nil, Voters{}, false, -1, "no reachable replica follows the primary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := Evidence{Primary: prim, Voters: tc.voters, Snapshot: topology.Snapshot{Primary: prim,
				Instances: append([]topology.Instance{{Addr: prim, Reachable: true, Role: topology.RolePrimary}}, tc.instances...)}}
			s := ShapeOf(ev)
			if s.CanFailOver != tc.can || s.Spare != tc.spare || !strings.Contains(s.Summary, tc.says) {
				t.Fatalf("shape = %+v; want can %v, spare %d, summary with %q", s, tc.can, tc.spare, tc.says)
			}
		})
	}
}
