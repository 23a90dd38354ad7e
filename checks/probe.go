package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
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
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "DBHA_CLUSTER="+cluster, "DBHA_PRIMARY="+primary)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // a child that keeps the pipes open must not hold us
	err := cmd.Run()
	first, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	v := ExternalView{At: at, Alive: err == nil, Detail: first}
	if err != nil {
		v.Detail = fmt.Sprintf("%s: %v %s", argv[0], err, first)
	}
	return v
}
