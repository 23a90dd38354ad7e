package mysql

import (
	"time"

	"github.com/dbha/dbha/binlog"
)

// The decisions about what a replica lacks, over the store's files and
// transactions. Pure: positions and records in, numbers out.

// fileEnds returns, for each file, the position after its last
// transaction: the next file's start position, and last for the newest.
func fileEnds(starts []state, last state) []state {
	ends := make([]state, len(starts))
	for i := range starts {
		if i+1 < len(starts) {
			ends[i] = starts[i+1]
		} else {
			ends[i] = last
		}
	}
	return ends
}

// firstLacking returns the index of the first file holding a transaction
// that p lacks (len(ends) when p lacks none): the files before it hold
// only what p has.
func firstLacking(ends []state, p state) int {
	for i, e := range ends {
		if !p.coversState(e) {
			return i
		}
	}
	return len(ends)
}

// neededFile decides, for retention, the first file that must stay: the
// first file holding a transaction that the slowest of keep lacks. With
// nothing to keep it is len(ends): retention is bounded by age and size
// alone (see Config.KeepFor for why that is the choice).
func neededFile(ends []state, keep []state) int {
	needed := len(ends)
	for _, p := range keep {
		needed = min(needed, firstLacking(ends, p))
	}
	return needed
}

// lagCounter measures a replica's lag over the transactions after its
// position, fed oldest first.
type lagCounter struct {
	p      state
	lag    binlog.Lag
	oldest time.Time
}

func (c *lagCounter) add(t Txn) {
	if c.p.covers(t.GTID) {
		return
	}
	if c.lag.Transactions == 0 {
		c.oldest = t.Time
	}
	c.lag.Transactions++
	c.lag.Bytes += t.Size
}

// result is the lag at now: the transactions the replica lacks, their
// bytes, and how long ago the oldest of them committed (0 when it lacks
// none; never negative when clocks disagree).
func (c *lagCounter) result(now time.Time) binlog.Lag {
	l := c.lag
	if l.Transactions > 0 {
		l.Seconds = max(0, now.Sub(c.oldest).Seconds())
	}
	return l
}
