package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
)

// TestConsulTLS brings a loopback lab up with TLS (`dbha lab up --tls`)
// and proves, against the real agent: dbha's commands read and write
// Consul over HTTPS with the dbha.yaml the lab wrote; the agent serves no
// plain HTTP and refuses a TLS client without a certificate of the lab's
// CA; dbha refuses an agent whose certificate is not of consul.tls.ca_file
// or not valid for server_name, and says which file or name; each command
// uses the client certificate the files hold when it runs (expired,
// another CA's, a renewed one, each renamed into place); a restarted agent
// is waited for over HTTPS; Consul DNS stays plain.
func TestConsulTLS(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{TLS: true, Progress: testLog{t}})
	t.Cleanup(func() { purge(t, l) })
	files := l.ConsulTLSFiles()
	other, err := NewCerts(filepath.Join(t.TempDir(), "other"), "another CA")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the lab's certificates and dbha.yaml", func(t *testing.T) {
		checkConfig(t, l)
		cfg := labConfig(t, l)
		want := configTLS{files.CA, files.Cert, files.Key, ConsulServerName}
		if got := (configTLS{cfg.Consul.TLS.CAFile, cfg.Consul.TLS.CertFile, cfg.Consul.TLS.KeyFile, cfg.Consul.TLS.ServerName}); got != want {
			t.Errorf("consul.tls = %+v, want %+v", got, want)
		}
		checkMode(t, l.certsDir(), 0o700)
		entries, err := os.ReadDir(l.certsDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			checkMode(t, filepath.Join(l.certsDir(), e.Name()), 0o600)
		}
		if len(entries) != 5 { // ca.crt, consul.crt/.key, dbha.crt/.key
			t.Errorf("%s holds %d files, want 5", l.certsDir(), len(entries))
		}
	})

	t.Run("dbha commands over HTTPS", func(t *testing.T) {
		pauseResume(t, bin, l)
		c := consulClient(t, l)
		if _, ok, err := c.GetPause(ctx, mariadbCluster); err != nil || ok {
			t.Errorf("after resume, read over HTTPS: paused %v, %v", ok, err)
		}
	})

	t.Run("the agent serves no plain HTTP", func(t *testing.T) {
		resp, err := http.Get("http://" + l.ConsulHTTP + "/v1/kv/dbha/?recurse")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP to the agent: %s, want 400 (an HTTP request to an HTTPS server)", resp.Status)
			}
		}
		plain, err := consul.New(l.ConsulHTTP, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := plain.Ping(ctx); err == nil {
			t.Error("a plain HTTP client reached the agent")
		}
		capi, err := l.ConsulAPI()
		if err != nil {
			t.Fatal(err)
		}
		self, err := capi.Agent().Self()
		if err != nil {
			t.Fatal(err)
		}
		// The agent's own view: no HTTP listener at all, HTTPS on the lab's port.
		dc := self["DebugConfig"]
		if addrs, _ := dc["HTTPAddrs"].([]any); len(addrs) != 0 {
			t.Errorf("the agent listens for plain HTTP on %v", addrs)
		}
		if addrs, _ := dc["HTTPSAddrs"].([]any); len(addrs) != 1 || !strings.Contains(fmt.Sprint(addrs[0]), l.ConsulHTTP) {
			t.Errorf("the agent's HTTPS listeners %v, want %s", dc["HTTPSAddrs"], l.ConsulHTTP)
		}
	})

	t.Run("the agent refuses a client without a certificate", func(t *testing.T) {
		good, err := l.ConsulTLS()
		if err != nil {
			t.Fatal(err)
		}
		if err := agentAlert(l, good); err != nil && strings.Contains(err.Error(), "remote error") {
			t.Fatalf("with dbha's client certificate: %v, want no alert from the agent", err)
		}
		tc, err := tlsconfig.Client(tlsconfig.VerifyFull, tlsconfig.Files{CA: files.CA}, ConsulServerName)
		if err != nil {
			t.Fatal(err)
		}
		c, err := consul.NewTLS(l.ConsulHTTP, "", tc)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(ctx); err == nil {
			t.Error("a client without a certificate reached the agent")
		}
		err = agentAlert(l, tc)
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: certificate required") {
			t.Errorf("without a client certificate: %v, want the agent's alert", err)
		}
		t.Logf("without a client certificate: %v", err)
	})

	t.Run("dbha refuses an agent of another CA", func(t *testing.T) {
		r := dbhaCLIEnv(t, bin, l, []string{"DBHA_CONSUL_TLS_CA_FILE=" + other.CAFile()}, "pause", "--cluster", mariadbCluster)
		for _, want := range []string{l.ConsulHTTP, "not signed by a CA in ca_file " + other.CAFile()} {
			if r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("with another CA's file: want a failure naming %q, got %s", want, r)
			}
		}
		t.Logf("with another CA's file: %s", strings.TrimSpace(r.stderr))
	})

	t.Run("dbha refuses an agent whose certificate is for another name", func(t *testing.T) {
		r := dbhaCLIEnv(t, bin, l, []string{"DBHA_CONSUL_TLS_SERVER_NAME=server.dc2.consul"}, "pause", "--cluster", mariadbCluster)
		for _, want := range []string{l.ConsulHTTP, `not valid for the name "server.dc2.consul"`} {
			if r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("with server_name server.dc2.consul: want a failure naming %q, got %s", want, r)
			}
		}
		t.Logf("with server_name server.dc2.consul: %s", strings.TrimSpace(r.stderr))
	})

	t.Run("each command uses the client certificate the files hold", func(t *testing.T) {
		if l.certs == nil {
			t.Fatal("the lab's CA is not in memory")
		}
		// Expired: dbha refuses it itself, naming the file.
		now := time.Now()
		if _, err := l.certs.Issue("dbha", labca.Leaf{Name: "dbha", Client: true, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		r := dbhaCLI(t, bin, l, "pause", "--cluster", mariadbCluster)
		if want := "cert_file " + files.Cert + ": " + tlsconfig.ErrCertValidity.Error(); r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("with an expired client certificate: want a failure naming %q, got %s", want, r)
		}
		t.Logf("with an expired client certificate: %s", strings.TrimSpace(r.stderr))
		// Another CA's, renamed into place: the agent refuses it.
		o, err := other.Client("dbha")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range [][2]string{{o.Cert, files.Cert}, {o.Key, files.Key}} {
			if err := os.Rename(f[0], f[1]); err != nil {
				t.Fatal(err)
			}
		}
		if r := dbhaCLI(t, bin, l, "pause", "--cluster", mariadbCluster); r.code == 0 || !strings.Contains(r.stderr, "consul at "+l.ConsulHTTP) {
			t.Errorf("with another CA's client certificate: want a failure to reach the agent, got %s", r)
		} else {
			t.Logf("with another CA's client certificate: %s", strings.TrimSpace(r.stderr))
		}
		tc, err := tlsconfig.Client(tlsconfig.VerifyFull, files, ConsulServerName)
		if err != nil {
			t.Fatal(err)
		}
		err = agentAlert(l, tc)
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: ") {
			t.Errorf("with another CA's client certificate: %v, want the agent's alert", err)
		}
		t.Logf("the agent to another CA's client certificate: %v", err)
		// Renewed by the lab's CA: accepted.
		if _, err := l.certs.Client("dbha"); err != nil {
			t.Fatal(err)
		}
		pauseResume(t, bin, l)
	})

	t.Run("a restarted agent is waited for over HTTPS", func(t *testing.T) {
		if err := l.Stop(ctx, "consul"); err != nil {
			t.Fatal(err)
		}
		if err := l.Start(ctx, "consul"); err != nil {
			t.Fatal(err)
		}
		pauseResume(t, bin, l)
	})

	t.Run("consul DNS stays plain", func(t *testing.T) {
		if got := resolve(t, l, "consul"); len(got) != 1 {
			t.Errorf("consul.service.consul resolves to %v, want the agent", got)
		}
	})
}

