package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// runCommand runs an operator's command with placeholders replaced (pairs
// of placeholder and value), and returns its output in the error.
func runCommand(ctx context.Context, argv []string, replace ...string) error {
	r := strings.NewReplacer(replace...)
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = r.Replace(a)
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}
