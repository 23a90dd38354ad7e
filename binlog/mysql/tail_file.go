package mysql

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dbha/dbha/topology"
)

// maxReasons is how many refused transactions a refusal names.
const maxReasons = 5

// tailDomain is what a tail holds in one domain: transactions of one
// server with consecutive seq_no, up to last. next is the seq_no the next
// transaction must have; written, the last one written whole.
type tailDomain struct {
	server              uint32
	next, last, written uint64
}

// tailFile writes a saved tail: a binlog file that mariadb-binlog reads,
// with the magic, the server's Format_description event, a Gtid_list event
// with the position the tail starts after, and the tail's events as the
// server sent them (log_pos and checksum rewritten for their place in the
// file). It checks every transaction as it comes (see undoable) and that
// the GTIDs are exactly the expected ones. It is written to path.part and
// renamed to path once complete and fsynced. It does no network I/O.
type tailFile struct {
	path      string
	after     state
	want      map[uint32]*tailDomain
	maxEvents int

	f       *os.File
	bw      *bufio.Writer
	format  format
	headers []uint8 // the format's post-header lengths, by event type - 1
	asm     assembler
	size    int64
	cur     string // the open transaction's GTID
	curBad  string // why the open transaction cannot be undone

	gtids    []string
	events   int
	tableIDs map[uint64]string               // the open transaction's Table_map events
	tables   map[string]*topology.RowChanges // what the tail changes, by "db.table"
	bad      []string                        // the refused transactions' GTIDs
	reasons  []string                        // why, for the first maxReasons of them
	refused  int
	finished bool
}

// newTailFile prepares a tail file for the transactions after after up to
// upto (its errant entries: one per domain with a tail).
func newTailFile(path string, after, upto topology.Position, maxEvents int) (*tailFile, error) {
	st, err := stateOf(after)
	if err != nil {
		return nil, err
	}
	if st.set != nil {
		return nil, errors.New("a tail is read from a MariaDB server: MySQL GTID sets are not supported")
	}
	last, err := stateOf(upto)
	if err != nil {
		return nil, err
	}
	t := &tailFile{path: path, after: st, want: map[uint32]*tailDomain{}, maxEvents: maxEvents,
		tableIDs: map[uint64]string{}, tables: map[string]*topology.RowChanges{}}
	for _, g := range last.list() {
		from := st.domains[g.Domain].Seq
		t.want[g.Domain] = &tailDomain{server: g.Server, next: from + 1, last: g.Seq, written: from}
	}
	if len(t.want) == 0 {
		return nil, errors.New("an empty tail: nothing to save")
	}
	return t, nil
}

// complete reports whether every domain's last transaction has been
// written whole.
func (t *tailFile) complete() bool {
	for _, d := range t.want {
		if d.written < d.last {
			return false
		}
	}
	return true
}

