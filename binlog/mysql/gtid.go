package mysql

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"

	"github.com/dbha/dbha/topology"
)

// GTID is one transaction's global id: MariaDB domain-server-seq, or MySQL
// source_uuid:gno (SID set, Domain and Server zero).
type GTID struct {
	Domain uint32
	Server uint32
	Seq    uint64 // MariaDB seq_no, MySQL GNO
	SID    uuid.UUID
}

func (g GTID) isMySQL() bool { return g.SID != uuid.Nil }

// String prints the GTID as its server does: "0-1-42" or "uuid:42".
func (g GTID) String() string {
	if g.isMySQL() {
		return g.SID.String() + ":" + strconv.FormatUint(g.Seq, 10)
	}
	return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq)
}

// decodeMariaGTID reads a MariaDB GTID event: seq_no, domain_id, flags2;
// the server_id is the event header's.
func decodeMariaGTID(h header, b []byte) (g GTID, standalone bool, err error) {
	if len(b) < 13 {
		return GTID{}, false, fmt.Errorf("GTID event: %w", errShortEvent)
	}
	g = GTID{Seq: binary.LittleEndian.Uint64(b), Domain: binary.LittleEndian.Uint32(b[8:]), Server: h.ServerID}
	return g, b[12]&replication.BINLOG_MARIADB_FL_STANDALONE != 0, nil
}

// errNoGTID: a MySQL primary wrote a transaction without a GTID.
var errNoGTID = errors.New("transaction without a GTID (anonymous or tagged GTID event): dbha needs gtid_mode=ON and untagged GTIDs")

// decodeMySQLGTID reads a MySQL Gtid_log_event: flags, source UUID, GNO.
func decodeMySQLGTID(b []byte) (GTID, error) {
	if len(b) < 1+16+8 {
		return GTID{}, fmt.Errorf("GTID event: %w", errShortEvent)
	}
	var g GTID
	copy(g.SID[:], b[1:17])
	g.Seq = binary.LittleEndian.Uint64(b[17:])
	if g.SID == uuid.Nil {
		return GTID{}, errNoGTID
	}
	return g, nil
}

// state is a GTID position: what a store holds up to. MariaDB keeps the
// last GTID of each domain (seq_no grows within a domain under
// gtid_strict_mode, whichever server wrote it); MySQL keeps a GTID set.
// The zero state is invalid; use newState.
type state struct {
	flavor  string
	domains map[uint32]GTID     // MariaDB
	set     *mysql.MysqlGTIDSet // MySQL
}

func newState(flavor string) state {
	if flavor == mysql.MySQLFlavor {
		set := mysql.NewMysqlGTIDSet()
		return state{flavor: flavor, set: &set}
	}
	return state{flavor: mysql.MariaDBFlavor, domains: map[uint32]GTID{}}
}

// parseState reads a position in the flavor's text form. A MariaDB list
// may name a domain several times (gtid_binlog_state form); the highest
// seq_no counts.
func parseState(flavor, s string) (state, error) {
	st := newState(flavor)
	if strings.TrimSpace(s) == "" {
		return st, nil
	}
	if st.set != nil {
		set, err := mysql.ParseMysqlGTIDSet(s)
		if err != nil {
			return state{}, fmt.Errorf("parse GTID set %q: %w", s, err)
		}
		st.set = set.(*mysql.MysqlGTIDSet)
		return st, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		g, err := mysql.ParseMariadbGTID(strings.TrimSpace(part))
		if err != nil {
			return state{}, fmt.Errorf("parse GTID list %q: %w", s, err)
		}
		st.add(GTID{Domain: g.DomainID, Server: g.ServerID, Seq: g.SequenceNumber})
	}
	return st, nil
}

// stateOf converts a topology position (a replica's, or an operator's
// --since) to a state.
func stateOf(p topology.Position) (state, error) {
	switch p.Engine() {
	case topology.MariaDB:
		return parseState(mysql.MariaDBFlavor, p.String())
	case topology.MySQL:
		return parseState(mysql.MySQLFlavor, p.String())
	}
	return state{}, fmt.Errorf("position %q is not a MariaDB/MySQL GTID position", p)
}

func (s state) clone() state {
	c := state{flavor: s.flavor}
	if s.set != nil {
		c.set = s.set.Clone().(*mysql.MysqlGTIDSet)
	} else {
		c.domains = maps.Clone(s.domains)
	}
	return c
}

