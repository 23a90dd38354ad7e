package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrBroken is wrapped by Run's error when the stream meets a condition it
// cannot get past by itself: WAL the primary no longer has, a store made
// from another cluster, WAL that differs from what the store holds. The
// reason, with what an operator can do, is in Status.Broken. Nothing is ever
// skipped to get past it.
var ErrBroken = errors.New("WAL stream broken")

// brokenError carries the reason Status.Broken shows.
type brokenError struct {
	reason string
	err    error // the cause, if any
}

func (e *brokenError) Error() string        { return e.reason }
func (e *brokenError) Is(target error) bool { return target == ErrBroken }
func (e *brokenError) Unwrap() error        { return e.err }

// SQLSTATEs the stream branches on.
const (
	sqlUndefinedFile     = "58P01" // "requested WAL segment ... has already been removed"
	sqlDuplicateObject   = "42710" // the slot exists already
	sqlInvalidPassword   = "28P01"
	sqlInvalidAuthSpec   = "28000" // no pg_hba.conf entry, role cannot log in
	sqlInsufficientPrivs = "42501"
)

// pgCode is the SQLSTATE of a server error, "" for other errors.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// authError explains a failed login: which user at which server, and where
// to look. It never includes the password.
func authError(user, addr string, err error) error {
	switch pgCode(err) {
	case sqlInvalidPassword:
		return fmt.Errorf("replication login as user %q to %s failed: wrong password (check the cluster's password_file or password_env): %w", user, addr, err)
	case sqlInvalidAuthSpec:
		return fmt.Errorf("replication login as user %q to %s refused (the role needs LOGIN REPLICATION, and pg_hba.conf a \"host replication\" line for dbha's address): %w", user, addr, err)
	case sqlInsufficientPrivs:
		return fmt.Errorf("user %q may not start replication on %s (it needs the REPLICATION attribute): %w", user, addr, err)
	}
	return fmt.Errorf("replication connection as user %q to %s: %w", user, addr, err)
}
