package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Alertmanager is a Prometheus Alertmanager on loopback that routes every
// alert, one group per alert, to one webhook receiver, resolved ones too.
type Alertmanager struct {
	URL    string // http://127.0.0.1:port, the base dbha posts to
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartAlertmanager starts Alertmanager with its state under dir, sending
// notifications to receiver (a URL) without waiting to group them.
func StartAlertmanager(ctx context.Context, dir, receiver string) (*Alertmanager, error) {
	bin, err := lookBinary("alertmanager")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`route:
  receiver: hook
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, receiver)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "alertmanager.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	listen := net.JoinHostPort(labHost, strconv.Itoa(ports[0]))
	a := &Alertmanager{URL: "http://" + listen, exited: make(chan struct{})}
	a.cmd = exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--cluster.listen-address=", "--log.level=warn")
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start alertmanager: %w", err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(a.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		select {
		case <-a.exited:
			b, _ := os.ReadFile(filepath.Join(dir, "alertmanager.log"))
			return nil, fmt.Errorf("alertmanager exited while starting: %s", b)
		case <-ctx.Done():
			a.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.Stop()
			return nil, fmt.Errorf("alertmanager on %s not ready within 30s", listen)
		}
	}
}

// Stop ends Alertmanager (SIGTERM, then SIGKILL after 10 seconds).
func (a *Alertmanager) Stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
	}
}
