package command

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	cases := []struct {
		name    string
		argv    []string
		o       Options
		timeout time.Duration
		output  string // want: what Run returns
		errHas  []string
		errIs   error
	}{
		{name: "placeholders replaced in every argument",
			argv:   []string{"echo", "{instance}", "to follow {primary}", "{instance}:{primary}"},
			o:      Options{Placeholders: map[string]string{"{instance}": "db2:3306", "{primary}": "db1:3306"}},
			output: "db2:3306 to follow db1:3306 db2:3306:db1:3306"},
		{name: "environment added to this process's",
			argv:   []string{"sh", "-c", `echo "$DBHA_CLUSTER $DBHA_PRIMARY ${PATH:+has-path}"`},
			o:      Options{Env: []string{"DBHA_CLUSTER=c1", "DBHA_PRIMARY=db1"}},
			output: "c1 db1 has-path"},
		{name: "stdin",
			argv:   []string{"cat"},
			o:      Options{Stdin: []byte("  the record\n")},
			output: "the record"},
		{name: "a failing command's output is in the error",
			argv:   []string{"sh", "-c", "echo to stdout; echo refusing >&2; exit 4"},
			output: "to stdout\nrefusing",
			errHas: []string{"sh: exit status 4: to stdout\nrefusing"}},
		{name: "a missing program",
			argv:   []string{"/nonexistent/command"},
			errHas: []string{"/nonexistent/command: "}},
		{name: "an empty command", errIs: ErrEmpty},
		{name: "a command past the context's deadline is killed",
			argv:    []string{"sleep", "10"},
			timeout: 100 * time.Millisecond,
			errHas:  []string{"sleep: signal: killed"}},
		{name: "a child left holding the output does not hold the caller",
			argv:   []string{"sh", "-c", "echo started; sleep 3 &"},
			output: "started",
			errIs:  exec.ErrWaitDelay},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			out, err := Run(ctx, tc.argv, tc.o)
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("Run took %s", took)
			}
			if out != tc.output {
				t.Errorf("output = %q, want %q", out, tc.output)
			}
			wantErr := len(tc.errHas) > 0 || tc.errIs != nil
			if (err != nil) != wantErr {
				t.Fatalf("err = %v, want an error: %v", err, wantErr)
			}
			if err == nil {
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, not an *Error", err, err)
			}
			if tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Errorf("err = %v, want %v", err, tc.errIs)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestRunCutsLongOutput(t *testing.T) {
	_, err := Run(context.Background(), []string{"sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x; exit 1"}, Options{})
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Output) != MaxOutput+len("…") || !strings.HasSuffix(ce.Output, "x…") {
		t.Fatalf("err = %v (output of %d bytes)", err, len(ce.Output))
	}
}
