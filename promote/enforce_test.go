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
	done := &Record{Done: true, Plan: Plan{OldPrimary: "db1", NewPrimary: "db2"}}
	cases := []struct {
		name   string
		old    topology.Instance
		writer string
		latest *Record
		fence  []string
		rejoin string
		hold   bool
	}{
		{"the old primary came back writable", topology.Instance{Addr: "db1", Reachable: true, Current: pos("0-1-8"), History: pos("0-1-8")},
			"db2", done, []string{"db1"}, "", false},
		{"fenced and clean: it rejoins", topology.Instance{Addr: "db1", Reachable: true, ReadOnly: true, Current: pos("0-1-8"), History: pos("0-1-8")},
			"db2", done, nil, "db1", false},
		{"fenced with transactions nobody else has: held", topology.Instance{Addr: "db1", Reachable: true, ReadOnly: true, Current: pos("0-1-11"), History: pos("0-1-11")},
			"db2", done, nil, "", true},
		{"no writer registered: nothing", topology.Instance{Addr: "db1", Reachable: true, Current: pos("0-1-8")},
			"", done, nil, "", false},
		{"the recovery was aborted: no rejoin", topology.Instance{Addr: "db1", Reachable: true, ReadOnly: true, Current: pos("0-1-8"), History: pos("0-1-8")},
			"db2", &Record{Done: true, Aborted: true, Plan: done.Plan}, nil, "", false},
		{"still down", topology.Instance{Addr: "db1", Error: "refused"}, "db2", done, nil, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := topology.Build("c", topology.MariaDB, []topology.Instance{tc.old, newPrimary, replica}, time.Unix(0, 0))
			e := Enforce(s, tc.writer, tc.latest)
			if !slices.Equal(e.Fence, tc.fence) || e.Rejoin != tc.rejoin || (e.Hold != "") != tc.hold {
				t.Fatalf("Enforce = %+v; want fence %v rejoin %q hold %v", e, tc.fence, tc.rejoin, tc.hold)
			}
		})
	}
}
