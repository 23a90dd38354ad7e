package backup

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

func pos(t *testing.T, s string) topology.Position {
	t.Helper()
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func replica(t *testing.T, addr, at string, lagSeconds float64) topology.Instance {
	p := pos(t, at)
	return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Current: p, Applied: p, Received: p, History: p,
		Replication: &topology.Replication{Source: "db1", IORunning: true, SQLRunning: true, SecondsBehind: &lagSeconds}}
}

func TestChooseSource(t *testing.T) {
	primary := func(t *testing.T) topology.Instance {
		p := pos(t, "0-1-100")
		return topology.Instance{Addr: "db1", Reachable: true, Current: p, History: p}
	}
	cases := []struct {
		name      string
		instances func(t *testing.T) []topology.Instance
		policy    SourcePolicy
		want      string
		wantErr   string
	}{
		{"the least lagging healthy replica", func(t *testing.T) []topology.Instance {
			return []topology.Instance{primary(t), replica(t, "db2", "0-1-90", 5), replica(t, "db3", "0-1-99", 1)}
		}, SourcePolicy{}, "db3", ""},
		{"never a replica with errant transactions", func(t *testing.T) []topology.Instance {
			r := replica(t, "db3", "0-1-99", 0)
			r.History = pos(t, "0-1-99,0-3-7")
			return []topology.Instance{primary(t), replica(t, "db2", "0-1-90", 5), r}
		}, SourcePolicy{}, "db2", ""},
		{"never a replica whose replication is stopped", func(t *testing.T) []topology.Instance {
			r := replica(t, "db3", "0-1-99", 0)
			r.Replication.SQLRunning = false
			return []topology.Instance{primary(t), replica(t, "db2", "0-1-90", 5), r}
		}, SourcePolicy{}, "db2", ""},
		{"no healthy replica and the primary not allowed", func(t *testing.T) []topology.Instance {
			return []topology.Instance{primary(t), {Addr: "db2", Error: "refused"}}
		}, SourcePolicy{}, "", "not allowed"},
		{"no healthy replica, the primary allowed", func(t *testing.T) []topology.Instance {
			return []topology.Instance{primary(t), {Addr: "db2", Error: "refused"}}
		}, SourcePolicy{AllowPrimary: true}, "db1", ""},
		{"the only instance", func(t *testing.T) []topology.Instance {
			return []topology.Instance{primary(t)}
		}, SourcePolicy{}, "db1", ""},
		{"--from a replica", func(t *testing.T) []topology.Instance {
			return []topology.Instance{primary(t), replica(t, "db2", "0-1-90", 5), replica(t, "db3", "0-1-99", 1)}
		}, SourcePolicy{From: "db2"}, "db2", ""},
		{"--from an errant replica is refused", func(t *testing.T) []topology.Instance {
			r := replica(t, "db3", "0-1-99", 0)
			r.History = pos(t, "0-1-99,0-3-7")
			return []topology.Instance{primary(t), r}
		}, SourcePolicy{From: "db3"}, "", "errant"},
		{"--from an unreachable instance is refused", func(t *testing.T) []topology.Instance {
			return []topology.Instance{primary(t), {Addr: "db2", Error: "refused"}}
		}, SourcePolicy{From: "db2"}, "", "cannot be reached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := topology.Build("c", topology.MariaDB, tc.instances(t), time.Unix(0, 0))
			got, err := ChooseSource(s, tc.policy)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrNoSource mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Addr != tc.want || got.Reason == "" {
				t.Fatalf("ChooseSource = %+v, %v; want %s with a reason", got, err, tc.want)
			}
		})
	}
}

func TestChooseSourceRefusesMySQL(t *testing.T) {
	p, err := topology.ParseMySQL("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100")
	if err != nil {
		t.Fatal(err)
	}
	s := topology.Build("c", topology.MySQL, []topology.Instance{{Addr: "db1", Reachable: true, Current: p, History: p}}, time.Unix(0, 0))
	for _, policy := range []SourcePolicy{{}, {AllowPrimary: true}, {From: "db1"}} {
		if got, err := ChooseSource(s, policy); !errors.Is(err, ErrUnsupportedEngine) || !strings.Contains(err.Error(), "mariadb-backup") {
			t.Fatalf("ChooseSource(%+v) = %+v, %v; want ErrUnsupportedEngine", policy, got, err)
		}
	}
}
