package topology

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrCannotRewind means an instance holds transactions the primary lacks
// and they cannot be undone safely (a write of unknown origin, DDL, an
// event that is not a row change, a partial row image, a tail too large):
// it must be reseeded instead. The error that wraps it says why.
var ErrCannotRewind = errors.New("cannot rewind")

// Rewound is what rewinding a former primary did: its extra transactions,
// where they were saved, and whether they were undone.
type Rewound struct {
	// Instance is the former primary.
	Instance string `json:"instance"`
	// File is the saved tail: MariaDB, a binlog file that mariadb-binlog
	// reads, with the transactions' GTIDs; PostgreSQL, a directory of WAL
	// segments that pg_waldump reads, with rewind.json giving the range.
	// "" when nothing was saved.
	File string `json:"file,omitempty"`
	// Tail is what the instance held that the primary lacked: MariaDB, the
	// errant GTIDs (the last per domain and server); PostgreSQL, its
	// position (LSN and timeline) before pg_rewind. Empty when nothing.
	Tail Position `json:"tail"`
	// Bytes is the WAL saved (PostgreSQL).
	Bytes int64 `json:"bytes,omitempty"`
	// From is the last GTID per domain that the instance and the primary
	// both hold: the tail starts after it, and the instance replicates on
	// from it.
	From Position `json:"from"`
	// Transactions and Events count what File holds; Tables what its row
	// events change, by "db.table".
	Transactions int                   `json:"transactions"`
	Events       int                   `json:"events"`
	Tables       map[string]RowChanges `json:"tables,omitempty"`
	// Undone: the tail was undone on the instance, its GTID state set back
	// to From, and it was repointed at the primary.
	Undone bool `json:"undone"`
	// How long each part took: saving the tail, undoing it, and resetting
	// the GTID state and repointing.
	Save   Duration `json:"save"`
	Undo   Duration `json:"undo"`
	Rejoin Duration `json:"rejoin"`
}

// RowChanges counts row events on one table, by kind (an event may change
// several rows).
type RowChanges struct {
	Writes  int `json:"writes,omitempty"`
	Updates int `json:"updates,omitempty"`
	Deletes int `json:"deletes,omitempty"`
}

// Tail is where a MariaDB instance's history leaves the primary's: the
// transactions only the instance holds, and what both hold.
type Tail struct {
	// Errant is Errant(own, primary): empty when the instance holds nothing
	// the primary lacks.
	Errant Position
	// From is the last GTID per domain both hold (gtid_slave_pos form). The
	// tail is every transaction after it in the instance's binlog.
	From Position
	// Kept is the instance's history cut back to From (gtid_binlog_state
	// form): what its gtid_binlog_state is once the tail is gone.
	Kept Position
	// Transactions is the tail's length by seq_no: under gtid_strict_mode
	// the tail is seq_no From+1 .. the errant seq_no of its domain.
	Transactions int64
}

// GTIDs lists the tail's transactions in order: seq_no From+1 up to the
// errant entry's, of the errant entry's server, in its domain.
func (t Tail) GTIDs() []string {
	var out []string
	for _, e := range t.Errant.gtids {
		start := uint64(0)
		for _, f := range t.From.gtids {
			if f.domain == e.domain {
				start = f.seq
			}
		}
		for seq := start + 1; seq <= e.seq; seq++ {
			out = append(out, mariaGTID{domain: e.domain, server: e.server, seq: seq}.String())
		}
	}
	return out
}

