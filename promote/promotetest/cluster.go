package promotetest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// Node is one simulated MariaDB instance of a Cluster.
type Node struct {
	Up       bool
	ReadOnly bool
	Source   string // "" for a primary or a detached instance
	Halted   bool   // told to receive nothing more from Source
	Seq      uint64 // the GTID 0-1-Seq it has executed (written by the first primary)
	ServerID uint32 // its own server_id: 1 for the first primary, then 2, 3...
	// Tail is a GTID list of its own writes nobody else received (the
	// unreplicated tail of a crashed primary), e.g. "0-7-11,0-7-12"; Rewind
	// saves and undoes it, unless RefuseRewind says why it cannot.
	Tail         string
	RefuseRewind string
}

// Cluster is a simulated MariaDB cluster that is at once a topology.Prober
// (what dbha sees) and a promote.Engine (what dbha changes): the engine's
// calls change what the next probe sees. Every instance listens on a real
// loopback port while it is up, so dbha's TCP probe path sees a dead
// instance refuse connections. It stands in for dbha's own interfaces in
// unit tests of the recovery path; it imitates no server's SQL.
type Cluster struct {
	mu        sync.Mutex
	nodes     map[string]*Node
	listeners map[string]net.Listener
	calls     []string
}

// NewCluster starts n instances on loopback ports: the first is the
// writable primary, the others replicate from it, all at Seq 10, which
// the first primary (server_id 1) wrote. Close stops them.
func NewCluster(n int) (*Cluster, []string, error) {
	c := &Cluster{nodes: map[string]*Node{}, listeners: map[string]net.Listener{}}
	var addrs []string
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		go accept(l)
		addr := l.Addr().String()
		addrs = append(addrs, addr)
		c.listeners[addr] = l
		node := &Node{Up: true, ReadOnly: i > 0, Seq: 10, ServerID: uint32(i + 1)}
		if i > 0 {
			node.Source = addrs[0]
		}
		c.nodes[addr] = node
	}
	return c, addrs, nil
}

func accept(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		conn.Close()
	}
}

// Close stops every instance's listener.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.listeners {
		l.Close()
	}
}

// Kill makes addr vanish: its probes fail and its port refuses
// connections.
func (c *Cluster) Kill(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[addr].Up = false
	c.listeners[addr].Close()
}

// Start brings addr back as it was when it died, writable or not as given,
// following nobody (a restarted MariaDB forgets nothing, but a former
// primary has no source).
func (c *Cluster) Start(addr string, readOnly bool) error {
	return c.start(addr, func(n *Node) { n.ReadOnly = readOnly })
}

// StartReplica brings addr back read-only and replicating from source, as
// an instance restarted with its replication settings (or rejoined by an
// operator) comes back.
func (c *Cluster) StartReplica(addr, source string) error {
	return c.start(addr, func(n *Node) { n.ReadOnly, n.Source, n.Halted = true, source, false })
}

func (c *Cluster) start(addr string, set func(n *Node)) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go accept(l)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners[addr] = l
	n := c.nodes[addr]
	n.Up = true
	set(n)
	return nil
}

// Node returns a copy of addr's state.
func (c *Cluster) Node(addr string) Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.nodes[addr]
}

// Calls returns the engine calls so far, as "action addr [args]".
func (c *Cluster) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func gtid(seq uint64) topology.Position {
	p, err := topology.ParseMariaDB(fmt.Sprintf("0-1-%d", seq))
	if err != nil {
		panic(err)
	}
	return p
}

// held is what n has executed: its GTID and its tail.
func held(n *Node) topology.Position {
	if n.Tail == "" {
		return gtid(n.Seq)
	}
	p, err := topology.ParseMariaDB(fmt.Sprintf("0-1-%d,%s", n.Seq, n.Tail))
	if err != nil {
		panic(err)
	}
	return p
}

// SetTail gives addr a tail of writes nobody else received, and the
// reason a rewind of it is refused ("" to allow it).
func (c *Cluster) SetTail(addr, tail, refuse string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[addr].Tail, c.nodes[addr].RefuseRewind = tail, refuse
}

