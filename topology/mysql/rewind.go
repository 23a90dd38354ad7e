package mysql

import (
	"context"
	"errors"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// ErrCannotRewind is topology.ErrCannotRewind: a rewind refused, with the
// reason, what it cannot undo safely. Nothing on the instance was changed.
var ErrCannotRewind = topology.ErrCannotRewind

// MaxRewindEvents bounds the tail a rewind undoes: a larger one is refused
// (reseed the instance instead), because undoing it would take long and a
// tail that large is no longer "the last moments of a crashed primary".
const MaxRewindEvents = 100_000

// TailSaver copies the transactions a server's binlog holds after a
// position into a binlog file that mariadb-binlog reads. binlog/mysql's
// TailCopier is the implementation (over the replication protocol); it is
// given to the controller with SetTailSaver because that package already
// depends on this one.
type TailSaver interface {
	// SaveTail writes the transactions of req.Addr's binlog after req.After
	// up to req.Upto into the new file req.Path (mode 0600), with their
	// GTIDs, and checks what it wrote by reading the file back. It returns
	// what the file holds. An error wrapping ErrCannotRewind says what in
	// the tail cannot be undone (a statement that is not BEGIN/COMMIT, an
	// event that is not a row change, a partial row image, a transaction of
	// another server, a seq_no gap, more than req.MaxEvents events); when
	// the file could still be completed, the SavedTail returned with it
	// describes it. Any other error leaves no file. It changes nothing on
	// the server.
	SaveTail(ctx context.Context, req TailRequest) (SavedTail, error)
}

// TailRequest is what SaveTail copies: from a server, logging in with an
// account that may read its binlog (REPLICATION SLAVE), the transactions
// after After (one GTID per domain) up to Upto (the last GTID of the tail in
// each domain that has one, from the server's own server_id).
type TailRequest struct {
	Addr, User, Password string
	TLS                  *tlsconfig.Settings // nil: clear text
	After, Upto          topology.Position
	Path                 string
	MaxEvents            int
}

// SavedTail is what a saved tail file holds.
type SavedTail struct {
	GTIDs  []string                       // in binlog order
	Events int                            // events inside the transactions
	Tables map[string]topology.RowChanges // the tables its row events change, by "db.table"
}

// SetTailSaver gives the controller what Rewind saves a tail with.
func (c *Controller) SetTailSaver(s TailSaver) { c.servers.tail = s }

// errNoTailSaver: Rewind was called on a controller without SetTailSaver.
var errNoTailSaver = errors.New("no tail saver: the controller was built without SetTailSaver (binlog/mysql.TailCopier)")

// Rewind makes addr, a fenced former primary (read-only, following nobody)
// that holds transactions primary lacks, a replica of primary again
// without losing those transactions: it saves them under saveDir as a
// binlog file that mariadb-binlog reads (named in the result), undoes them
// on addr, sets addr's GTID state back to what it shares with primary, and
// repoints it. With nothing to undo it only repoints.
//
// What cannot be undone safely is refused with an error wrapping
// ErrCannotRewind that says why (see TailSaver; also row changes on a
// table whose foreign keys cascade, which the binlog does not show); addr
// is left as it was (the result may still name the saved file, for the
// record of what addr holds). It is
// resumable: a call after a crash finishes an interrupted rewind instead of
// undoing twice (state kept in saveDir), and refuses when a crash
// interrupted the undo itself, which leaves addr's data in doubt.
//
// The account needs, beyond what repointing needs, BINLOG ADMIN (the undo
// runs with sql_log_bin=0 so that it creates no GTIDs; gtid_binlog_state),
// RELOAD (RESET MASTER), BINLOG REPLAY and READ_ONLY ADMIN. The apply
// account (SetApplyAccount) must see the tables whose rows the tail
// updates or deletes, to check their foreign keys. The mariadb-binlog and
// mariadb tools must be installed.
func (c *Controller) Rewind(ctx context.Context, addr, primary, saveDir string) (topology.Rewound, error) {
	return c.flavor.Rewind(ctx, addr, primary, saveDir)
}
