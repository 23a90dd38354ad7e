package topology

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Build turns what the probes saw into a Snapshot: it works out roles, the
// primary, each replica's lag and errant transactions, and lists every
// problem. It is pure: no I/O, no clock (takenAt is given).
func Build(cluster string, engine Engine, probed []Instance, takenAt time.Time) Snapshot {
	s := Snapshot{Cluster: cluster, Engine: engine, TakenAt: takenAt, Problems: []Problem{}}
	s.Instances = slices.Clone(probed)
	b := builder{s: &s}
	b.matchSources()
	b.assignRoles()
	b.choosePrimary()
	b.checkReplicas()
	return s
}

type builder struct {
	s *Snapshot
}

func (b *builder) problem(code ProblemCode, addr, format string, args ...any) {
	b.s.Problems = append(b.s.Problems, Problem{Code: code, Instance: addr, Message: fmt.Sprintf(format, args...)})
}

// matchSources rewrites each replica's reported source to the configured
// address it designates, so that the tree is drawn in configured names.
// A source that is no instance of the cluster is kept as reported.
func (b *builder) matchSources() {
	byCanon := map[string]string{}
	for _, in := range b.s.Instances {
		byCanon[canonicalAddr(in.Addr)] = in.Addr
	}
	for i := range b.s.Instances {
		r := b.s.Instances[i].Replication
		if r == nil {
			continue
		}
		if addr, ok := byCanon[canonicalAddr(r.Source)]; ok {
			r.Source = addr
		}
	}
}

// canonicalAddr folds the spellings of one loopback or host name together.
func canonicalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.ToLower(addr)
	}
	host = strings.ToLower(host)
	if host == "localhost" || host == "::1" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// assignRoles: a reachable instance that follows a source is a replica, one
// that follows none is a primary candidate; unreachable ones stay unknown
// until choosePrimary learns more from their replicas.
func (b *builder) assignRoles() {
	for i := range b.s.Instances {
		in := &b.s.Instances[i]
		switch {
		case !in.Reachable:
			in.Role = RoleUnknown
			code := in.ErrorCode
			if code == "" {
				code = InstanceUnreachable
			}
			b.problem(code, in.Addr, "%s", in.Error)
		case in.Replication != nil:
			in.Role = RoleReplica
		default:
			in.Role = RolePrimary
		}
	}
}

// choosePrimary picks the one writable instance that follows nobody. When
// there are several, or none, it says so; when none is reachable it trusts
// the replicas: the instance they follow is the primary, unreachable.
func (b *builder) choosePrimary() {
	var writable, readOnly []string
	for _, in := range b.s.Instances {
		if in.Role != RolePrimary {
			continue
		}
		if in.ReadOnly {
			readOnly = append(readOnly, in.Addr)
		} else {
			writable = append(writable, in.Addr)
		}
	}
	switch {
	case len(writable) == 1:
		b.s.Primary = writable[0]
	case len(writable) > 1:
		b.problem(TwoWritablePrimaries, "", "%d instances are writable and follow no source: %s; clients may be writing to both",
			len(writable), strings.Join(writable, ", "))
		b.s.Primary = b.mostFollowed(writable)
	case len(readOnly) > 0:
		b.s.Primary = b.mostFollowed(readOnly)
		if b.s.Primary == "" && len(readOnly) == 1 {
			b.s.Primary = readOnly[0]
		}
		b.problem(NoWritablePrimary, b.s.Primary, "no instance that follows no source is writable (read_only: %s)", strings.Join(readOnly, ", "))
	default:
		b.primaryFromReplicas()
	}
	// Instances that stand as primary but are not the primary are extra roots.
	for i := range b.s.Instances {
		in := &b.s.Instances[i]
		if in.Role == RolePrimary && in.Addr != b.s.Primary && b.s.Primary != "" && len(writable) <= 1 {
			b.problem(InstanceDetached, in.Addr, "follows no source but is not the primary %s: it is not replicating", b.s.Primary)
		}
	}
}

// mostFollowed returns the candidate that most reachable replicas follow,
// or "" when there is no single such candidate.
func (b *builder) mostFollowed(candidates []string) string {
	best, bestN, tie := "", 0, false
	for _, c := range candidates {
		n := len(b.s.Replicas(c))
		switch {
		case n > bestN:
			best, bestN, tie = c, n, false
		case n == bestN:
			tie = true
		}
	}
	if tie || bestN == 0 {
		return ""
	}
	return best
}

func (b *builder) primaryFromReplicas() {
	var unreachable []string
	for _, in := range b.s.Instances {
		if !in.Reachable {
			unreachable = append(unreachable, in.Addr)
		}
	}
	p := b.mostFollowed(unreachable)
	if p == "" {
		b.problem(NoPrimary, "", "no reachable instance acts as primary and the replicas do not agree on one")
		return
	}
	b.s.Primary = p
	for i := range b.s.Instances {
		if b.s.Instances[i].Addr == p {
			b.s.Instances[i].Role = RolePrimary
		}
	}
	b.problem(PrimaryUnreachable, p, "the primary (followed by %s) cannot be reached", strings.Join(b.s.Replicas(p), ", "))
}

