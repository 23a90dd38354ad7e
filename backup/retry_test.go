package backup

import (
	"errors"
	"strings"
	"testing"
)

func TestRetry(t *testing.T) {
	cases := []struct {
		name     string
		attempt  int
		stopping bool
		want     bool
	}{
		{"first failure is retried", 1, false, true},
		{"the retry is not retried", 2, false, false},
		{"not when the daemon stops", 1, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Retry(tc.attempt, tc.stopping); got != tc.want {
				t.Fatalf("Retry(%d, %v) = %v, want %v", tc.attempt, tc.stopping, got, tc.want)
			}
		})
	}
}

func TestFailureReason(t *testing.T) {
	cases := []struct {
		name string
		e    Entry
		err  error
		want string
	}{
		{"done", Entry{Status: Done}, nil, ""},
		{"error", Entry{}, errors.New("no instance can serve a backup"), "no instance can serve a backup"},
		{"error wins over the entry", Entry{Status: Failed, Error: "x"}, errors.New("pg_basebackup: boom"), "pg_basebackup: boom"},
		{"failed entry", Entry{Status: Failed, Error: "source gone"}, nil, "source gone"},
		{"still running", Entry{Status: Running}, nil, `status "running"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FailureReason(tc.e, tc.err)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("FailureReason = %q, want %q", got, tc.want)
			}
		})
	}
}
