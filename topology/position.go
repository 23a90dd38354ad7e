package topology

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Engine names a database engine dbha manages.
type Engine string

const (
	MariaDB  Engine = "mariadb"
	MySQL    Engine = "mysql"
	Postgres Engine = "postgres"
)

// Errors Compare returns; callers branch on them with errors.Is.
var (
	// ErrUnknownPosition: a position is the zero value, so nothing can be
	// said about its order (an instance that was not probed, or did not say).
	ErrUnknownPosition = errors.New("position unknown")
	// ErrEngineMismatch: the positions belong to different engines.
	ErrEngineMismatch = errors.New("positions of different engines")
)

// Order answers how position a relates to position b.
type Order int

const (
	Behind   Order = iota + 1 // a lacks transactions that b has, and has nothing b lacks
	Equal                     // a and b hold the same transactions
	Ahead                     // a has transactions that b lacks, and lacks nothing b has
	Diverged                  // each has something the other lacks (errant transactions, forked timeline)
)

func (o Order) String() string {
	switch o {
	case Behind:
		return "behind"
	case Equal:
		return "equal"
	case Ahead:
		return "ahead"
	case Diverged:
		return "diverged"
	}
	return fmt.Sprintf("Order(%d)", int(o))
}

// Position is a replication position of one engine. The zero value is
// "unknown" (IsZero true), which is not the same as a known empty position
// (a server that has executed no GTIDs). Positions are immutable values:
// copies may share their internals, and nothing modifies them after
// construction.
type Position struct {
	engine Engine
	// gtids (MariaDB) is sorted by domain, then server, with at most one
	// entry per (domain, server): the last seq_no seen from that server.
	gtids []mariaGTID
	// set (MySQL) is normalized, as go-mysql's parser leaves it; never nil
	// for a MySQL position.
	set *mysql.MysqlGTIDSet
	// lsn, timeline and history (PostgreSQL): history is the timeline
	// history of the instance that reported the position.
	lsn      LSN
	timeline uint32
	history  []TimelineSwitch
}

// Engine returns the engine of p; "" for the zero Position.
func (p Position) Engine() Engine { return p.engine }

// IsZero reports whether p is the unknown position.
func (p Position) IsZero() bool { return p.engine == "" }

// LSN returns a PostgreSQL position's WAL location; 0 for other engines.
func (p Position) LSN() LSN { return p.lsn }

// Timeline returns a PostgreSQL position's timeline; 0 for other engines.
func (p Position) Timeline() uint32 { return p.timeline }

// String returns p in its engine's canonical text form, which the engine's
// parser reads back: MariaDB "0-1-5,1-2-9" sorted by domain then server,
// MySQL go-mysql's form (sorted by UUID), PostgreSQL "0/3000060 tl1". The
// zero Position and empty GTID positions both print as "".
func (p Position) String() string {
	switch p.engine {
	case MariaDB:
		return mariaString(p.gtids)
	case MySQL:
		return p.set.String()
	case Postgres:
		return fmt.Sprintf("%s tl%d", p.lsn, p.timeline)
	}
	return ""
}

// positionJSON is the wire form of Position. Pointers tell a missing field
// from an empty one: a MariaDB position without "gtid" is malformed, not
// empty.
type positionJSON struct {
	Engine   Engine           `json:"engine"`
	GTID     *string          `json:"gtid,omitempty"`
	LSN      *LSN             `json:"lsn,omitempty"`
	Timeline *uint32          `json:"timeline,omitempty"`
	History  []TimelineSwitch `json:"history,omitempty"`
}

// MarshalJSON writes {"engine":"mariadb","gtid":"0-1-5"} for MariaDB and
// MySQL, {"engine":"postgres","lsn":"0/3000060","timeline":1} for PostgreSQL
// (with "history" when p has one), and null for the zero Position.
func (p Position) MarshalJSON() ([]byte, error) {
	w := positionJSON{Engine: p.engine}
	switch p.engine {
	case "":
		return []byte("null"), nil
	case MariaDB, MySQL:
		s := p.String()
		w.GTID = &s
	case Postgres:
		w.LSN, w.Timeline, w.History = &p.lsn, &p.timeline, p.history
	default:
		return nil, fmt.Errorf("marshal position: unknown engine %q", p.engine)
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes. As encoding/json's convention
// asks, null leaves p unchanged.
func (p *Position) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	var w positionJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("unmarshal position: %w", err)
	}
	var (
		q   Position
		err error
	)
	switch w.Engine {
	case MariaDB, MySQL:
		if w.GTID == nil || w.LSN != nil || w.Timeline != nil || w.History != nil {
			return fmt.Errorf("unmarshal %s position %s: want exactly engine and gtid", w.Engine, b)
		}
		parse := ParseMariaDB
		if w.Engine == MySQL {
			parse = ParseMySQL
		}
		q, err = parse(*w.GTID)
	case Postgres:
		if w.LSN == nil || w.Timeline == nil || w.GTID != nil {
			return fmt.Errorf("unmarshal postgres position %s: want engine, lsn and timeline", b)
		}
		q = PostgresAt(*w.LSN, *w.Timeline).WithHistory(w.History)
	default:
		return fmt.Errorf("unmarshal position %s: unknown engine %q", b, w.Engine)
	}
	if err != nil {
		return fmt.Errorf("unmarshal position: %w", err)
	}
	*p = q
	return nil
}

