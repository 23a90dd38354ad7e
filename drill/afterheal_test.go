package drill

import (
	"slices"
	"strings"
	"testing"

	"github.com/dbha/dbha/topology"
)

func TestStateOf(t *testing.T) {
	const p, r1, r2 = "p:1", "r1:1", "r2:1"
	primary := topology.Instance{Addr: p, Reachable: true, Role: topology.RolePrimary}
	replica := func(addr string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Role: topology.RoleReplica,
			Replication: &topology.Replication{Source: p, IORunning: true, SQLRunning: true}}
	}
	errant, err := topology.ParseMariaDB("0-9-4")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		s     topology.Snapshot
		check func(t *testing.T, a AfterHeal)
	}{
		{
			name: "whole",
			s:    topology.Snapshot{Primary: p, Instances: []topology.Instance{primary, replica(r1), replica(r2)}},
			check: func(t *testing.T, a AfterHeal) {
				if !a.Whole || a.Primary != p || !slices.Equal(a.Writable, []string{p}) || !slices.Equal(a.Replicating, []string{r1, r2}) ||
					len(a.Fenced)+len(a.Unreachable)+len(a.Divergence) != 0 || a.Summary() != "whole" {
					t.Errorf("%+v (%s)", a, a.Summary())
				}
			},
		},
		{
			name: "old primary fenced with its replication halted, errant transactions",
			s: func() topology.Snapshot {
				fenced := replica(r2)
				fenced.Replication.IORunning, fenced.Replication.Halted = false, true
				fenced.Errant = errant
				return topology.Snapshot{Primary: p, Instances: []topology.Instance{primary, replica(r1), fenced},
					Problems: []topology.Problem{{Code: topology.ErrantTransactions, Instance: r2, Message: "has 0-9-4"}}}
			}(),
			check: func(t *testing.T, a AfterHeal) {
				if a.Whole || len(a.Fenced) != 1 || a.Fenced[0].Addr != r2 ||
					!strings.Contains(a.Fenced[0].Reason, "halted") || !strings.Contains(a.Fenced[0].Reason, "ErrantTransactions") {
					t.Errorf("fenced: %+v", a.Fenced)
				}
				if len(a.Divergence) != 1 || a.Divergence[0].Errant != "0-9-4" || len(a.Problems) != 1 {
					t.Errorf("divergence %+v problems %v", a.Divergence, a.Problems)
				}
			},
		},
		{
			name: "two writable, one unreachable, a forked timeline",
			s: func() topology.Snapshot {
				second := replica(r1)
				second.ReadOnly = false
				return topology.Snapshot{Instances: []topology.Instance{primary, second, {Addr: r2}},
					Problems: []topology.Problem{{Code: topology.TwoWritablePrimaries, Message: "two"}, {Code: topology.TimelineForked, Instance: r1, Message: "tl"}}}
			}(),
			check: func(t *testing.T, a AfterHeal) {
				if a.Whole || !slices.Equal(a.Writable, []string{p, r1}) || !slices.Equal(a.Unreachable, []string{r2}) {
					t.Errorf("%+v", a)
				}
				if len(a.Divergence) != 1 || !a.Divergence[0].TimelineForked {
					t.Errorf("divergence %+v", a.Divergence)
				}
				if s := a.Summary(); !strings.Contains(s, "NOT whole") || !strings.Contains(s, "2 writable") {
					t.Errorf("summary %q", s)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, StateOf(tc.s)) })
	}
}

func TestAddContentAndRewound(t *testing.T) {
	a := AfterHeal{Whole: true, Primary: "p"}
	a.addContent(map[string]map[int64]int{
		"p":  rows(1, 2, 3),
		"r1": rows(1, 2, 3),
		"r2": rows(1, 2, 4, 5), // lacks 3, holds 4 and 5 the primary lacks
	}, "p")
	a.AddRewound("r2", 2, 0)
	a.AddRewound("r1", 0, 0) // nothing: no entry
	if len(a.Divergence) != 1 {
		t.Fatalf("divergence %+v", a.Divergence)
	}
	d := a.Divergence[0]
	if d.Addr != "r2" || d.Extra != 2 || d.Missing != 1 || d.RewoundTransactions != 2 {
		t.Errorf("%+v", d)
	}
	if s := a.Summary(); s != "whole; r2: 2 trx rewound, 2 rows the primary lacks, 1 rows missing" {
		t.Errorf("summary %q", s)
	}
	b := AfterHeal{}
	if s := b.Summary(); s != "not read" {
		t.Errorf("an unread state says %q", s)
	}
	b.addContent(map[string]map[int64]int{"r": rows(1)}, "") // no primary: nothing to compare with
	if len(b.Divergence) != 0 {
		t.Errorf("divergence without a primary: %+v", b.Divergence)
	}
}
