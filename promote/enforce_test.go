package promote

import (
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

func TestEnforce(t *testing.T) {
	pos := func(s string) topology.Position { return mariaPos(t, s) }
	newPrimary := topology.Instance{Addr: "db2", Reachable: true, Current: pos("0-1-10"), History: pos("0-1-10")}
	replica := topology.Instance{Addr: "db3", Reachable: true, ReadOnly: true, Current: pos("0-1-10"), History: pos("0-1-10"),
		Replication: &topology.Replication{Source: "db2", IORunning: true, SQLRunning: true}}
	fenced := func(addr, p string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Current: pos(p), History: pos(p)}
	}
	cases := []struct {
		name      string
		instances []topology.Instance
		writer    string
		fence     []string
		rejoin    []string
		rewind    []string
	}{
		{"the old primary came back writable: fenced first", []topology.Instance{
			{Addr: "db1", Reachable: true, Current: pos("0-1-8"), History: pos("0-1-8")}, newPrimary, replica},
			"db2", []string{"db1"}, nil, nil},
		{"fenced and clean: it rejoins", []topology.Instance{fenced("db1", "0-1-8"), newPrimary, replica},
			"db2", nil, []string{"db1"}, nil},
		{"fenced with transactions nobody else has: rewound", []topology.Instance{fenced("db1", "0-1-11"), newPrimary, replica},
			"db2", nil, nil, []string{"db1"}},
		{"two former primaries back, one behind, one with a tail", []topology.Instance{
			fenced("db1", "0-1-7"), newPrimary, fenced("db3", "0-1-10,0-3-2")},
			"db2", nil, []string{"db1"}, []string{"db3"}},
		{"a replica restarted without its replication settings rejoins", []topology.Instance{
			newPrimary, replica, fenced("db4", "0-1-10")},
			"db2", nil, []string{"db4"}, nil},
		{"no writer registered: nothing", []topology.Instance{
			{Addr: "db1", Reachable: true, Current: pos("0-1-8")}, newPrimary, replica},
			"", nil, nil, nil},
		{"the writer endpoint names an instance that is not writable: nothing rejoins", []topology.Instance{
			fenced("db1", "0-1-8"), fenced("db2", "0-1-10"), replica},
			"db2", nil, nil, nil},
		{"still down", []topology.Instance{{Addr: "db1", Error: "refused"}, newPrimary, replica}, "db2", nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := topology.Build("c", topology.MariaDB, tc.instances, time.Unix(0, 0))
			e := Enforce(s, tc.writer)
			var rewind []string
			for _, d := range e.Rewind {
				rewind = append(rewind, d.Addr)
				if d.Errant.String() == "" {
					t.Errorf("rewind of %s names no errant transactions", d.Addr)
				}
			}
			if !slices.Equal(e.Fence, tc.fence) || !slices.Equal(e.Rejoin, tc.rejoin) || !slices.Equal(rewind, tc.rewind) {
				t.Fatalf("Enforce = %+v; want fence %v rejoin %v rewind %v", e, tc.fence, tc.rejoin, tc.rewind)
			}
		})
	}
}

func TestEnforcePostgresRejoinsEvenWhenAhead(t *testing.T) {
	// A PostgreSQL former primary's extra WAL is its rejoin command's to
	// rewind (pg_rewind): it is always handed to Rejoin.
	primary := topology.Instance{Addr: "p2", Reachable: true, Current: topology.PostgresAt(0x5000, 2)}
	old := topology.Instance{Addr: "p1", Reachable: true, ReadOnly: true, Current: topology.PostgresAt(0x6000, 1)}
	s := topology.Build("c", topology.Postgres, []topology.Instance{old, primary}, time.Unix(0, 0))
	if e := Enforce(s, "p2"); !slices.Equal(e.Rejoin, []string{"p1"}) || len(e.Rewind) != 0 {
		t.Fatalf("Enforce = %+v; want p1 to rejoin", e)
	}
}
