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
	follows := func(addr, source, p string) topology.Instance {
		in := fenced(addr, p)
		in.Replication = &topology.Replication{Source: source, SQLRunning: true}
		return in
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
		{"a replica still on the old primary, holding its tail: rewound with it", []topology.Instance{
			fenced("db1", "0-1-12"), newPrimary, follows("db3", "db1", "0-1-12")},
			"db2", nil, nil, []string{"db1", "db3"}},
		{"a replica still on the old primary, holding nothing more: rejoins", []topology.Instance{
			fenced("db1", "0-1-9"), newPrimary, follows("db3", "db1", "0-1-9")},
			"db2", nil, []string{"db1", "db3"}, nil},
		{"a cascaded replica of a replica stays where it is", []topology.Instance{
			newPrimary, replica, follows("db4", "db3", "0-1-10")},
			"db2", nil, nil, nil},
		{"a replica of a source outside the cluster is left alone", []topology.Instance{
			newPrimary, replica, follows("db4", "elsewhere:3306", "0-1-10")},
			"db2", nil, nil, nil},
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

func TestEnforcePostgres(t *testing.T) {
	// The writer p2 was promoted to timeline 2 where timeline 1 ended, at
	// 0/5000. A former primary still on timeline 1 past that point holds
	// WAL the writer lacks, which pg_rewind would discard: it is rewound
	// (saved first). One that stopped at or before the fork just rejoins.
	forked := []topology.TimelineSwitch{{Timeline: 1, Switch: 0x5000}}
	primary := topology.Instance{Addr: "p2", Reachable: true, Current: topology.PostgresAt(0x7000, 2).WithHistory(forked)}
	standby := topology.Instance{Addr: "p3", Reachable: true, ReadOnly: true, Current: topology.PostgresAt(0x7000, 2).WithHistory(forked),
		Replication: &topology.Replication{Source: "p2", IORunning: true, SQLRunning: true}}
	fenced := func(addr string, pos topology.Position) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Current: pos}
	}
	cases := []struct {
		name      string
		instances []topology.Instance
		rejoin    []string
		rewind    []string
	}{
		{"old primary wrote past the fork on its timeline: rewound",
			[]topology.Instance{fenced("p1", topology.PostgresAt(0x6000, 1)), primary, standby}, nil, []string{"p1"}},
		{"old primary one byte past the fork (its end-of-recovery checkpoint): rewound",
			[]topology.Instance{fenced("p1", topology.PostgresAt(0x5001, 1)), primary, standby}, nil, []string{"p1"}},
		{"old primary exactly at the fork: rejoins",
			[]topology.Instance{fenced("p1", topology.PostgresAt(0x5000, 1)), primary, standby}, []string{"p1"}, nil},
		{"old primary behind the fork: rejoins",
			[]topology.Instance{fenced("p1", topology.PostgresAt(0x4000, 1)), primary, standby}, []string{"p1"}, nil},
		{"a standby restarted without its settings, behind on the writer's timeline: rejoins",
			[]topology.Instance{primary, fenced("p3", topology.PostgresAt(0x6000, 2).WithHistory(forked))}, []string{"p3"}, nil},
		{"ahead on the writer's own timeline: rewound",
			[]topology.Instance{primary, fenced("p3", topology.PostgresAt(0x8000, 2).WithHistory(forked))}, nil, []string{"p3"}},
		{"on a timeline the writer's history does not name: rewound",
			[]topology.Instance{fenced("p1", topology.PostgresAt(0x4000, 3).WithHistory([]topology.TimelineSwitch{{Timeline: 1, Switch: 0x3000}})), primary},
			nil, []string{"p1"}},
		{"position unknown: rejoins, as before",
			[]topology.Instance{fenced("p1", topology.Position{}), primary, standby}, []string{"p1"}, nil},
		{"two former primaries, one forked, one behind",
			[]topology.Instance{fenced("p1", topology.PostgresAt(0x9000, 1)), primary, fenced("p3", topology.PostgresAt(0x3000, 1))},
			[]string{"p3"}, []string{"p1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := topology.Build("c", topology.Postgres, tc.instances, time.Unix(0, 0))
			e := Enforce(s, "p2")
			var rewind []string
			for _, d := range e.Rewind {
				rewind = append(rewind, d.Addr)
				if in, _ := s.Instance(d.Addr); d.Errant.String() != in.Current.String() {
					t.Errorf("rewind of %s names %q, want its position %q", d.Addr, d.Errant, in.Current)
				}
			}
			if len(e.Fence) != 0 || !slices.Equal(e.Rejoin, tc.rejoin) || !slices.Equal(rewind, tc.rewind) {
				t.Fatalf("Enforce = %+v; want rejoin %v rewind %v", e, tc.rejoin, tc.rewind)
			}
		})
	}
}

func TestEnforceReopen(t *testing.T) {
	pos := func(s string) topology.Position { return mariaPos(t, s) }
	replica := func(addr, source string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Current: pos("0-1-10"), History: pos("0-1-10"),
			Replication: &topology.Replication{Source: source, IORunning: true, SQLRunning: true}}
	}
	primary := func(readOnly bool) topology.Instance {
		return topology.Instance{Addr: "db1", Reachable: true, ReadOnly: readOnly, Current: pos("0-1-10"), History: pos("0-1-10")}
	}
	cases := []struct {
		name      string
		instances []topology.Instance
		writer    string
		reopen    string
	}{
		{"the writer, fenced by its guard: reopened", []topology.Instance{primary(true), replica("db2", "db1"), replica("db3", "db1")}, "db1", "db1"},
		{"the writer is writable: nothing", []topology.Instance{primary(false), replica("db2", "db1"), replica("db3", "db1")}, "db1", ""},
		{"the writer endpoint names another: nothing", []topology.Instance{primary(true), replica("db2", "db1"), replica("db3", "db1")}, "db2", ""},
		{"no writer registered, a primary every instance follows: reopened", []topology.Instance{primary(true), replica("db2", "db1")}, "", "db1"},
		{"no writer registered, the primary writable: nothing", []topology.Instance{primary(false), replica("db2", "db1")}, "", ""},
		{"no writer registered, an instance follows nobody: nothing", []topology.Instance{primary(true), replica("db2", "db1"),
			{Addr: "db3", Reachable: true, ReadOnly: true, Current: pos("0-1-10"), History: pos("0-1-10")}}, "", ""},
		{"no writer registered, an instance follows another source: nothing", []topology.Instance{primary(true), replica("db2", "db1"), replica("db3", "db9")}, "", ""},
		{"another instance is writable: nothing", []topology.Instance{primary(true), replica("db2", "db1"),
			{Addr: "db3", Reachable: true, Current: pos("0-1-10"), History: pos("0-1-10"),
				Replication: &topology.Replication{Source: "db1", IORunning: true, SQLRunning: true}}}, "db1", ""},
		{"the writer cannot be reached: nothing", []topology.Instance{{Addr: "db1", Error: "refused"}, replica("db2", "db1")}, "db1", ""},
		{"the writer follows a source: nothing", []topology.Instance{replica("db1", "db2"), {Addr: "db2", Reachable: true, ReadOnly: true,
			Current: pos("0-1-10"), History: pos("0-1-10")}}, "db1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := topology.Build("c", topology.MariaDB, tc.instances, time.Unix(0, 0))
			if e := Enforce(s, tc.writer); e.Reopen != tc.reopen || e.Unpublished != (tc.reopen != "" && tc.writer == "") {
				t.Fatalf("Enforce = %+v; want reopen %q", e, tc.reopen)
			}
		})
	}
}
