package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds shared by every wait in the lab. Each wait gives up with an error that says what it
// waited for and shows the end of the node's log.
const (
	pollInterval   = 150 * time.Millisecond
	probeTimeout   = 5 * time.Second
	readyTimeout   = 60 * time.Second
	stopTimeout    = 30 * time.Second
	portAttempts   = 3
	logTailLines   = 15
	logTailMaxRead = 8 << 10
)

// errExited: a node's process exited while the lab waited for it.
var errExited = errors.New("exited")

// launch describes one server process: what to run, as whom, and where its output goes.
type launch struct {
	path      string
	args      []string
	env       []string // extra variables on top of a minimal environment
	logFile   string   // stdout and stderr, appended
	asLabUser bool     // drop to the lab user when running as root
	netns     string   // hosts lab: the namespace to run in ("" for the root namespace)
}

// spawn starts ln detached (own session, no controlling terminal) so that it outlives the
// process that runs `dbha lab up`, and returns its PID and start time (see processIsNode). The
// child is reaped in the background while this process lives; afterwards init reaps it.
func (l *Lab) spawn(ln launch) (pid int, started uint64, err error) {
	logf, err := os.OpenFile(ln.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, 0, fmt.Errorf("open log %s: %w", ln.logFile, err)
	}
	defer logf.Close()
	path, args, cred := l.inHost(ln)
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.Env = append(baseEnv(), ln.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("start %s: %w", ln.path, err)
	}
	// Read before the child can be reaped: until then its PID cannot be reused, so the start
	// time read here is its own.
	started, _ = procStart(cmd.Process.Pid)
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, started, nil
}

// run executes a short-lived setup command (initdb, pg_basebackup, mariadb-install-db) to
// completion, output appended to logFile. Its error carries the end of that log.
func (l *Lab) run(ctx context.Context, ln launch) error {
	logf, err := os.OpenFile(ln.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s: %w", ln.logFile, err)
	}
	defer logf.Close()
	path, args, cred := l.inHost(ln)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.Env = append(baseEnv(), ln.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w%s", ln.path, err, logTail(ln.logFile))
	}
	return nil
}

// baseEnv is the environment of every child: nothing inherited, so no stray PG*/MYSQL_*
// variable or password of the caller leaks into a server.
func baseEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/tmp"}
}

// processIsNode reports whether pid is alive (not a zombie) and is the process the lab started
// for a node, so that the lab never signals a process it did not start.
//
// When started is known (the start time spawn read while the process was still its unreaped
// child), it decides: a PID and a start time name one process since boot, whatever the
// process has exec'd or written into its argv since. Otherwise (a lab.json written before
// start times were kept) the command line must name marker (the node's data directory) as an
// argument or as an "--option=marker" value.
//
// The command line alone gave false negatives: cmd.Start returns once the child's exec has
// replaced its memory but before the kernel has laid out the new argv, and /proc/PID/cmdline
// reads empty in that window (measured: 5% of spawns, 20% through nsenter, which execs twice;
// the window lasted up to 12 ms unloaded, longer under load). A readiness check right after
// the start then reported the server "exited" with an empty log. An empty command line of a
// live process is therefore read again, briefly, before it counts as not ours.
func processIsNode(pid int, marker string, started uint64) bool {
	if pid <= 0 {
		return false
	}
	st, zombie := procStart(pid)
	if st == 0 || zombie {
		return false
	}
	if started != 0 {
		return st == started
	}
	if marker == "" {
		return false
	}
	for range cmdlineAttempts {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return false
		}
		if len(raw) > 0 {
			return argsName(raw, marker)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// cmdlineAttempts bounds the reads of an empty command line (5 ms apart).
const cmdlineAttempts = 40

func argsName(cmdline []byte, marker string) bool {
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if arg == marker || strings.HasSuffix(arg, "="+marker) {
			return true
		}
	}
	return false
}

// procStart returns a process's start time (clock ticks after boot, field 22 of
// /proc/PID/stat) and whether it is a zombie; 0 when there is no such process.
func procStart(pid int) (started uint64, zombie bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces and parentheses: the fields after it follow
	// the last ')'. They are "state ppid ...", starttime being the 20th.
	rest := string(raw)
	i := strings.LastIndexByte(rest, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(rest[i+1:])
	if len(f) < 20 {
		return 0, false
	}
	started, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return started, f[0] == "Z" || f[0] == "X"
}

// stopProcess sends sig to the node process, waits up to stopTimeout for it to exit, then
// kills it. SIGCONT follows sig so that a process frozen with SIGSTOP can act on it.
func stopProcess(ctx context.Context, n Node, sig syscall.Signal) error {
	if !n.running() {
		return nil
	}
	if err := syscall.Kill(n.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", n.Name, n.PID, err)
	}
	_ = syscall.Kill(n.PID, syscall.SIGCONT)
	if waitExit(ctx, n, stopTimeout) {
		return nil
	}
	if err := syscall.Kill(n.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", n.Name, n.PID, err)
	}
	if waitExit(context.WithoutCancel(ctx), n, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) still running after SIGKILL", n.Name, n.PID)
}

// waitExit polls until the node process is gone, at most timeout or until ctx ends.
func waitExit(ctx context.Context, n Node, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for n.running() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// waitReady polls probe until it succeeds, the node process dies, or readyTimeout passes.
// what names the condition for the error message.
func waitReady(ctx context.Context, n Node, what string, probe func(context.Context) error) error {
	deadline := time.Now().Add(readyTimeout)
	maxAttempts := int(readyTimeout/pollInterval) + 1
	var last error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		last = probeWhileAlive(ctx, n, probe)
		if last == nil {
			return nil
		}
		if n.PID != 0 && !n.running() {
			return fmt.Errorf("%s (pid %d) %w while waiting for %s: %v%s", n.Name, n.PID, errExited, what, last, logTail(n.LogFile))
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s on %s: %w", what, n.Name, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
	return fmt.Errorf("gave up after %s waiting for %s on %s: %v%s", readyTimeout, what, n.Name, last, logTail(n.LogFile))
}

// probeWhileAlive runs one probe, bounded by probeTimeout, and abandons it as soon as the
// node process exits: a probe that hangs on a port someone else holds must not delay the
// error.
func probeWhileAlive(ctx context.Context, n Node, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if n.PID != 0 && !n.running() {
					cancel()
					return
				}
			}
		}
	}()
	return probe(ctx)
}

// logTail returns the last lines of a log file, formatted to be appended to an error.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > logTailMaxRead {
		_, _ = f.Seek(st.Size()-logTailMaxRead, io.SeekStart)
	}
	raw, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("\nlast lines of %s:\n  %s", path, strings.Join(lines, "\n  "))
}

// logSize is the current size of a log, so that a later check reads only what came after.
func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// portTaken reports whether the log, from offset on, says a listen address was in use: the
// port picked as free was taken before the server bound it.
func portTaken(path string, offset int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	raw, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return bytes.Contains(bytes.ToLower(raw), []byte("address already in use"))
}

// freePorts returns n distinct loopback ports that were free a moment ago. All listeners are
// held until every port is picked, so the ports differ from each other.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// acceptsTCP reports whether addr takes a TCP connection within a short time.
func acceptsTCP(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
