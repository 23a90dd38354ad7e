package console

import (
	"fmt"
	"slices"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/topology"
)

// clusterView is one cluster as the pages show it.
type clusterView struct {
	Name, Engine string
	// State is healthy, degraded, failing over, paused or unknown.
	State     string
	Primary   string
	Replicas  []nodeView
	Nodes     []nodeView // the primary first, then the replicas
	Findings  []checks.Finding
	Levels    map[string]int // findings by level
	Votes     []checks.Vote
	Quorum    string
	Shape     string
	Stream    string
	Paused    *checks.PauseView
	Backups   *checks.BackupsView
	UpdatedAt time.Time
	Tree      tree
}

// nodeView is one instance: its role, position, lag and replication.
type nodeView struct {
	Addr, Role, Position, Lag, Replication string
	Reachable, ReadOnly                    bool
	Error                                  string
}

// tree is the replication graph laid out for SVG: the primary on top,
// each replica below it, a line from the primary to each replica that
// follows it.
type tree struct {
	Width, Height int
	Boxes         []box
	Lines         []line
}

type box struct {
	X, Y, W, H int
	Node       nodeView
	Class      string
}

type line struct{ X1, Y1, X2, Y2 int }

const boxW, boxH, gap = 220, 64, 24

// viewOf builds a cluster's view from the monitor's state. It is pure.
func viewOf(st daemon.State, now time.Time) clusterView {
	ev := st.Evidence
	v := clusterView{Name: st.Cluster, Engine: string(st.Engine), Primary: ev.Primary, Findings: st.Findings,
		Levels: map[string]int{}, Votes: checks.Votes(ev, checks.DefaultPolicy()), Paused: ev.Paused, Backups: ev.Backups, UpdatedAt: st.UpdatedAt,
		Quorum: fmt.Sprintf("%d of %d voters say the primary is lost; %d needed", len(st.Quorum.Lost), st.Quorum.Voters, st.Quorum.Needed),
		Shape:  st.Shape.Summary}
	for _, f := range st.Findings {
		v.Levels[string(f.Severity)]++
	}
	if s := ev.Stream; s != nil {
		v.Stream = fmt.Sprintf("connected to %s, last message %s ago", s.Primary, now.Sub(s.LastMessage).Round(time.Millisecond))
		if !s.Connected {
			v.Stream = "not connected: " + s.Error
		}
	}
	for _, in := range ev.Snapshot.Instances {
		n := nodeOf(in)
		if in.Addr == ev.Primary {
			v.Nodes = append([]nodeView{n}, v.Nodes...)
		} else {
			v.Replicas = append(v.Replicas, n)
			v.Nodes = append(v.Nodes, n)
		}
	}
	v.State = stateOf(st, v)
	v.Tree = layout(v)
	return v
}

func nodeOf(in topology.Instance) nodeView {
	n := nodeView{Addr: in.Addr, Role: string(in.Role), Reachable: in.Reachable, ReadOnly: in.ReadOnly, Error: in.Error, Position: in.Current.String()}
	if in.Lag != nil {
		switch {
		case in.Lag.Seconds == nil:
			n.Lag = "unknown"
		default:
			n.Lag = fmt.Sprintf("%gs", *in.Lag.Seconds)
		}
		if in.Lag.Transactions > 0 {
			n.Lag += fmt.Sprintf(", %d trx", in.Lag.Transactions)
		}
		if in.Lag.Bytes > 0 {
			n.Lag += fmt.Sprintf(", %d bytes", in.Lag.Bytes)
		}
	}
	if r := in.Replication; r != nil {
		n.Replication = fmt.Sprintf("from %s: io %s, sql %s", r.Source, r.IOState, r.SQLState)
	}
	if !in.Reachable {
		n.Role = "unreachable"
	}
	return n
}

// stateOf: failing over while the primary is lost, paused when an
// operator paused it, degraded with any warning or critical finding.
func stateOf(st daemon.State, v clusterView) string {
	switch {
	case st.Cycles == 0:
		return "unknown"
	case slices.ContainsFunc(st.Findings, func(f checks.Finding) bool { return f.Action == checks.Recover }) && v.Paused == nil:
		return "failing over"
	case v.Paused != nil:
		return "paused"
	case v.Levels[string(checks.Critical)]+v.Levels[string(checks.Warning)] > 0:
		return "degraded"
	}
	return "healthy"
}

func layout(v clusterView) tree {
	t := tree{Width: max(1, len(v.Replicas))*(boxW+gap) + gap, Height: 2*boxH + 3*gap}
	if len(v.Nodes) == 0 {
		return t
	}
	primary := box{X: (t.Width - boxW) / 2, Y: gap, W: boxW, H: boxH, Node: v.Nodes[0], Class: classOf(v.Nodes[0], v.Primary)}
	t.Boxes = append(t.Boxes, primary)
	for i, r := range v.Replicas {
		b := box{X: gap + i*(boxW+gap), Y: boxH + 2*gap, W: boxW, H: boxH, Node: r, Class: classOf(r, v.Primary)}
		t.Boxes = append(t.Boxes, b)
		if r.Replication != "" {
			t.Lines = append(t.Lines, line{X1: primary.X + boxW/2, Y1: primary.Y + boxH, X2: b.X + boxW/2, Y2: b.Y})
		}
	}
	return t
}

func classOf(n nodeView, primary string) string {
	switch {
	case !n.Reachable:
		return "down"
	case n.Addr == primary:
		return "primary"
	}
	return "replica"
}
