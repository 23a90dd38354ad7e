package drill

import (
	"errors"
	"time"
)

// Outcome is what a writer learnt of one write.
type Outcome string

const (
	// Acked: the server acknowledged the commit.
	Acked Outcome = "acked"
	// Refused: the server answered with an error before committing (a
	// read-only server, a constraint): the row is certainly not there.
	Refused Outcome = "refused"
	// Unknown: no answer came (a deadline, a connection lost mid-commit):
	// the row may or may not be there. Never counted as acknowledged.
	Unknown Outcome = "unknown"
)

// ErrRefused marks (wrapped) an error with which a server refused a write
// before committing it. An Engine's Conn.Insert wraps it; every other
// error leaves the outcome unknown.
var ErrRefused = errors.New("refused by the server")

// OutcomeOf is the outcome of a write that returned err.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return Acked
	case errors.Is(err, ErrRefused):
		return Refused
	default:
		return Unknown
	}
}

// Write is one entry of a drill's history: one row, sent once on one
// connection. Only writes actually sent are recorded (a failed resolve or
// dial sends nothing and takes no id).
type Write struct {
	ID     int64 `json:"id"`     // unique across drills on the same table
	Writer int   `json:"writer"` // which writer sent it, 0..W-1; stored in the row too
	// Sent is when the statement was handed to the connection; Done when
	// its outcome came back (the acknowledgement, the error, or the
	// deadline).
	Sent time.Time `json:"sent"`
	Done time.Time `json:"done"`
	// Outcome and, unless Acked, Err.
	Outcome Outcome `json:"outcome"`
	Err     string  `json:"error,omitempty"`
	// Addr is the address the writer dialled, as the writer endpoint named
	// it; Server is the identity the server reported on that connection
	// (see Conn.Server).
	Addr   string `json:"addr"`
	Server string `json:"server"`
}