// Probe is topology.Prober.
func (c *Cluster) Probe(_ context.Context, addr string) topology.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[addr]
	if n == nil || !n.Up {
		return topology.Instance{Addr: addr, Error: "dial tcp " + addr + ": connect: connection refused", ErrorCode: topology.InstanceUnreachable}
	}
	pos := held(n)
	in := topology.Instance{Addr: addr, Reachable: true, ReadOnly: n.ReadOnly, ServerID: n.ServerID,
		Current: pos, Applied: pos, Received: pos, History: pos}
	if n.Source != "" {
		r := &topology.Replication{Source: n.Source, SQLRunning: true, SQLState: "Yes", Halted: n.Halted}
		src := c.nodes[n.Source]
		switch {
		case n.Halted:
			r.IOState = "No"
		case src != nil && src.Up:
			var caughtUp float64
			r.IORunning, r.IOState, r.SecondsBehind = true, "Yes", &caughtUp
		default:
			r.IOState, r.IOError = "Connecting", "error reconnecting to master '"+n.Source+"'"
		}
		in.Replication = r
	}
	return in
}

func (c *Cluster) change(call string, addr string, fn func(n *Node) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, strings.TrimSpace(call+" "+addr))
	n := c.nodes[addr]
	if n == nil || !n.Up {
		return fmt.Errorf("%s %s: connection refused", call, addr)
	}
	return fn(n)
}

func (c *Cluster) StopFollowing(_ context.Context, addr string) error {
	return c.change("stop", addr, func(n *Node) error { n.Halted = true; return nil })
}

func (c *Cluster) WaitApplied(_ context.Context, addr string, pos topology.Position) error {
	return c.change("wait", addr, func(n *Node) error {
		if o, err := topology.Compare(gtid(n.Seq), pos); err != nil || o == topology.Behind {
			return fmt.Errorf("%s has not applied %s", addr, pos)
		}
		return nil
	})
}

func (c *Cluster) CatchUpFrom(_ context.Context, addr, source string, upto topology.Position) error {
	return c.change("catchup", addr, func(n *Node) error { n.Seq = max(n.Seq, c.nodes[source].Seq); return nil })
}

func (c *Cluster) ApplyFromStream(_ context.Context, addr string, upto topology.Position) error {
	return c.change("stream", addr, func(*Node) error { return nil })
}

func (c *Cluster) Promote(_ context.Context, addr string) error {
	return c.change("promote", addr, func(n *Node) error {
		n.Source, n.Halted, n.ReadOnly = "", false, false
		return nil
	})
}

func (c *Cluster) Repoint(_ context.Context, addr, source string) error {
	return c.change("repoint", addr, func(n *Node) error { n.Source, n.Halted = source, false; return nil })
}

func (c *Cluster) Rejoin(_ context.Context, addr, primary string) error {
	return c.change("rejoin", addr, func(n *Node) error { n.Source, n.Halted = primary, false; return nil })
}

// Rewind is promote.Rewinder: the tail is "saved" (named in the result)
// and undone, and addr follows primary; a refusal wraps
// promote.ErrCannotRewind and changes nothing.
func (c *Cluster) Rewind(_ context.Context, addr, primary, saveDir string) (topology.Rewound, error) {
	var r topology.Rewound
	err := c.change("rewind", addr, func(n *Node) error {
		if n.RefuseRewind != "" {
			return fmt.Errorf("%w: %s", promote.ErrCannotRewind, n.RefuseRewind)
		}
		undone, err := topology.ParseMariaDB(n.Tail)
		if err != nil {
			return err
		}
		r = topology.Rewound{File: saveDir + "/rewind-" + addr + ".bin", Tail: undone, Undone: true, Transactions: len(strings.Split(n.Tail, ","))}
		n.Tail, n.Source, n.Halted = "", primary, false
		return nil
	})
	return r, err
}

// Reseed stands for rebuilding addr from a backup: its tail is gone and it
// follows primary.
func (c *Cluster) Reseed(_ context.Context, addr, primary string) error {
	return c.change("reseed", addr, func(n *Node) error {
		n.Tail, n.RefuseRewind, n.Source, n.Halted, n.ReadOnly = "", "", primary, false, true
		return nil
	})
}

func (c *Cluster) Fence(_ context.Context, addr string) error {
	return c.change("fence", addr, func(n *Node) error { n.ReadOnly = true; return nil })
}

func (c *Cluster) Unfence(_ context.Context, addr string) error {
	return c.change("unfence", addr, func(n *Node) error { n.ReadOnly = false; return nil })
}

func (c *Cluster) Position(_ context.Context, addr string) (topology.Position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[addr]
	if n == nil || !n.Up {
		return topology.Position{}, fmt.Errorf("%s: connection refused", addr)
	}
	return held(n), nil
}
