package promote

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// summary is a Consistency that returns what it holds.
type summary struct {
	inc map[string]string
	err error
}

func (s summary) Inconsistent(context.Context, string) (map[string]string, error) {
	return s.inc, s.err
}

// summaryStore is a Store whose only method a plan calls is Inconsistent.
type summaryStore struct {
	Store
	s summary
}

func (s summaryStore) Inconsistent(ctx context.Context, cluster string) (map[string]string, error) {
	return s.s.Inconsistent(ctx, cluster)
}

// A keeper's plan (what `dbha promote --dry-run` and the console print)
// weighs what consistency checks found as its recovery does: read from the
// Store, else from RecoverEnv.Consistency (a keeper that only plans); a
// summary it cannot read, or has nowhere to read from, is said to be
// unknown, never taken for consistency.
func TestKeeperPlanReadsConsistency(t *testing.T) {
	pos := mariaPos(t, "0-1-10")
	rep := func(addr string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Received: pos, Applied: pos, Current: pos, History: pos,
			Replication: &topology.Replication{Source: "db1", SQLRunning: true}}
	}
	snap := topology.Build("c", topology.MariaDB, []topology.Instance{
		{Addr: "db1", Reachable: true, Current: pos, History: pos}, rep("db2"), rep("db3")}, time.Unix(0, 0))
	differs := func(addr string) map[string]string {
		return map[string]string{addr: "differs from the primary db1 in shop.orders (dbha checksum at 2026-12-06T03:00:00Z)"}
	}
	for _, tc := range []struct {
		name        string
		store       Store
		consistency Consistency
		to          string
		wantNew     string
		wantMarked  string // the candidate marked inconsistent ("": none)
		wantUnknown string // in Plan.ConsistencyUnknown ("": empty)
		wantErr     error
	}{
		{name: "nowhere to read from", wantNew: "db2", wantUnknown: "nothing to read them from"},
		{name: "plan-only summary marks the best", consistency: summary{inc: differs("db2")}, wantNew: "db3", wantMarked: "db2"},
		{name: "plan-only summary finds nothing", consistency: summary{}, wantNew: "db2"},
		{name: "plan-only summary not read", consistency: summary{err: errors.New("consul at 127.0.0.1:1: connection refused")},
			wantNew: "db2", wantUnknown: "connection refused"},
		{name: "the store before the plan-only summary", store: summaryStore{s: summary{inc: differs("db3")}},
			consistency: summary{inc: differs("db2")}, wantNew: "db2", wantMarked: "db3"},
		{name: "named inconsistent replica refused", consistency: summary{inc: differs("db2")}, to: "db2", wantErr: ErrNotEligible},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := RecoverEnv{Store: tc.store, Consistency: tc.consistency,
				Discover: func(context.Context, ...topology.Bound) topology.Snapshot { return snap }}
			k := NewKeeper("c", env, func() Request { return Request{} }, nil)
			p, err := k.Plan(context.Background(), Choice{To: tc.to})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "differs from the primary") {
					t.Fatalf("err %v, want %v with why", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.NewPrimary != tc.wantNew {
				t.Errorf("new primary %s, want %s", p.NewPrimary, tc.wantNew)
			}
			for _, c := range p.Candidates {
				why := slices.ContainsFunc(c.Reasons, func(r string) bool { return strings.Contains(r, "differs from the primary") })
				if want := c.Addr == tc.wantMarked; c.Inconsistent != want || why != want {
					t.Errorf("%s: inconsistent %v, reasons %q; want marked %v", c.Addr, c.Inconsistent, c.Reasons, want)
				}
			}
			unknownWarned := slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.Contains(w, "could not be read") })
			if tc.wantUnknown == "" {
				if p.ConsistencyUnknown != "" || unknownWarned {
					t.Errorf("consistency unknown %q, warnings %q: want none", p.ConsistencyUnknown, p.Warnings)
				}
			} else if !strings.Contains(p.ConsistencyUnknown, tc.wantUnknown) || !unknownWarned {
				t.Errorf("consistency unknown %q, warnings %q: want %q", p.ConsistencyUnknown, p.Warnings, tc.wantUnknown)
			}
		})
	}
}