// Compare answers how a relates to b. It fails with ErrUnknownPosition when
// either is zero and with ErrEngineMismatch when their engines differ. It is
// consistent: Compare(a, a) is Equal, Compare(a, b) is Ahead exactly when
// Compare(b, a) is Behind, and Equal and Diverged are symmetric.
//
// MariaDB compares the last GTID of each domain (see compareMariaDomain);
// MySQL compares GTID sets by inclusion; PostgreSQL compares LSNs along the
// timeline history (see comparePostgres). Errant and TransactionsBehind
// answer "how much" once Compare has answered "which way".
func Compare(a, b Position) (Order, error) {
	if a.IsZero() || b.IsZero() {
		return 0, fmt.Errorf("compare position %q with %q: %w", a, b, ErrUnknownPosition)
	}
	if a.engine != b.engine {
		return 0, fmt.Errorf("compare %s position %q with %s position %q: %w",
			a.engine, a, b.engine, b, ErrEngineMismatch)
	}
	switch a.engine {
	case MariaDB:
		return compareMariaDB(a.gtids, b.gtids), nil
	case MySQL:
		return compareMySQL(a.set, b.set), nil
	case Postgres:
		return comparePostgres(a, b), nil
	}
	return 0, fmt.Errorf("compare positions: unknown engine %q", a.engine)
}

// Errant returns what replica has that primary does not: transactions
// written on the replica itself or kept from a former primary, which must be
// dealt with before the replica can be promoted or repointed safely. The
// result is an empty position of the same engine when there are none.
//
// For MariaDB a replica entry domain-server-seq is covered when primary has
// an entry for the same domain and server with a seq at least as high, so
// primary should be in gtid_binlog_state form (one entry per server): in
// gtid_current_pos form, transactions that came from earlier primaries look
// errant. For MySQL it is the set difference replica − primary.
//
// The zero Position means the question has no answer: PostgreSQL (which has
// no errant transactions, only forked timelines, see Compare), either
// position zero, or different engines.
func Errant(replica, primary Position) Position {
	if replica.IsZero() || replica.engine != primary.engine {
		return Position{}
	}
	switch replica.engine {
	case MariaDB:
		return Position{engine: MariaDB, gtids: mariaErrant(replica.gtids, primary.gtids)}
	case MySQL:
		return Position{engine: MySQL, set: mysqlMinus(replica.set, primary.set)}
	}
	return Position{}
}

// TransactionsBehind counts the transactions replica still has to apply to
// catch up with primary. MariaDB: the sum over domains of how far primary's
// last seq_no is past the replica's (a domain the replica lacks counts from
// 0). MySQL: the number of GTIDs in primary and not in replica. PostgreSQL,
// zero positions and different engines: 0. Sums saturate at MaxInt64.
func TransactionsBehind(replica, primary Position) int64 {
	if replica.IsZero() || replica.engine != primary.engine {
		return 0
	}
	switch replica.engine {
	case MariaDB:
		return mariaBehind(replica.gtids, primary.gtids)
	case MySQL:
		return mysqlCount(mysqlMinus(primary.set, replica.set))
	}
	return 0
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// addSat adds two non-negative counts, saturating at MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// combine folds per-domain (or per-part) orders into one: all equal is
// Equal, ahead somewhere and behind nowhere is Ahead, the mirror is Behind,
// and anything else (including ahead in one domain and behind in another)
// is Diverged.
func combine(ahead, behind, diverged bool) Order {
	switch {
	case diverged || ahead && behind:
		return Diverged
	case ahead:
		return Ahead
	case behind:
		return Behind
	}
	return Equal
}