// checkReplicas reports broken links and fills in lag and errant
// transactions against the primary.
func (b *builder) checkReplicas() {
	primary, hasPrimary := b.s.Instance(b.s.Primary)
	comparable := hasPrimary && primary.Reachable
	inCluster := map[string]bool{}
	for _, in := range b.s.Instances {
		inCluster[in.Addr] = true
	}
	tree := b.s.Followers(b.s.Primary)
	for i := range b.s.Instances {
		in := &b.s.Instances[i]
		if in.Role != RoleReplica {
			continue
		}
		r := in.Replication
		switch {
		case r.Source != "" && !inCluster[r.Source]:
			b.problem(SourceOutsideCluster, in.Addr, "replicates from %s, which is not an instance of cluster %s", r.Source, b.s.Cluster)
		case hasPrimary && primary.Reachable && !primary.ReadOnly && !tree[in.Addr]:
			// A replica a failover could not repoint (it was cut off with the
			// old primary) still follows the old primary, or another stray.
			b.problem(InstanceDetached, in.Addr, "replicates from %s, which is not the primary %s and does not follow it", r.Source, b.s.Primary)
		}
		if !in.ReadOnly {
			b.problem(ReplicaWritable, in.Addr, "replica is writable (read_only is off): a write here becomes an errant transaction")
		}
		if msg := stoppedReason(r); msg != "" {
			b.problem(ReplicationStopped, in.Addr, "%s", msg)
		}
		if comparable {
			b.compareWithPrimary(in, primary)
		}
	}
}

// stoppedReason describes a replication link that is not fully running, or
// returns "" when it is.
func stoppedReason(r *Replication) string {
	var parts []string
	if !r.IORunning {
		p := fmt.Sprintf("receiving from %s is %s", r.Source, orUnknown(r.IOState))
		if r.IOError != "" {
			p += ": " + r.IOError
		}
		parts = append(parts, p)
	}
	if !r.SQLRunning {
		p := fmt.Sprintf("applying is %s", orUnknown(r.SQLState))
		if r.SQLError != "" {
			p += ": " + r.SQLError
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func orUnknown(s string) string {
	if s == "" {
		return "not running"
	}
	return s
}

func (b *builder) compareWithPrimary(in *Instance, primary Instance) {
	lag := &Lag{}
	if in.Replication != nil {
		lag.Seconds = in.Replication.SecondsBehind
	}
	if !in.Current.IsZero() && !primary.Current.IsZero() {
		lag.Transactions = TransactionsBehind(in.Current, primary.Current)
	}
	if !in.Applied.IsZero() && !primary.Current.IsZero() {
		lag.Bytes = BytesBehind(in.Applied, primary.Current)
	}
	if b.s.Engine == Postgres && lag.Bytes == 0 {
		// A standby that replayed all the primary has is not behind, however
		// old its last replayed transaction (an idle primary sends none).
		zero := 0.0
		lag.Seconds = &zero
	}
	in.Lag = lag

	switch b.s.Engine {
	case Postgres:
		b.checkTimeline(in, primary)
	default:
		b.checkErrant(in, primary)
	}
}

// checkErrant finds transactions the replica has and the primary does not.
// MariaDB compares full binlog histories when both have them, because the
// current position alone cannot tell a local write from a later transaction.
func (b *builder) checkErrant(in *Instance, primary Instance) {
	mine, theirs := in.History, primary.History
	if mine.IsZero() || theirs.IsZero() {
		mine, theirs = in.Current, primary.Current
	}
	if mine.IsZero() || theirs.IsZero() {
		return
	}
	errant := Errant(mine, theirs)
	in.Errant = errant
	if errant.String() != "" {
		b.problem(ErrantTransactions, in.Addr, "has transactions the primary %s does not: %s", primary.Addr, errant)
	}
}

// checkTimeline reports a standby whose WAL has forked from the primary's.
func (b *builder) checkTimeline(in *Instance, primary Instance) {
	pos := in.Received
	if pos.IsZero() {
		pos = in.Applied
	}
	if pos.IsZero() || primary.Current.IsZero() {
		return
	}
	if o, err := Compare(pos, primary.Current); err == nil && o == Diverged {
		b.problem(TimelineForked, in.Addr, "WAL at %s has forked from the primary's %s: the standby needs pg_rewind or a new base backup", pos, primary.Current)
	}
}

// Followers is root and every instance whose chain of sources leads to
// it: the tree of a primary.
func (s Snapshot) Followers(root string) map[string]bool {
	tree := map[string]bool{root: true}
	for grew := root != ""; grew; {
		grew = false
		for _, in := range s.Instances {
			if in.Replication != nil && !tree[in.Addr] && tree[in.Replication.Source] {
				tree[in.Addr], grew = true, true
			}
		}
	}
	return tree
}