// TestConsulTLSHostsLab brings a hosts lab up with TLS, three managers
// (three Consul servers in a Raft quorum over TLS RPC) and guards: the
// managers' `dbha run` publish each writer and the guards hold their
// leases through Consul servers that serve HTTPS only, and the operator's
// dbha reaches them from the root namespace.
func TestConsulTLSHostsLab(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{Hosts: true, Managers: 3, Guards: true, TLS: true, Binary: bin, Progress: testLog{t}})
	t.Cleanup(func() { purge(t, l) })
	for _, m := range l.nodesOfKind(KindManager) {
		checkManagerConfig(t, l, m.Name)
	}
	if !strings.HasSuffix(l.ConsulHTTP, fmt.Sprintf(":%d", hostConsulHTTPSPort)) {
		t.Errorf("consul at %s, want its HTTPS port %d", l.ConsulHTTP, hostConsulHTTPSPort)
	}
	c := consulClient(t, l)
	for _, kind := range []string{KindMariaDB, KindPostgres} {
		cluster, primary := guardCluster(kind+"-1"), addr(t, l, kind+"-1")
		// 90 s: three managers and six guards on two cores, beside the
		// whole suite, once took longer than eventually's 30 s.
		waitUntil(t, 90*time.Second, cluster+": every manager's observation, the writer published and the primary's lease held", func() error {
			// Each manager writes its observation through its own host's server.
			peers, err := c.Peers(ctx, cluster, "")
			if err != nil || len(peers) != len(l.nodesOfKind(KindManager)) {
				return fmt.Errorf("observations of %d managers (%v), want one of each", len(peers), err)
			}
			if w, err := c.Writer(ctx, cluster); err != nil || len(w) != 1 || w[0] != primary {
				return fmt.Errorf("writer %v (%v), want %s", w, err, primary)
			}
			v, session, ok, err := c.ReadLease(ctx, cluster, primary)
			if err != nil || !ok || session == "" || v.Renewals == 0 {
				return fmt.Errorf("lease of %s: %+v held by %q (%v, %v)", primary, v, session, ok, err)
			}
			return nil
		})
	}
	pauseResume(t, bin, l)
	plain, err := consul.New(l.ConsulHTTP, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Ping(ctx); err == nil {
		t.Error("a plain HTTP client reached the Consul server")
	}
}

