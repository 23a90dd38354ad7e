package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Alertmanager is a Prometheus Alertmanager on loopback that routes every
// alert, one group per alert, to one webhook receiver, resolved ones too.
type Alertmanager struct {
	URL string // http://127.0.0.1:port, the base dbha posts to
	*service
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
	listen := net.JoinHostPort(labHost, strconv.Itoa(ports[0]))
	a := &Alertmanager{URL: "http://" + listen}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--cluster.listen-address=", "--log.level=warn")
	if a.service, err = startService(ctx, "alertmanager", cmd, filepath.Join(dir, "alertmanager.log"), a.URL+"/-/ready"); err != nil {
		return nil, err
	}
	return a, nil
}
