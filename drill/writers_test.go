package drill

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMariaOutcome(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Outcome
	}{
		{"acknowledged", nil, Acked},
		{"read-only server", &gomysql.MySQLError{Number: 1290, Message: "--read-only"}, Refused},
		{"duplicate key", fmt.Errorf("insert: %w", &gomysql.MySQLError{Number: 1062}), Refused},
		{"broken before sending", driver.ErrBadConn, Refused},
		{"server shutting down", &gomysql.MySQLError{Number: 1053}, Unknown},
		{"query interrupted", &gomysql.MySQLError{Number: 1317}, Unknown},
		{"connection killed", &gomysql.MySQLError{Number: 1927}, Unknown},
		{"invalid connection mid-statement", gomysql.ErrInvalidConn, Unknown},
		{"deadline", context.DeadlineExceeded, Unknown},
		{"eof", io.ErrUnexpectedEOF, Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := OutcomeOf(mariaOutcome(tc.err)); got != tc.want {
				t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

func TestPgOutcome(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Outcome
	}{
		{"acknowledged", nil, Acked},
		{"read-only standby", &pgconn.PgError{Code: "25006"}, Refused},
		{"unique violation", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"}), Refused},
		{"serialization", &pgconn.PgError{Code: "40001"}, Refused},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, Unknown},
		{"query canceled", &pgconn.PgError{Code: "57014"}, Unknown},
		{"connection failure", &pgconn.PgError{Code: "08006"}, Unknown},
		{"internal", &pgconn.PgError{Code: "XX000"}, Unknown},
		{"malformed code", &pgconn.PgError{Code: "2"}, Unknown},
		{"deadline", context.DeadlineExceeded, Unknown},
		{"plain error", errors.New("unexpected EOF"), Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := OutcomeOf(pgOutcome(tc.err)); got != tc.want {
				t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}