// lacking names what has not arrived yet, per domain.
func (t *tailFile) lacking() string {
	var out []string
	for dom, d := range t.want {
		if d.written < d.last {
			out = append(out, fmt.Sprintf("%d-%d-%d..%d", dom, d.server, d.written+1, d.last))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// event takes one event as the server sent it.
func (t *tailFile) event(ev []byte) error {
	h, err := parseHeader(ev)
	if err != nil || int(h.Size) != len(ev) {
		return fmt.Errorf("malformed event (type %d, %d bytes): %v", h.Type, len(ev), err)
	}
	switch classify(h) {
	case skip, primaryRotate:
		return nil
	case newFormat:
		return t.onFormat(ev)
	}
	if !t.format.valid() {
		return errors.New("event before any Format_description event")
	}
	if h.Type == replication.STOP_EVENT && !t.asm.inside() {
		return nil // the server stopped cleanly between two transactions
	}
	return t.append(h, ev)
}

// onFormat starts the file with the first Format_description event; a later
// one (the server's next binlog) must describe the same format.
func (t *tailFile) onFormat(ev []byte) error {
	f, err := parseFormat(ev)
	if err != nil {
		return err
	}
	if t.format.valid() {
		if f.checksum != t.format.checksum || f.flavor != t.format.flavor {
			return fmt.Errorf("the tail spans binlog files of different formats (checksums %v and %v)", t.format.checksum, f.checksum)
		}
		return nil
	}
	if f.flavor != mysql.MariaDBFlavor {
		return errors.New("not a MariaDB binlog: a tail is undone with mariadb-binlog --flashback")
	}
	var fde replication.FormatDescriptionEvent
	if err := decodeFDE(&fde, body(ev, f.checksum)); err != nil {
		return err
	}
	t.format, t.headers = f, fde.EventTypeHeaderLengths
	t.asm.f = f
	if t.f, err = os.OpenFile(t.path+".part", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
		return fmt.Errorf("create the tail file: %w", err)
	}
	t.bw = bufio.NewWriterSize(t.f, writeBuffer)
	head := fileHeader(f, t.after, time.Now())
	setInUse(head[4:4+len(f.raw)], false, f.checksum) // a tail file is complete when read
	if _, err := t.bw.Write(head); err != nil {
		return fmt.Errorf("write the tail file: %w", err)
	}
	t.size = int64(len(head))
	return nil
}

func (t *tailFile) postHeader(typ replication.EventType) int {
	if i := int(typ) - 1; i >= 0 && i < len(t.headers) {
		return int(t.headers[i])
	}
	return 0
}

// append writes an event, checks it, and follows the transactions.
func (t *tailFile) append(h header, ev []byte) error {
	if t.format.checksum {
		if err := checkCRC(ev); err != nil {
			return fmt.Errorf("event type %d: %w", h.Type, err)
		}
	}
	out := slices.Clone(ev)
	setLogPos(out, uint32(t.size+int64(len(out))), t.format.checksum)
	st, err := t.asm.feed(h, out, t.size)
	if err != nil {
		return err
	}
	if h.Type == typeMariaGTID {
		t.begin(t.asm.cur.GTID)
	} else if !st.inside && !st.done {
		t.refuse("", fmt.Sprintf("an event of type %s (%d) outside any transaction", h.Type, int(h.Type)))
	} else if why := undoable(h, out, t.format, t.postHeader); why != "" && t.curBad == "" {
		t.curBad = why
	}
	if err := t.track(h, out); err != nil && t.curBad == "" {
		t.curBad = "an unreadable " + h.Type.String() + ": " + err.Error()
	}
	if _, err := t.bw.Write(out); err != nil {
		return fmt.Errorf("write the tail file: %w", err)
	}
	t.size += int64(len(out))
	if st.inside || st.done {
		if t.events++; t.events > t.maxEvents {
			return fmt.Errorf("%w: the tail holds more than %d events: reseed instead", topology.ErrCannotRewind, t.maxEvents)
		}
	}
	if st.done {
		g := st.txn.GTID
		if d, ok := t.want[g.Domain]; ok && g.Seq > d.written {
			d.written = g.Seq
		}
		t.gtids = append(t.gtids, g.String())
		if t.curBad != "" {
			t.refuse(t.cur, t.curBad)
		}
	}
	return nil
}

// track follows which tables the tail's row events change, and how.
func (t *tailFile) track(h header, ev []byte) error {
	b := body(ev, t.format.checksum)
	ph := t.postHeader(h.Type)
	switch h.Type {
	case typeMariaGTID:
		clear(t.tableIDs)
	case replication.TABLE_MAP_EVENT:
		id, name, err := tableMapName(b, ph)
		if err != nil {
			return err
		}
		t.tableIDs[id] = name
	case replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
		replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
		replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
		if ph != 6 && ph != 8 || len(b) < ph {
			return errShortEvent
		}
		name, ok := t.tableIDs[tableID(b, ph)]
		if !ok {
			return errors.New("a row event without its Table_map event")
		}
		ops := t.tables[name]
		if ops == nil {
			ops = &topology.RowChanges{}
			t.tables[name] = ops
		}
		switch h.Type {
		case replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2:
			ops.Writes++
		case replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2:
			ops.Updates++
		default:
			ops.Deletes++
		}
	}
	return nil
}

// changed is what the tail changes, by table.
func (t *tailFile) changed() map[string]topology.RowChanges {
	out := make(map[string]topology.RowChanges, len(t.tables))
	for name, ops := range t.tables {
		out[name] = *ops
	}
	return out
}

// begin checks a transaction's GTID: the next of its domain's tail, from
// the tail's server.
func (t *tailFile) begin(g GTID) {
	t.cur, t.curBad = g.String(), ""
	d, ok := t.want[g.Domain]
	switch {
	case !ok:
		t.curBad = fmt.Sprintf("domain %d has no tail", g.Domain)
	case g.Server != d.server:
		t.curBad = fmt.Sprintf("written by server_id %d, not by the instance (%d): a write of unknown origin", g.Server, d.server)
	case g.Seq != d.next:
		t.curBad = fmt.Sprintf("seq_no %d where %d was next: the binlog does not hold every transaction of the tail", g.Seq, d.next)
	}
	if ok && g.Seq >= d.next {
		d.next = g.Seq + 1
	}
}

func (t *tailFile) refuse(gtid, why string) {
	t.refused++
	if gtid != "" {
		t.bad = append(t.bad, gtid)
	}
	if len(t.reasons) < maxReasons {
		if gtid != "" {
			why = gtid + " is " + why
		}
		t.reasons = append(t.reasons, why)
	}
}

// refusal is the error that says why the tail cannot be undone; nil when it
// can.
func (t *tailFile) refusal() error {
	if t.refused == 0 {
		return nil
	}
	more := ""
	if t.refused > len(t.reasons) {
		more = fmt.Sprintf("; and %d more", t.refused-len(t.reasons))
	}
	return fmt.Errorf("%w: %s%s", topology.ErrCannotRewind, strings.Join(t.reasons, "; "), more)
}

// finish makes the file durable under its name and reads it back: it must
// hold exactly the GTIDs written, in order.
func (t *tailFile) finish() error {
	if t.f == nil {
		return errors.New("nothing was received")
	}
	err := t.bw.Flush()
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(t.path+".part", t.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(t.path))
	}
	if err != nil {
		os.Remove(t.path + ".part")
		return fmt.Errorf("write the tail file: %w", err)
	}
	t.finished = true
	var read []string
	if err := ScanFile(t.path, func(x Txn) error { read = append(read, x.GTID.String()); return nil }); err != nil {
		return fmt.Errorf("read the tail file back: %w", err)
	}
	if !slices.Equal(read, t.gtids) {
		return fmt.Errorf("the tail file %s holds %d transactions, %d were written", t.path, len(read), len(t.gtids))
	}
	return nil
}

// abort removes an unfinished file.
func (t *tailFile) abort() {
	if t.f != nil && !t.finished {
		t.f.Close()
		os.Remove(t.path + ".part")
	}
}
