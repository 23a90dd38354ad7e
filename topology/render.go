package topology

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints a snapshot as a tree an operator reads at a glance: the
// primary at the root, each replica under the instance it follows, then any
// instance outside the tree, then the problems.
func WriteText(w io.Writer, s Snapshot) error {
	var b strings.Builder
	status := "healthy"
	if n := len(s.Problems); n > 0 {
		status = fmt.Sprintf("%d problem%s", n, plural(n))
	}
	primary := s.Primary
	if primary == "" {
		primary = "none"
	}
	fmt.Fprintf(&b, "%s (%s)  primary %s  %s\n", s.Cluster, s.Engine, primary, status)

	shown := map[string]bool{}
	if s.Primary != "" {
		writeSubtree(&b, s, s.Primary, "", "", shown)
	}
	for _, in := range s.Instances { // other roots: detached, or following a host outside the cluster
		if !shown[in.Addr] && isRoot(s, in) {
			writeSubtree(&b, s, in.Addr, "", "", shown)
		}
	}
	for _, in := range s.Instances { // whatever is left: replication cycles
		if !shown[in.Addr] {
			writeSubtree(&b, s, in.Addr, "", "", shown)
		}
	}
	if len(s.Problems) > 0 {
		b.WriteString("problems:\n")
		for _, p := range s.Problems {
			where := ""
			if p.Instance != "" {
				where = " " + p.Instance
			}
			fmt.Fprintf(&b, "  %s%s: %s\n", p.Code, where, p.Message)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func isRoot(s Snapshot, in Instance) bool {
	if in.Replication == nil {
		return true
	}
	_, inCluster := s.Instance(in.Replication.Source)
	return !inCluster
}

func writeSubtree(b *strings.Builder, s Snapshot, addr, prefix, branch string, shown map[string]bool) {
	if shown[addr] {
		return
	}
	shown[addr] = true
	in, ok := s.Instance(addr)
	if !ok {
		in = Instance{Addr: addr, Role: RoleUnknown, Error: "not an instance of this cluster"}
	}
	fmt.Fprintf(b, "  %s%s%s\n", prefix, branch, describeInstance(in))
	children := s.Replicas(addr)
	childPrefix := prefix
	switch branch {
	case "├─ ":
		childPrefix += "│  "
	case "└─ ":
		childPrefix += "   "
	}
	for i, c := range children {
		br := "├─ "
		if i == len(children)-1 {
			br = "└─ "
		}
		writeSubtree(b, s, c, childPrefix, br, shown)
	}
}

func describeInstance(in Instance) string {
	if !in.Reachable {
		return fmt.Sprintf("%s  %s  UNREACHABLE  %s", in.Addr, in.Role, in.Error)
	}
	mode := "rw"
	if in.ReadOnly {
		mode = "ro"
	}
	parts := []string{in.Addr, string(in.Role), mode, shortVersion(in.Version)}
	r := in.Replication
	if r == nil {
		parts = append(parts, "at "+in.Current.String())
		return strings.Join(parts, "  ")
	}
	parts = append(parts,
		fmt.Sprintf("received %s", orDash(in.Received.String())),
		fmt.Sprintf("applied %s", orDash(in.Applied.String())),
		fmt.Sprintf("io %s  sql %s", orDash(r.IOState), orDash(r.SQLState)))
	if in.Lag != nil {
		parts = append(parts, "lag "+describeLag(*in.Lag, in.Current.Engine()))
	}
	if e := in.Errant.String(); e != "" {
		parts = append(parts, "ERRANT "+e)
	}
	return strings.Join(parts, "  ")
}

func describeLag(l Lag, e Engine) string {
	sec := "?s"
	if l.Seconds != nil {
		sec = fmt.Sprintf("%.0fs", *l.Seconds)
	}
	if e == Postgres {
		return fmt.Sprintf("%s %d bytes", sec, l.Bytes)
	}
	return fmt.Sprintf("%s %d trx", sec, l.Transactions)
}

// shortVersion trims a distribution suffix: "10.11.19-MariaDB-0+deb12u1"
// reads as "10.11.19-MariaDB"; PostgreSQL's "15.18 (Debian ...)" as "15.18".
func shortVersion(v string) string {
	v, _, _ = strings.Cut(v, " ")
	if i := strings.Index(v, "-MariaDB"); i >= 0 {
		return v[:i+len("-MariaDB")]
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
