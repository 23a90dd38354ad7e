package mysql

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// The MariaDB client tools a controller runs: mariadb-binlog decodes
// binlog files into SQL, the mariadb client runs it. Passwords reach the
// client through a private option file (clientOptionFile), never an
// argument.

// requireTools fails when a tool is not installed.
func requireTools(tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install mariadb-client (make deps): %w", tool, err)
		}
	}
	return nil
}

// pipeBinlog runs `mariadb-binlog decodeArgs... | mariadb clientArgs...`
// to the end and says, on failure, what each side reported.
func pipeBinlog(ctx context.Context, decodeArgs, clientArgs []string) error {
	decode := exec.CommandContext(ctx, "mariadb-binlog", decodeArgs...)
	apply := exec.CommandContext(ctx, "mariadb", clientArgs...)
	var decodeErr, applyErr strings.Builder
	decode.Stderr, apply.Stderr = &decodeErr, &applyErr
	pipe, err := decode.StdoutPipe()
	if err != nil {
		return err
	}
	apply.Stdin = pipe
	if err := decode.Start(); err != nil {
		return fmt.Errorf("start mariadb-binlog: %w", err)
	}
	if err := apply.Start(); err != nil {
		decode.Process.Kill()
		decode.Wait()
		return fmt.Errorf("start mariadb: %w", err)
	}
	// Only the client reads the pipe now: should it fail, mariadb-binlog
	// sees a broken pipe instead of blocking on a pipe still open here.
	pipe.Close()
	runErr := apply.Wait()
	waitErr := decode.Wait()
	if runErr != nil || waitErr != nil {
		return fmt.Errorf("mariadb-binlog: %v %s; mariadb: %v %s",
			waitErr, strings.TrimSpace(decodeErr.String()), runErr, strings.TrimSpace(applyErr.String()))
	}
	return nil
}
