package promote

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// FuzzMakePlan plans random MariaDB failovers and switchovers and checks
// the promises a plan makes: it never picks an excluded replica unless
// forced to, the new primary ends up holding at least what it held, the
// steps start with the lock and end with the unlock, and "no loss" means
// the last position seen is kept.
func FuzzMakePlan(f *testing.F) {
	f.Add([]byte{1, 150, 140, 0, 120, 120, 0, 152, 1, 0})
	f.Add([]byte{0, 200, 200, 1, 200, 198, 2, 0, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		next := func() int {
			if len(b) == 0 {
				return 0
			}
			v := int(b[0])
			b = b[1:]
			return v
		}
		gtid := func(seq int) topology.Position {
			p, _ := topology.ParseMariaDB(fmt.Sprintf("0-1-%d", seq))
			return p
		}
		primaryDead := next()%2 == 1
		ins := []topology.Instance{{Addr: "p", Reachable: !primaryDead, ServerID: 1, Current: gtid(250), History: gtid(250)}}
		for i, addr := range []string{"r1", "r2", "r3"} {
			rec, app := next()%250+1, 0
			app = rec - next()%(rec+1)
			in := topology.Instance{Addr: addr, ServerID: uint32(i + 2), Reachable: next()%5 != 0, ReadOnly: true,
				Received: gtid(rec), Applied: gtid(max(app, 1)), Current: gtid(max(app, 1)), History: gtid(max(app, 1)),
				Replication: &topology.Replication{Source: "p", IORunning: !primaryDead, SQLRunning: true}}
			if next()%7 == 0 {
				in.Replication.SQLError = "broken"
			}
			ins = append(ins, in)
		}
		s := topology.Build("c", topology.MariaDB, ins, time.Unix(0, 0))
		r := Request{Force: next()%3 == 0}
		if v := next() % 4; v > 0 {
			r.To = []string{"", "r1", "r2", "r3"}[v]
		}
		if v := next(); v > 0 {
			r.LastSeen = gtid(v)
			r.Held = &Held{Position: gtid(v), From: "p"}
		}
		p, err := MakePlan(s, r)
		if err != nil {
			return
		}
		i := slices.IndexFunc(p.Candidates, func(c Candidate) bool { return c.Addr == p.NewPrimary })
		if i < 0 || p.NewPrimary == p.OldPrimary {
			t.Fatalf("new primary %q is not a candidate", p.NewPrimary)
		}
		if c := p.Candidates[i]; c.Excluded && !(r.Force && r.To == c.Addr) {
			t.Fatalf("excluded %s chosen without --force: %+v", c.Addr, c)
		}
		if o, err := topology.Compare(p.Target, p.Candidates[i].Position); err != nil || (o != topology.Ahead && o != topology.Equal) {
			t.Fatalf("target %s is %v the new primary's own %s", p.Target, o, p.Candidates[i].Position)
		}
		if p.Steps[0].Action != ActLock || p.Steps[len(p.Steps)-1].Action != ActUnlock {
			t.Fatalf("steps do not start with lock and end with unlock: %+v", p.Steps)
		}
		if p.Loss.None && !r.LastSeen.IsZero() && p.Kind == Failover {
			if o, _ := topology.Compare(p.Target, r.LastSeen); o != topology.Ahead && o != topology.Equal {
				t.Fatalf("no loss claimed, but target %s is %v last seen %s", p.Target, o, r.LastSeen)
			}
		}
	})
}
