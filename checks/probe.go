package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dbha/dbha/command"
)

// ProbeTCP connects to addr and closes at once, within ctx's deadline. It
// tells a dead server (refused at once) from a hung one (the kernel still
// accepts the connection) and from a partition (the connect times out).
func ProbeTCP(ctx context.Context, addr string) ProbeResult {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	r := ProbeResult{Latency: time.Since(start)}
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

// RunExternal runs an operator's check command with the cluster and the
// primary in its environment (DBHA_CLUSTER, DBHA_PRIMARY). Exit status 0
// votes alive; any other status, or no answer within ctx, votes dead. The
// first line of its output is kept as the detail.
func RunExternal(ctx context.Context, argv []string, cluster, primary string) ExternalView {
	at := time.Now()
	out, err := command.Run(ctx, argv, command.Options{Env: []string{"DBHA_CLUSTER=" + cluster, "DBHA_PRIMARY=" + primary}})
	first, _, _ := strings.Cut(out, "\n")
	v := ExternalView{At: at, Alive: err == nil, Detail: first}
	var failed *command.Error
	if errors.As(err, &failed) {
		v.Detail = fmt.Sprintf("%s: %v %s", failed.Name, failed.Err, first)
	}
	return v
}
