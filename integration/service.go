package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// service is a server process a test starts (MinIO, Alertmanager): it is
// ready when an HTTP endpoint answers 200, and stopped by its PID.
type service struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startService starts cmd with its output in logPath and waits, at most 30
// seconds, for ready (a URL) to answer 200. On failure the process is
// stopped and the error carries its log.
func startService(ctx context.Context, name string, cmd *exec.Cmd, logPath, ready string) (*service, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &service{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx, ready); err != nil {
		s.Stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w: %s", err, b)
	}
	return s, nil
}

func (s *service) waitReady(ctx context.Context, url string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited while starting", s.name)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("%s not ready at %s within 30s", s.name, url)
}

// Stop ends the process (SIGTERM, then SIGKILL after 10 seconds).
func (s *service) Stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}
