package postgres

import (
	"encoding/binary"
	"time"
)

// feedback is a standby status update: what dbha tells the primary it holds.
// Write is what has been written to the segment files, Flush what has been
// fsynced. Apply is Flush: dbha applies nothing, but WAL it has fsynced is
// WAL it can hand to a standby, and reporting it lets pg_stat_replication
// show dbha's replay_lsn. The primary releases synchronous commits on Flush
// (and remote_apply ones on Apply), so neither may ever run ahead of fsync.
type feedback struct {
	Write, Flush, Apply LSN
	Reply               bool // ask the primary to answer at once
}

// feedbackFor is the status update for a writer's positions.
func feedbackFor(written, flushed LSN) feedback {
	return feedback{Write: written, Flush: flushed, Apply: flushed}
}

// flushRule says when the stream fsyncs what it has written.
type flushRule struct {
	Synchronous bool
	Interval    time.Duration
}

// maxUnflushed bounds how much WAL a synchronous stream holds unfsynced
// while messages keep coming, so commits are not held up by a long burst.
const maxUnflushed = 1 << 20

// due says whether to fsync now. unflushed is how many bytes are written
// but not fsynced; idle says no further message is already buffered; since
// is the time since the last fsync.
//
// A synchronous stream fsyncs as soon as it has nothing more to read (the
// primary is waiting for it to release commits), or after maxUnflushed
// bytes; otherwise, as pg_receivewal does without --synchronous, fsync waits
// for the status interval (and for the end of each segment, which the
// segment writer fsyncs before it renames).
func (r flushRule) due(unflushed int64, idle bool, since time.Duration) bool {
	switch {
	case unflushed <= 0:
		return false
	case r.Synchronous && (idle || unflushed >= maxUnflushed):
		return true
	}
	return since >= r.Interval
}

// feedbackDue says whether to send a status update now: when the primary
// asks, when the interval has passed, and (synchronous) as soon as the flush
// position moved, since commits wait on it.
func (r flushRule) feedbackDue(last, now feedback, since time.Duration, asked bool) bool {
	switch {
	case asked || since >= r.Interval:
		return true
	case r.Synchronous:
		return now.Flush > last.Flush
	}
	return false
}

// The primary's walsender pings only a standby it has not heard from, and
// dbha reports every StatusInterval, so an idle primary may say nothing at
// all. After pingAfter of silence dbha asks for an answer in its status
// updates; after receiveTimeout it takes the connection for dead (as
// wal_receiver_timeout does) and reconnects.
const (
	pingAfter      = 5 * time.Second
	receiveTimeout = 30 * time.Second
)

// liveness says, from how long the primary has been silent, whether to ask
// it to answer and whether to give the connection up.
func liveness(silent time.Duration) (ping, dead bool) {
	return silent >= pingAfter, silent >= receiveTimeout
}

// pgEpoch is PostgreSQL's epoch for timestamps in the replication protocol.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// encode builds the CopyData message carrying a Standby Status Update ('r'),
// with every position exactly as given: pglogrepl's helper replaces a zero
// flush position by the write position, which would report unfsynced WAL
// as flushed.
func (fb feedback) encode(now time.Time) []byte {
	const body = 1 + 8 + 8 + 8 + 8 + 1
	msg := make([]byte, 0, 1+4+body)
	msg = append(msg, 'd')
	msg = binary.BigEndian.AppendUint32(msg, 4+body)
	msg = append(msg, 'r')
	msg = binary.BigEndian.AppendUint64(msg, uint64(fb.Write))
	msg = binary.BigEndian.AppendUint64(msg, uint64(fb.Flush))
	msg = binary.BigEndian.AppendUint64(msg, uint64(fb.Apply))
	msg = binary.BigEndian.AppendUint64(msg, uint64(now.Sub(pgEpoch).Microseconds()))
	reply := byte(0)
	if fb.Reply {
		reply = 1
	}
	return append(msg, reply)
}