// add records g as held. MariaDB: g becomes its domain's last GTID unless
// the domain is already further (a duplicate never moves it back).
func (s *state) add(g GTID) {
	if s.set != nil {
		s.set.AddGTID(g.SID, int64(g.Seq))
		return
	}
	if old, ok := s.domains[g.Domain]; !ok || g.Seq > old.Seq {
		s.domains[g.Domain] = g
	}
}

// covers reports whether s holds g: MariaDB by seq_no within g's domain
// (server_id is not compared: under strict mode a domain's seq_no orders
// all its transactions), MySQL by set membership.
func (s state) covers(g GTID) bool {
	if s.set != nil {
		for _, iv := range (*s.set)[g.SID][mysql.Tag{}] {
			if int64(g.Seq) >= iv.Start && int64(g.Seq) < iv.Stop {
				return true
			}
		}
		return false
	}
	d, ok := s.domains[g.Domain]
	return ok && g.Seq <= d.Seq
}

// coversState reports whether s holds everything o holds.
func (s state) coversState(o state) bool {
	if s.set != nil {
		return o.set == nil || s.set.Contain(o.set)
	}
	for _, g := range o.domains {
		if !s.covers(g) {
			return false
		}
	}
	return true
}

func (s state) isEmpty() bool {
	if s.set != nil {
		return s.set.IsEmpty()
	}
	return len(s.domains) == 0
}

// list returns a MariaDB state's GTIDs sorted by domain.
func (s state) list() []GTID {
	out := slices.Collect(maps.Values(s.domains))
	slices.SortFunc(out, func(a, b GTID) int { return cmp.Compare(a.Domain, b.Domain) })
	return out
}

// String is the position in its server's form: "0-1-42,1-2-7" or a MySQL
// GTID set.
func (s state) String() string {
	if s.set != nil {
		return s.set.String()
	}
	parts := make([]string, 0, len(s.domains))
	for _, g := range s.list() {
		parts = append(parts, g.String())
	}
	return strings.Join(parts, ",")
}

// position converts s for topology and binlog.Status.
func (s state) position() topology.Position {
	var (
		p   topology.Position
		err error
	)
	if s.set != nil {
		p, err = topology.ParseMySQL(s.String())
	} else {
		p, err = topology.ParseMariaDB(s.String())
	}
	if err != nil { // cannot happen: String prints what the parsers read
		return topology.Position{}
	}
	return p
}

// gtidSet is s as go-mysql's syncer takes it.
func (s state) gtidSet() (mysql.GTIDSet, error) {
	if s.set != nil {
		return s.set.Clone(), nil
	}
	return mysql.ParseMariadbGTIDSet(s.String())
}

// encodeList is the body of the event that records s at the start of a
// file: MariaDB Gtid_list (count, then domain, server, seq per entry),
// MySQL Previous_gtids (go-mysql's set encoding).
func (s state) encodeList() []byte {
	if s.set != nil {
		return s.set.Encode()
	}
	gs := s.list()
	b := make([]byte, 4, 4+16*len(gs))
	binary.LittleEndian.PutUint32(b, uint32(len(gs)))
	for _, g := range gs {
		b = binary.LittleEndian.AppendUint32(b, g.Domain)
		b = binary.LittleEndian.AppendUint32(b, g.Server)
		b = binary.LittleEndian.AppendUint64(b, g.Seq)
	}
	return b
}

// decodeList reads what encodeList wrote (or a server's own Gtid_list /
// Previous_gtids body).
func decodeList(flavor string, b []byte) (state, error) {
	st := newState(flavor)
	if st.set != nil {
		set, err := mysql.DecodeMysqlGTIDSet(b)
		if err != nil {
			return state{}, fmt.Errorf("decode Previous_gtids event: %w", err)
		}
		st.set = set
		return st, nil
	}
	if len(b) < 4 {
		return state{}, fmt.Errorf("decode Gtid_list event: %w", errShortEvent)
	}
	n := int(binary.LittleEndian.Uint32(b) & 0x0fffffff) // the top 4 bits are flags
	if len(b) < 4+16*n {
		return state{}, fmt.Errorf("decode Gtid_list event of %d entries: %w", n, errShortEvent)
	}
	for i := range n {
		e := b[4+16*i:]
		st.add(GTID{Domain: binary.LittleEndian.Uint32(e), Server: binary.LittleEndian.Uint32(e[4:]), Seq: binary.LittleEndian.Uint64(e[8:])})
	}
	return st, nil
}

// listEventType is the event type that records a state in a file.
func listEventType(flavor string) replication.EventType {
	if flavor == mysql.MySQLFlavor {
		return typePreviousGTIDs
	}
	return typeGTIDList
}
