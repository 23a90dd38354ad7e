// Package probe holds the paths of checks that do I/O: dbha's TCP connect
// to a primary and the operator's check command. What they return is
// evidence for the pure analysis in checks; they decide nothing.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/command"
)

// TCP connects to addr and closes at once, within ctx's deadline. It
// tells a dead server (refused at once) from a hung one (the kernel still
// accepts the connection) and from a partition (the connect times out).
func TCP(ctx context.Context, addr string) checks.ProbeResult {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	r := checks.ProbeResult{Latency: time.Since(start)}
	if err != nil {
		r.Error = err.Error()
		var ne net.Error
		r.TimedOut = errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
		return r
	}
	conn.Close()
	r.OK = true
	return r
}

// External runs an operator's check command with the cluster and the
// primary in its environment (DBHA_CLUSTER, DBHA_PRIMARY). Exit status 0
// votes alive; any other status, or no answer within ctx, votes dead. The
// first line of its output is kept as the detail.
func External(ctx context.Context, argv []string, cluster, primary string) checks.ExternalView {
	at := time.Now()
	out, err := command.Run(ctx, argv, command.Options{Env: []string{"DBHA_CLUSTER=" + cluster, "DBHA_PRIMARY=" + primary}})
	first, _, _ := strings.Cut(out, "\n")
	v := checks.ExternalView{At: at, Alive: err == nil, Detail: first}
	var failed *command.Error
	if errors.As(err, &failed) {
		v.Detail = fmt.Sprintf("%s: %v %s", failed.Name, failed.Err, first)
	}
	return v
}
