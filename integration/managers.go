package integration

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// The manager hosts of a hosts lab: each runs a Consul server (consul-i: real server mode,
// data on disk, a Raft quorum when there are three) and a dbha manager (manager-i: `dbha run`
// with DIR/manager-i.yaml, which talks to its own host's Consul server).

// managerTokenSecret is the bearer token of the managers' HTTP endpoints.
const managerTokenSecret = "manager-http"

// managerConfigPath is DIR/manager-i.yaml.
func (l *Lab) managerConfigPath(m Node) string { return filepath.Join(l.Dir, m.Name+".yaml") }

// consulNodes are the lab's Consul agents: "consul", or consul-1.. in a hosts lab.
func (l *Lab) consulNodes() []Node { return l.nodesOfKind(KindConsul) }

// consulServerLaunch runs consul-i on its manager host: a server that expects every manager
// host's server (-bootstrap-expect) and joins them until it succeeds. raft_multiplier = 1 is
// Consul's production timing (its default, 5, is for small machines), so a leader is lost
// and elected again in seconds, as on real servers. It binds its host's address only, on
// Consul's usual ports.
func (l *Lab) consulServerLaunch(n Node) (launch, error) {
	bin, err := lookBinary("consul")
	if err != nil {
		return launch{}, err
	}
	servers := l.consulNodes()
	args := []string{"agent", "-server", "-bootstrap-expect=" + strconv.Itoa(len(servers)),
		"-node=" + n.Name, "-bind=" + n.Host, "-advertise=" + n.Host, "-client=" + n.Host,
		"-data-dir=" + n.DataDir, "-disable-host-node-id", "-retry-interval=1s",
		"-hcl=performance { raft_multiplier = 1 }",
		"-grpc-port=-1", "-grpc-tls-port=-1"}
	args = append(args, l.consulAPIArgs(n, n.Port)...)
	for _, s := range servers {
		if s.Name != n.Name {
			args = append(args, "-retry-join="+s.Host)
		}
	}
	return launch{path: bin, args: args, env: []string{"HOME=" + n.DataDir}, logFile: n.LogFile, netns: l.netnsOf(n)}, nil
}

// managerLaunch runs `dbha run` with the manager's config, as the current user (root: it
// runs `dbha lab rejoin`, which enters other hosts' namespaces), in its host's namespace.
func (l *Lab) managerLaunch(n Node) (launch, error) {
	if l.Binary == "" {
		return launch{}, fmt.Errorf("%s: the lab has no dbha binary to run", n.Name)
	}
	// The step trap (a testing hook) lets a fault strike when a recovery reaches a step.
	return launch{path: l.Binary, args: []string{"--config", n.marker(), "run"}, env: []string{StepTrapEnv + "=" + l.trapPath()},
		logFile: n.LogFile, netns: l.netnsOf(n)}, nil
}

// managerReady succeeds once the manager's HTTP endpoint answers /healthz: it has loaded its
// config, reached its Consul server and started watching.
func (l *Lab) managerReady(n Node) func(context.Context) error {
	return func(ctx context.Context) error {
		resp, err := getOK(ctx, "http://"+n.Addr()+"/healthz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
}

// getOK is a GET that succeeds only with 200 OK; the caller closes the body.
func getOK(ctx context.Context, url string) (*http.Response, error) {
	return getOKWith(ctx, http.DefaultClient, url)
}

// getOKWith is getOK with client.
func getOKWith(ctx context.Context, client *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp, nil
}

// upManagers starts every manager at once, once the clusters, Consul and the config files
// are ready.
func (l *Lab) upManagers(ctx context.Context) error {
	managers := l.nodesOfKind(KindManager)
	if len(managers) == 0 {
		return nil
	}
	start := time.Now()
	err := inParallel(managers, func(n Node) error { return l.startFresh(ctx, n.Name, func(Node) error { return nil }) })
	if err != nil {
		return fmt.Errorf("managers: %w", err)
	}
	l.progressf("managers: %d running `dbha run` (%.1fs)", len(managers), time.Since(start).Seconds())
	return nil
}
