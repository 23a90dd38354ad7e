package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// MaxOutput bounds the output an Error carries.
const MaxOutput = 4096

// ErrEmpty is a command without a program.
var ErrEmpty = errors.New("empty command")

// Options are what a command gets besides its argv.
type Options struct {
	// Placeholders maps a placeholder such as "{instance}" to the value
	// that replaces it wherever it occurs in an argument.
	Placeholders map[string]string
	// Env is added to this process's environment ("NAME=value").
	Env []string
	// Stdin is the command's standard input; nil gives it none.
	Stdin []byte
}

// Error is a command that failed: it could not start, exited with a
// status other than 0, or was killed when the context ended.
type Error struct {
	Name   string // the program, after placeholder replacement
	Err    error  // from os/exec
	Output string // stdout and stderr together, trimmed, cut to MaxOutput
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v: %s", e.Name, e.Err, e.Output) }

func (e *Error) Unwrap() error { return e.Err }

// Run runs argv with its placeholders replaced and returns what it printed,
// stdout and stderr together and trimmed. The command is killed when ctx
// ends; a command that exits while a child of its own still holds its
// output open is given a second more and then fails. Every error is an
// *Error.
func Run(ctx context.Context, argv []string, o Options) (string, error) {
	if len(argv) == 0 {
		return "", &Error{Err: ErrEmpty}
	}
	args := replace(argv, o.Placeholders)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	if o.Stdin != nil {
		cmd.Stdin = bytes.NewReader(o.Stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	output := strings.TrimSpace(out.String())
	if err != nil {
		return output, &Error{Name: args[0], Err: err, Output: cut(output)}
	}
	return output, nil
}

// replace substitutes placeholders in every argument. Keys are applied in
// sorted order, so the result does not depend on map iteration.
func replace(argv []string, placeholders map[string]string) []string {
	keys := make([]string, 0, len(placeholders))
	for k := range placeholders {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, k, placeholders[k])
	}
	r := strings.NewReplacer(pairs...)
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = r.Replace(a)
	}
	return out
}

func cut(s string) string {
	if len(s) > MaxOutput {
		return s[:MaxOutput] + "…"
	}
	return s
}
