package backup

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dbha/dbha/topology"
)

// ErrNoSource means no instance may serve a backup now.
var ErrNoSource = errors.New("no instance can serve a backup")

// ErrUnsupportedEngine is a backup asked of a MySQL (not MariaDB) cluster.
var ErrUnsupportedEngine = errors.New("backups of MySQL (not MariaDB) are not implemented: dbha takes them with mariadb-backup, which must not run against a MySQL server")

// SourcePolicy says where backups may come from.
type SourcePolicy struct {
	// AllowPrimary lets the primary serve when no replica can. A primary is
	// always used when it is the cluster's only instance.
	AllowPrimary bool
	// From forces one instance (dbha backup run --from); it must still be
	// reachable and free of errant transactions.
	From string
}

// Source is the chosen instance and why.
type Source struct {
	Addr   string `json:"addr"`
	Reason string `json:"reason"`
}

// ChooseSource picks the instance a backup is taken from: a healthy
// replica of the current primary (both replication threads running) with
// the least lag, never one with errant transactions, whose backup would
// carry them into every restore; the primary only when allowed, or when it
// is the only instance. It refuses a MySQL cluster (ErrUnsupportedEngine).
// It is pure.
func ChooseSource(s topology.Snapshot, p SourcePolicy) (Source, error) {
	if s.Engine == topology.MySQL {
		return Source{}, fmt.Errorf("cluster %s: %w", s.Cluster, ErrUnsupportedEngine)
	}
	if p.From != "" {
		return forced(s, p.From)
	}
	var best *topology.Instance
	for i, in := range s.Instances {
		if !fitReplica(s, in) {
			continue
		}
		if best == nil || lagOf(in) < lagOf(*best) {
			best = &s.Instances[i]
		}
	}
	if best != nil {
		return Source{Addr: best.Addr, Reason: fmt.Sprintf("healthy replica of %s with the least lag (%s)", s.Primary, describeLag(*best))}, nil
	}
	primary, ok := s.Instance(s.Primary)
	switch {
	case !ok || !primary.Reachable:
		return Source{}, fmt.Errorf("cluster %s: %w: no healthy replica, and no reachable primary", s.Cluster, ErrNoSource)
	case len(s.Instances) == 1:
		return Source{Addr: primary.Addr, Reason: "the cluster's only instance"}, nil
	case p.AllowPrimary:
		return Source{Addr: primary.Addr, Reason: "no healthy replica; backups from the primary are allowed"}, nil
	}
	return Source{}, fmt.Errorf("cluster %s: %w: no healthy replica, and backups from the primary are not allowed", s.Cluster, ErrNoSource)
}

func forced(s topology.Snapshot, addr string) (Source, error) {
	in, ok := s.Instance(addr)
	switch {
	case !ok:
		return Source{}, fmt.Errorf("%w: %s is not an instance of cluster %s", ErrNoSource, addr, s.Cluster)
	case !in.Reachable:
		return Source{}, fmt.Errorf("%w: %s cannot be reached: %s", ErrNoSource, addr, in.Error)
	case in.Errant.String() != "":
		return Source{}, fmt.Errorf("%w: %s holds errant transactions %s, which every restore would carry", ErrNoSource, addr, in.Errant)
	}
	return Source{Addr: addr, Reason: "asked for with --from"}, nil
}

// fitReplica: a reachable replica of the primary, replicating, with
// nothing errant.
func fitReplica(s topology.Snapshot, in topology.Instance) bool {
	r := in.Replication
	return in.Reachable && in.Role == topology.RoleReplica && r != nil && r.Source == s.Primary &&
		r.IORunning && r.SQLRunning && in.Errant.String() == "" &&
		!slices.ContainsFunc(s.Problems, func(p topology.Problem) bool {
			return p.Instance == in.Addr && p.Code == topology.TimelineForked
		})
}

// lagOf orders replicas: seconds first, then transactions or bytes; an
// unknown lag sorts last.
func lagOf(in topology.Instance) float64 {
	if in.Lag == nil || in.Lag.Seconds == nil {
		return 1e18
	}
	return *in.Lag.Seconds*1e12 + float64(in.Lag.Transactions+in.Lag.Bytes)
}

func describeLag(in topology.Instance) string {
	if in.Lag == nil || in.Lag.Seconds == nil {
		return "lag unknown"
	}
	return fmt.Sprintf("%.0fs, %d trx, %d bytes behind", *in.Lag.Seconds, in.Lag.Transactions, in.Lag.Bytes)
}
