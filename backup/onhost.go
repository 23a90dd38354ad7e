package backup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
)

// ErrNotTheSource: the files a backup would copy were not proved to be
// the chosen source's. Nothing was copied.
var ErrNotTheSource = errors.New("the files are not proved to be the source's")

// refusedMark starts the line a script on the source's host prints when
// it refuses; onHost turns it into ErrNotTheSource.
const refusedMark = "dbha refused: "

// onHost is how a command reaches the host whose files it reads: remote
// (backup.remote_command, e.g. [ssh, -o, BatchMode=yes, "{host}"]) gets
// one shell command line as its last argument, with "{host}" replaced
// by the source's host, as ssh runs one; no remote command runs it here
// with sh -c.
func onHost(ctx context.Context, remote []string, host, script string) *exec.Cmd {
	if len(remote) == 0 {
		return exec.CommandContext(ctx, "sh", "-c", script)
	}
	argv := make([]string, 0, len(remote)+1)
	for _, a := range remote {
		argv = append(argv, strings.ReplaceAll(a, "{host}", host))
	}
	argv = append(argv, script)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// shellQuote makes s one word of a POSIX shell command line.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// shellLine quotes every word of argv.
func shellLine(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = shellQuote(a)
	}
	return strings.Join(words, " ")
}

// listenAddrs are the local addresses, as ss prints them, of a socket
// that serves host:port: the host's own addresses and the wildcards. A
// host name is resolved here, as the client that connects resolves it.
func listenAddrs(ctx context.Context, host, port string) ([]string, error) {
	ips := []string{host}
	if net.ParseIP(host) == nil {
		var err error
		if ips, err = net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	p := port
	out := []string{"0.0.0.0:" + p, "*:" + p, "[::]:" + p}
	for _, ip := range ips {
		if strings.Contains(ip, ":") {
			out = append(out, "["+ip+"]:"+p)
		} else {
			out = append(out, ip+":"+p, "[::ffff:"+ip+"]:"+p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// proveDataDirScript is a POSIX shell fragment, run on the source's host
// before anything is read there, that proves dir holds the files of the
// server listening on one of addrs (listenAddrs) at port: exactly one
// process listens there (exit status 4 when none does, 3 for any other
// refusal), and dir is that process's working directory
// (MariaDB's server works in its datadir), compared as device and inode,
// so a path that names another instance's directory here (another
// instance on this host, or a server in a container whose datadir is
// mounted at the same path) is refused. It needs ss (iproute2) and the
// right to see the server's process (root, or the server's own account).
func proveDataDirScript(addrs []string, port, dir string) string {
	return fmt.Sprintf(`refuse() { echo "%[1]s$*" >&2; exit 3; }
nobody() { echo "%[1]s$*" >&2; exit 4; }
port=%[2]s; dir=%[3]s; want=%[4]s
command -v ss >/dev/null || refuse "ss (iproute2) is not installed on $(hostname): cannot prove whose files $dir holds"
pids=$(ss -Hltnp "sport = :$port" | awk -v want="$want" '
	BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ok[w[i]] = 1 }
	ok[$4] { s = $0; while (match(s, /pid=[0-9]+/)) { print substr(s, RSTART + 4, RLENGTH - 4); s = substr(s, RSTART + RLENGTH) } }' | sort -u)
set -- $pids
[ $# -eq 0 ] && nobody "no process on $(hostname) that this account may see listens on port $port: the files in $dir cannot be proved to be that server's (run as root or as the server's account, or set backup.remote_command to reach the server's host)"
[ $# -gt 1 ] && refuse "several processes listen on port $port on $(hostname) ($*): cannot tell which one's files $dir holds"
have=$(stat -L -c %%d:%%i "/proc/$1/cwd" 2>/dev/null) || refuse "cannot see where process $1 (on port $port) works: run as root or as the server's account"
[ "$have" = "$(stat -L -c %%d:%%i "$dir" 2>/dev/null)" ] || refuse "$dir on $(hostname) is not the data directory of the server on port $port (process $1, $(cat /proc/$1/comm 2>/dev/null), works in $(readlink /proc/$1/cwd 2>/dev/null)): it holds another instance's files, or none"
`, refusedMark, shellQuote(port), shellQuote(dir), shellQuote(strings.Join(addrs, " ")))
}

// errNotListening: no process this account may see listens on the
// instance's port on this host.
var errNotListening = errors.New("no process listens on the instance's port here")

// proveDataDir proves, on this host, that dir is the data directory of
// the server serving addr (proveDataDirScript): nil, errNotListening when
// no process listens on its port here, or ErrNotTheSource with what was
// found. PostgreSQL's postmaster, like MariaDB's server, works in its data
// directory.
func proveDataDir(ctx context.Context, addr, dir string) error {
	host, port, err := splitAddr(addr)
	if err != nil {
		return err
	}
	addrs, err := listenAddrs(ctx, host, port)
	if err != nil {
		return err
	}
	out, err := onHost(ctx, nil, host, "set -eu\n"+proveDataDirScript(addrs, port, dir)).CombinedOutput()
	last := lastLine(string(out))
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() == 4:
		return fmt.Errorf("%w: %s", errNotListening, strings.TrimPrefix(last, refusedMark))
	case refusal(last) != nil:
		return refusal(last)
	}
	return fmt.Errorf("prove that %s holds %s's files: %w: %s", dir, addr, err, last)
}

// refusal turns a script's last line into ErrNotTheSource when it is a
// refusal.
func refusal(last string) error {
	if reason, ok := strings.CutPrefix(last, refusedMark); ok {
		return fmt.Errorf("%w: %s", ErrNotTheSource, reason)
	}
	return nil
}