// agentAlert opens a TLS connection to the lab's agent with tc and reads
// from it, without sending anything: the agent's alert when it refuses
// the client's certificate (TLS 1.3 sends it after the client's part of
// the handshake, so a client that writes first may see only a broken
// pipe or a reset); otherwise nil while the agent waits for a request,
// or EOF once it tires of waiting.
func agentAlert(l *Lab, tc *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.ConsulHTTP, tc)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// configTLS is consul.tls's four keys, to compare.
type configTLS struct{ ca, cert, key, serverName string }

// pauseResume pauses lab-mariadb with `dbha pause` and resumes it, each
// of which reads and writes Consul's KV.
func pauseResume(t *testing.T, bin string, l *Lab) {
	t.Helper()
	if r := dbhaCLI(t, bin, l, "pause", "--cluster", mariadbCluster, "--reason", "tls"); r.code != 0 || !strings.Contains(r.stdout, "paused by") {
		t.Fatalf("dbha pause: %s", r)
	}
	c := consulClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, ok, err := c.GetPause(ctx, mariadbCluster); err != nil || !ok || p.Reason != "tls" {
		t.Fatalf("the pause as Consul holds it: %+v, %v, %v", p, ok, err)
	}
	if r := dbhaCLI(t, bin, l, "resume", "--cluster", mariadbCluster); r.code != 0 || !strings.Contains(r.stdout, "resumed") {
		t.Fatalf("dbha resume: %s", r)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
	}
}

// TestConsulTLSLabFiles needs nothing running: without TLS a lab's agent
// serves plain HTTP and its clients have no TLS config; with it, the
// agent serves HTTPS only with the tls block, its clients verify in full
// for ConsulServerName with dbha's client certificate, and dbha.yaml's
// consul.tls names the same files.
func TestConsulTLSLabFiles(t *testing.T) {
	dir := t.TempDir()
	plain := &Lab{Dir: dir}
	if tc, err := plain.ConsulTLS(); tc != nil || err != nil || plain.ConsulScheme() != "http" || plain.consulTLSConfigText() != "" {
		t.Errorf("a lab without TLS: config %v (%v), scheme %s, yaml %q", tc, err, plain.ConsulScheme(), plain.consulTLSConfigText())
	}
	if args := plain.consulAPIArgs(Node{}, 8500); strings.Join(args, " ") != "-http-port=8500 -https-port=-1" {
		t.Errorf("a lab without TLS: agent flags %v", args)
	}
	l := &Lab{Dir: dir, TLS: true, Nodes: []Node{{Name: "consul", Kind: KindConsul, Host: labHost, DataDir: filepath.Join(dir, "consul", "data")}}}
	if err := os.MkdirAll(filepath.Join(dir, "consul"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.makeConsulTLS(); err != nil {
		t.Fatal(err)
	}
	tc, err := l.ConsulTLS()
	if err != nil {
		t.Fatal(err)
	}
	if tc.ServerName != ConsulServerName || tc.GetClientCertificate == nil || tc.VerifyConnection == nil || l.ConsulScheme() != "https" {
		t.Errorf("a TLS lab: server name %q, client certificate %v, verified %v, scheme %s",
			tc.ServerName, tc.GetClientCertificate != nil, tc.VerifyConnection != nil, l.ConsulScheme())
	}
	args := strings.Join(l.consulAPIArgs(l.Nodes[0], 8501), " ")
	if want := "-http-port=-1 -https-port=8501 -config-file=" + filepath.Join(dir, "consul", "tls.hcl"); args != want {
		t.Errorf("agent flags %q, want %q", args, want)
	}
	hcl, err := os.ReadFile(filepath.Join(dir, "consul", "tls.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ca_file = "` + filepath.Join(dir, "tls", "ca.crt") + `"`, `cert_file = "` + filepath.Join(dir, "tls", "consul.crt") + `"`,
		"verify_incoming = true", "verify_outgoing = true"} {
		if !strings.Contains(string(hcl), want) {
			t.Errorf("tls.hcl lacks %q:\n%s", want, hcl)
		}
	}
	yaml := l.consulTLSConfigText()
	for _, want := range []string{"ca_file: " + filepath.Join(dir, "tls", "ca.crt"), "cert_file: " + filepath.Join(dir, "tls", "dbha.crt"),
		"key_file: " + filepath.Join(dir, "tls", "dbha.key"), "server_name: " + ConsulServerName} {
		if !strings.Contains(yaml, want) {
			t.Errorf("consul.tls lacks %q:\n%s", want, yaml)
		}
	}
}