// MariaDBTail works out the tail of a MariaDB instance whose history (own,
// gtid_binlog_state) has gone past the primary's (gtid_binlog_state) with
// transactions of a known origin: the unreplicated writes of a former
// primary (origins: its own server_id), or those a replica received from a
// former primary before a partition kept it from being repointed (origins:
// its own and its source's server_id). It refuses, with an error wrapping
// ErrCannotRewind that says why, what a rewind cannot undo safely: an
// errant transaction of any other server_id (a write of unknown origin),
// errant transactions of more than one server or in more than one domain,
// or a domain where the two share no transaction to go back to. With
// nothing errant, the tail is empty and From is own's last GTID per
// domain.
func MariaDBTail(own, primary Position, origins ...uint32) (Tail, error) {
	if own.engine != MariaDB || primary.engine != MariaDB {
		return Tail{}, fmt.Errorf("tail of %s position %q beyond %s position %q: want MariaDB positions", own.engine, own, primary.engine, primary)
	}
	errant := mariaErrant(own.gtids, primary.gtids)
	t := Tail{Errant: Position{engine: MariaDB, gtids: errant}}
	var foreign []string
	domains, servers := map[uint32]bool{}, map[uint32]bool{}
	for _, g := range errant {
		if !slices.Contains(origins, g.server) {
			foreign = append(foreign, g.String())
		}
		domains[g.domain], servers[g.server] = true, true
	}
	if len(foreign) > 0 {
		return t, fmt.Errorf("%w: %s not from server_id %s (this instance, or the source it received from): writes of unknown origin (made on it by hand, or received from a server outside the cluster)",
			ErrCannotRewind, strings.Join(foreign, ","), joinIDs(origins))
	}
	if len(domains) > 1 || len(servers) > 1 {
		return t, fmt.Errorf("%w: errant transactions %s of %d server(s) in %d domain(s): a rewind undoes one server's tail in one domain",
			ErrCannotRewind, t.Errant, len(servers), len(domains))
	}
	var (
		from, kept []mariaGTID
		tailOf     mariaGTID // the errant entry: the tail's last transaction
	)
	if len(errant) == 1 {
		tailOf = errant[0]
	}
	for d, entries := range byDomain(own.gtids) {
		if len(errant) == 0 || d != tailOf.domain {
			last, _ := entries.last()
			from = append(from, lastEntry(entries, last))
			kept = append(kept, entries...)
			continue
		}
		fork, ok := forkOf(entries, primary.gtids, tailOf)
		if !ok {
			return t, fmt.Errorf("%w: in domain %d the primary holds none of this instance's transactions: nothing shared to go back to", ErrCannotRewind, d)
		}
		if fork.seq >= tailOf.seq {
			return t, fmt.Errorf("%w: %s, which the primary lacks, comes before %s, which it holds: the histories differ inside the domain, not only at its end",
				ErrCannotRewind, tailOf, fork)
		}
		from = append(from, fork)
		for _, g := range entries {
			if g != tailOf {
				kept = append(kept, g)
			}
		}
		if i, ok := slices.BinarySearchFunc(primary.gtids, tailOf, cmpMariaKey); ok {
			kept = append(kept, primary.gtids[i]) // the instance's own transactions the primary holds
		}
		t.Transactions = int64(tailOf.seq - fork.seq)
	}
	slices.SortFunc(from, cmpMariaKey)
	slices.SortFunc(kept, cmpMariaKey)
	t.From = Position{engine: MariaDB, gtids: from}
	t.Kept = Position{engine: MariaDB, gtids: kept}
	return t, nil
}

// lastEntry is the entry of a domain with seq_no seq.
func lastEntry(d mariaDomain, seq uint64) mariaGTID {
	for _, g := range d {
		if g.seq == seq {
			return g
		}
	}
	return mariaGTID{}
}

// forkOf finds the last transaction of a domain that both histories hold,
// given the instance's entries in it and its errant entry tail. Under
// gtid_strict_mode a domain's history is one line, and after the fork only
// the instance's own server wrote (an errant entry of another server is
// refused before): so the fork is the highest of the instance's entries the
// primary covers and the primary's entry for the instance's own server
// (its transactions that did replicate).
func forkOf(own mariaDomain, primary []mariaGTID, tail mariaGTID) (mariaGTID, bool) {
	var fork mariaGTID
	found := false
	consider := func(g mariaGTID) {
		if !found || g.seq > fork.seq {
			fork, found = g, true
		}
	}
	for _, g := range own {
		if g != tail && len(mariaErrant([]mariaGTID{g}, primary)) == 0 {
			consider(g)
		}
	}
	if i, ok := slices.BinarySearchFunc(primary, tail, cmpMariaKey); ok {
		consider(primary[i])
	}
	return fork, found
}

func joinIDs(ids []uint32) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(out, " or ")
}
