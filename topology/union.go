package topology

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// ErrDiverged means two positions cannot be joined: each holds something
// the other's history contradicts.
var ErrDiverged = errors.New("positions have diverged")

// Union returns the smallest position that holds everything a and b hold,
// when one history can hold both: promotion uses it for "everything anyone
// has". MariaDB joins domain by domain (the further of the two in each; a
// domain where they diverged is an error); MySQL GTID sets join as sets;
// PostgreSQL takes the further position, which must be on the same history.
// A zero position is the identity.
func Union(a, b Position) (Position, error) {
	switch {
	case a.IsZero():
		return b, nil
	case b.IsZero():
		return a, nil
	case a.engine != b.engine:
		return Position{}, fmt.Errorf("join %s position with %s position: %w", a.engine, b.engine, ErrEngineMismatch)
	}
	switch a.engine {
	case MariaDB:
		return unionMariaDB(a, b)
	case MySQL:
		out := a.set.Clone().(*mysql.MysqlGTIDSet)
		if s := b.set.String(); s != "" {
			if err := out.Update(s); err != nil {
				return Position{}, fmt.Errorf("join %s with %s: %w", a, b, err)
			}
		}
		return Position{engine: MySQL, set: out}, nil
	}
	o, err := Compare(a, b)
	if err != nil {
		return Position{}, err
	}
	switch o {
	case Ahead, Equal:
		return a, nil
	case Behind:
		return b, nil
	}
	return Position{}, fmt.Errorf("join %s with %s: %w", a, b, ErrDiverged)
}

func unionMariaDB(a, b Position) (Position, error) {
	da, db := byDomain(a.gtids), byDomain(b.gtids)
	out := Position{engine: MariaDB}
	domains := slices.Sorted(maps.Keys(da))
	for d := range db {
		if _, ok := da[d]; !ok {
			domains = append(domains, d)
		}
	}
	slices.Sort(domains)
	for _, d := range domains {
		x, inA := da[d]
		y, inB := db[d]
		switch {
		case !inB:
			out.gtids = append(out.gtids, x...)
		case !inA:
			out.gtids = append(out.gtids, y...)
		default:
			switch compareMariaDomain(x, y) {
			case Ahead, Equal:
				out.gtids = append(out.gtids, x...)
			case Behind:
				out.gtids = append(out.gtids, y...)
			default:
				return Position{}, fmt.Errorf("join %s with %s in domain %d: %w", a, b, d, ErrDiverged)
			}
		}
	}
	return out, nil
}

// LocalErrant finds the transactions an instance wrote itself (its own
// server_id) that no reference holds: writes made straight on a replica.
// It is how errant transactions are told apart when the primary cannot be
// asked (a failover): a transaction only one replica holds is legitimate
// when it came from a primary, errant when the replica wrote it. References
// should be in gtid_binlog_state form. MariaDB only; other engines return
// the zero Position.
func LocalErrant(history Position, serverID uint32, references ...Position) Position {
	if history.engine != MariaDB {
		return Position{}
	}
	var out []mariaGTID
	for _, g := range history.gtids {
		if g.server != serverID {
			continue
		}
		covered := false
		for _, ref := range references {
			if ref.engine == MariaDB && len(mariaErrant([]mariaGTID{g}, ref.gtids)) == 0 {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, g)
		}
	}
	return Position{engine: MariaDB, gtids: out}
}
