package topology

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// mariaGTID is one MariaDB GTID, domain-server-seq.
type mariaGTID struct {
	domain, server uint32
	seq            uint64
}

func (g mariaGTID) String() string { return fmt.Sprintf("%d-%d-%d", g.domain, g.server, g.seq) }

func cmpMariaKey(a, b mariaGTID) int {
	if c := cmp.Compare(a.domain, b.domain); c != 0 {
		return c
	}
	return cmp.Compare(a.server, b.server)
}

// ParseMariaDB reads a MariaDB GTID list as the server prints it:
// "0-1-5,1-2-9", with optional whitespace around entries (servers break long
// lists with newlines). A domain may appear with several servers, as in
// gtid_binlog_state; a (domain, server) pair may appear once. "" is the
// known, empty position of a server that has executed nothing.
func ParseMariaDB(s string) (Position, error) {
	p := Position{engine: MariaDB}
	if strings.TrimSpace(s) == "" {
		return p, nil
	}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return Position{}, fmt.Errorf("parse MariaDB GTID list %q: entry %d is empty", s, i+1)
		}
		g, err := parseMariaGTID(part)
		if err != nil {
			return Position{}, fmt.Errorf("parse MariaDB GTID list %q: %w", s, err)
		}
		p.gtids = append(p.gtids, g)
	}
	slices.SortFunc(p.gtids, cmpMariaKey)
	for i := 1; i < len(p.gtids); i++ {
		if x, y := p.gtids[i-1], p.gtids[i]; cmpMariaKey(x, y) == 0 {
			return Position{}, fmt.Errorf("parse MariaDB GTID list %q: %q and %q repeat domain %d server %d",
				s, x.String(), y.String(), x.domain, x.server)
		}
	}
	return p, nil
}

func parseMariaGTID(s string) (mariaGTID, error) {
	f := strings.Split(s, "-")
	if len(f) != 3 {
		return mariaGTID{}, fmt.Errorf("GTID %q: want domain-server-seq", s)
	}
	d, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return mariaGTID{}, fmt.Errorf("GTID %q: domain: %w", s, err)
	}
	sv, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return mariaGTID{}, fmt.Errorf("GTID %q: server: %w", s, err)
	}
	n, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return mariaGTID{}, fmt.Errorf("GTID %q: seq_no: %w", s, err)
	}
	return mariaGTID{domain: uint32(d), server: uint32(sv), seq: n}, nil
}

func mariaString(gs []mariaGTID) string {
	var b strings.Builder
	for i, g := range gs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g.String())
	}
	return b.String()
}

// BinlogState writes a MariaDB position for SET GLOBAL gtid_binlog_state:
// within each domain the entry with the highest seq_no comes last. The
// server takes the last entry it loads of a domain as that domain's last
// GTID (gtid_binlog_pos): given "0-2-4276,0-3-2499" it would say 0-3-2499,
// and a former primary reset to it would ask its new source for
// everything after 0-3-2499 again.
func (p Position) BinlogState() string {
	gs := slices.Clone(p.gtids)
	slices.SortStableFunc(gs, func(a, b mariaGTID) int {
		return cmp.Or(cmp.Compare(a.domain, b.domain), cmp.Compare(a.seq, b.seq))
	})
	return mariaString(gs)
}

// mariaDomain is one domain's entries of a position, sorted by server.
type mariaDomain []mariaGTID

// byDomain splits a sorted GTID list into its domains.
func byDomain(gs []mariaGTID) map[uint32]mariaDomain {
	m := make(map[uint32]mariaDomain)
	for i := 0; i < len(gs); {
		j := i + 1
		for j < len(gs) && gs[j].domain == gs[i].domain {
			j++
		}
		m[gs[i].domain] = mariaDomain(gs[i:j])
		i = j
	}
	return m
}

// last returns the domain's highest seq_no and the servers that wrote it.
// Within one history seq_no only grows, so several servers sharing the
// highest seq_no already means a fork; keeping them all (rather than
// picking one) keeps Compare symmetric.
func (d mariaDomain) last() (seq uint64, servers []uint32) {
	for _, g := range d {
		switch {
		case g.seq > seq || servers == nil:
			seq, servers = g.seq, []uint32{g.server}
		case g.seq == seq:
			servers = append(servers, g.server)
		}
	}
	return seq, servers
}

// holds reports whether d, whose last seq_no is higher than o's, includes o's
// last transaction. A single entry (gtid_current_pos form) says nothing about
// other servers, so history is taken as linear. Several entries
// (gtid_binlog_state form) list every server d has transactions from, so d
// must have o's last server at o's last seq_no or later.
func (d mariaDomain) holds(o mariaDomain) bool {
	if len(d) < 2 {
		return true
	}
	seq, servers := o.last()
	for _, s := range servers {
		i, ok := slices.BinarySearchFunc(d, s, func(g mariaGTID, s uint32) int { return cmp.Compare(g.server, s) })
		if !ok || d[i].seq < seq {
			return false
		}
	}
	return true
}

// compareMariaDomain orders one domain present in both positions by its last
// GTID: the same GTID is Equal; the same seq_no from different servers is
// Diverged; otherwise the higher seq_no is ahead if it holds the other's last
// transaction (see holds) and Diverged if it does not.
func compareMariaDomain(a, b mariaDomain) Order {
	sa, na := a.last()
	sb, nb := b.last()
	switch {
	case sa == sb && slices.Equal(na, nb):
		return Equal
	case sa > sb && a.holds(b):
		return Ahead
	case sa < sb && b.holds(a):
		return Behind
	}
	return Diverged
}

// compareMariaDB combines the domains: a domain only a has puts a ahead, one
// only b has puts a behind.
func compareMariaDB(a, b []mariaGTID) Order {
	da, db := byDomain(a), byDomain(b)
	var ahead, behind, diverged bool
	for d, x := range da {
		y, ok := db[d]
		if !ok {
			ahead = true
			continue
		}
		switch compareMariaDomain(x, y) {
		case Ahead:
			ahead = true
		case Behind:
			behind = true
		case Diverged:
			diverged = true
		}
	}
	for d := range db {
		if _, ok := da[d]; !ok {
			behind = true
		}
	}
	return combine(ahead, behind, diverged)
}

// mariaErrant returns the entries of r that p does not cover with an entry
// of the same domain and server and a seq_no at least as high.
func mariaErrant(r, p []mariaGTID) []mariaGTID {
	var out []mariaGTID
	for _, g := range r {
		i, ok := slices.BinarySearchFunc(p, g, cmpMariaKey)
		if !ok || p[i].seq < g.seq {
			out = append(out, g)
		}
	}
	return out
}

func mariaBehind(r, p []mariaGTID) int64 {
	dr := byDomain(r)
	var n int64
	for d, x := range byDomain(p) {
		ps, _ := x.last()
		var rs uint64
		if y, ok := dr[d]; ok {
			rs, _ = y.last()
		}
		if ps > rs {
			n = addSat(n, clampInt64(ps-rs))
		}
	}
	return n
}
