package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// upConsul starts a single-node Consul dev agent (in-memory state, its own server) on free
// loopback ports, or in a hosts lab a Consul server on each manager host, and waits for a
// leader.
func (l *Lab) upConsul(ctx context.Context) error {
	start := time.Now()
	err := inParallel(l.consulNodes(), func(n Node) error { return l.startFresh(ctx, n.Name, func(Node) error { return nil }) })
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	l.progressf("consul: leader elected, %s on %s, DNS on %s (%.1fs)", strings.ToUpper(l.ConsulScheme()), l.ConsulHTTP, l.ConsulDNS, time.Since(start).Seconds())
	return nil
}

// consulLaunch runs the agent as the current user. Every port is given explicitly because dev
// mode otherwise takes fixed ones (8500, 8600, 8300-8302, 8502, 8503); gRPC is not needed and
// is switched off. -data-dir marks the process in /proc/PID/cmdline.
func (l *Lab) consulLaunch(n Node) (launch, error) {
	if l.Net != nil {
		return l.consulServerLaunch(n)
	}
	bin, err := lookBinary("consul")
	if err != nil {
		return launch{}, err
	}
	l.mu.Lock()
	p := l.Consul
	l.mu.Unlock()
	port := func(flag string, v int) string { return "-" + flag + "=" + strconv.Itoa(v) }
	args := []string{"agent", "-dev", "-node=dbha-lab", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-data-dir=" + n.DataDir, port("dns-port", p.DNS),
		port("serf-lan-port", p.SerfLAN), port("serf-wan-port", p.SerfWAN), port("server-port", p.Server),
		"-grpc-port=-1", "-grpc-tls-port=-1"}
	return launch{
		path:    bin,
		args:    append(args, l.consulAPIArgs(n, p.HTTP)...),
		env:     []string{"HOME=" + n.DataDir},
		logFile: n.LogFile,
	}, nil
}

// consulReady succeeds once /v1/status/leader names a leader.
func (l *Lab) consulReady(n Node) func(context.Context) error {
	return func(ctx context.Context) error {
		resp, err := l.getConsul(ctx, n.Addr(), "/v1/status/leader")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var leader string
		if err := json.NewDecoder(resp.Body).Decode(&leader); err != nil {
			return fmt.Errorf("GET /v1/status/leader: %w", err)
		}
		if leader == "" {
			return errors.New("no leader yet")
		}
		return nil
	}
}
