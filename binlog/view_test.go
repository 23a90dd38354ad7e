package binlog

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dbha/dbha/topology"
)

// TestClusterView feeds a view discoveries in turn, as a stream asks for
// the primary, and checks what it answers and what retention is told to
// keep.
func TestClusterView(t *testing.T) {
	maria := func(s string) topology.Position { return mariaPos(t, s) }
	primary := func(addr string, pos topology.Position) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, Role: topology.RolePrimary, Current: pos}
	}
	mariaReplica := func(addr, current, applied string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, Role: topology.RoleReplica,
			Current: maria(current), Applied: maria(applied), Received: maria(current)}
	}
	pgReplica := func(addr string, received, replayed topology.LSN) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, Role: topology.RoleReplica,
			Current: topology.PostgresAt(replayed, 1), Applied: topology.PostgresAt(replayed, 1),
			Received: topology.PostgresAt(received, 1)}
	}
	gone := func(addr string) topology.Instance {
		return topology.Instance{Addr: addr, Role: topology.RoleUnknown, Error: "connection refused"}
	}
	snap := func(primaryAddr string, ins ...topology.Instance) topology.Snapshot {
		return topology.Snapshot{Cluster: "c1", Primary: primaryAddr, Instances: ins}
	}
	cases := []struct {
		name        string
		rounds      []topology.Snapshot
		wantPrimary string // after the last round; "" wants ErrNoPrimary
		wantKeep    []string
	}{
		{"MariaDB keeps each replica's current GTID position", []topology.Snapshot{
			snap("m1", primary("m1", maria("0-1-10")), mariaReplica("m2", "0-1-9", "0-1-8"), mariaReplica("m3", "0-1-7,1-3-2", "0-1-7")),
		}, "m1", []string{"0-1-7,1-3-2", "0-1-9"}},
		{"PostgreSQL keeps each standby's replay LSN", []topology.Snapshot{
			snap("p1", primary("p1", topology.PostgresAt(0x9000, 1)), pgReplica("p2", 0x8000, 0x7000)),
		}, "p1", []string{"0/7000 tl1"}},
		{"positions update when the replica answers", []topology.Snapshot{
			snap("m1", primary("m1", maria("0-1-10")), mariaReplica("m2", "0-1-9", "0-1-9")),
			snap("m1", primary("m1", maria("0-1-12")), mariaReplica("m2", "0-1-12", "0-1-12")),
		}, "m1", []string{"0-1-12"}},
		{"a replica that stops answering keeps its last known position", []topology.Snapshot{
			snap("m1", primary("m1", maria("0-1-10")), mariaReplica("m2", "0-1-4", "0-1-4"), mariaReplica("m3", "0-1-10", "0-1-10")),
			snap("m1", primary("m1", maria("0-1-20")), gone("m2"), mariaReplica("m3", "0-1-20", "0-1-20")),
		}, "m1", []string{"0-1-20", "0-1-4"}},
		{"a replica never seen is not kept for", []topology.Snapshot{
			snap("m1", primary("m1", maria("0-1-10")), gone("m2")),
		}, "m1", []string{}},
		// The promoted replica's last position as a replica is forgotten:
		// kept, it would hold retention back for good.
		{"a switchover: the new primary, and the old one's position as a replica", []topology.Snapshot{
			snap("m1", primary("m1", maria("0-1-10")), mariaReplica("m2", "0-1-10", "0-1-10")),
			snap("m2", mariaReplica("m1", "0-2-11", "0-2-11"), primary("m2", maria("0-2-11"))),
		}, "m2", []string{"0-2-11"}},
		{"no writable primary: the view says so and keeps the positions", []topology.Snapshot{
			snap("m1", primary("m1", maria("0-1-10")), mariaReplica("m2", "0-1-9", "0-1-9")),
			{Cluster: "c1", Instances: []topology.Instance{gone("m1"), mariaReplica("m2", "0-1-9", "0-1-9")},
				Problems: []topology.Problem{{Code: topology.PrimaryUnreachable, Message: "m1 does not answer"}}},
		}, "", []string{"0-1-9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rounds := tc.rounds
			v := NewClusterView(func(context.Context) topology.Snapshot {
				s := rounds[0]
				rounds = rounds[1:]
				return s
			})
			var (
				got string
				err error
			)
			for range tc.rounds {
				got, err = v.Primary(t.Context())
			}
			if tc.wantPrimary == "" {
				if !errors.Is(err, topology.ErrNoPrimary) {
					t.Errorf("Primary = %q, %v; want ErrNoPrimary", got, err)
				}
			} else if err != nil || got != tc.wantPrimary {
				t.Errorf("Primary = %q, %v; want %s", got, err, tc.wantPrimary)
			}
			keep, err := v.ReplicaPositions(t.Context())
			if err != nil {
				t.Fatalf("ReplicaPositions: %v", err)
			}
			var keepText []string
			for _, p := range keep {
				keepText = append(keepText, p.String())
			}
			slices.Sort(keepText)
			want := slices.Sorted(slices.Values(tc.wantKeep))
			if !slices.Equal(keepText, want) {
				t.Errorf("ReplicaPositions = %q, want %q", keepText, want)
			}
		})
	}
}

// TestReplicaPosition checks which of a replica's positions lag and
// retention use.
func TestReplicaPosition(t *testing.T) {
	pg := topology.Instance{Current: topology.PostgresAt(0x7000, 1), Applied: topology.PostgresAt(0x6000, 1),
		Received: topology.PostgresAt(0x8000, 1)}
	if got := ReplicaPosition(pg); got.LSN() != 0x6000 {
		t.Errorf("PostgreSQL: %s, want the replay LSN 0/6000", got)
	}
	m := topology.Instance{Current: mariaPos(t, "0-1-9,1-5-2"), Applied: mariaPos(t, "0-1-9"), Received: mariaPos(t, "0-1-11")}
	if got := ReplicaPosition(m); got.String() != "0-1-9,1-5-2" {
		t.Errorf("MariaDB: %s, want gtid_current_pos 0-1-9,1-5-2", got)
	}
}
