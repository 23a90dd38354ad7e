package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestHAProxyFollowsTheWriter starts HAProxy (Debian's) on
// docs/haproxy.cfg, the lab's names put in for the example's, with its
// checks against `dbha run`'s /health/ endpoints: a client of the writer
// port reaches the primary, one of the readers port a replica, and after
// the primary is killed the writer port reaches the new primary.
func TestHAProxyFollowsTheWriter(t *testing.T) {
	bin := dbhaBinary(t)
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (make deps installs it): %v", err)
	}
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	api, writerPort, readerPort := ports[0], ports[1], ports[2]
	token := filepath.Join(t.TempDir(), "api.token")
	if err := os.WriteFile(token, []byte("not-for-health-checks\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startDbhaRun(t, bin, l, "balancer", fmt.Sprintf("DBHA_HTTP_LISTEN=127.0.0.1:%d", api), "DBHA_HTTP_TOKEN_FILE="+token)
	first := addr(t, l, "mariadb-1")
	waitPublishedWriter(t, c, mariadbCluster, first)

	example, err := os.ReadFile(filepath.Join(moduleRoot(), "docs", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(example)
	for _, r := range []struct{ from, to string }{
		{"db1.internal:3306", addr(t, l, "mariadb-1")},
		{"db2.internal:3306", addr(t, l, "mariadb-2")},
		{"db3.internal:3306", addr(t, l, "mariadb-3")},
		{"/health/shop/", "/health/" + mariadbCluster + "/"},
		{"addr dbha.internal port 7070", fmt.Sprintf("addr 127.0.0.1 port %d", api)},
		{"bind 127.0.0.1:3307", fmt.Sprintf("bind 127.0.0.1:%d", writerPort)},
		{"bind 127.0.0.1:3308", fmt.Sprintf("bind 127.0.0.1:%d", readerPort)},
	} {
		if !strings.Contains(text, r.from) {
			t.Fatalf("docs/haproxy.cfg no longer holds %q", r.from)
		}
		text = strings.ReplaceAll(text, r.from, r.to)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(haproxy, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	hp := exec.Command(haproxy, "-db", "-f", cfg)
	hp.Stdout, hp.Stderr = logf, logf
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hp.Process.Signal(syscall.SIGTERM)
		hp.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("haproxy log:\n%s", b)
		}
	})

	through := func(port int) (int, bool, error) {
		pw, err := readPassword(l.Secret("mariadb-admin"))
		if err != nil {
			return 0, false, err
		}
		mc := mysql.NewConfig()
		mc.User, mc.Passwd, mc.Net, mc.Addr, mc.Timeout = "admin", pw, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second
		connector, err := mysql.NewConnector(mc)
		if err != nil {
			return 0, false, err
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var p int
		var ro bool
		err = db.QueryRowContext(ctx, "SELECT @@port, @@read_only").Scan(&p, &ro)
		return p, ro, err
	}
	port := func(a string) int {
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		return n
	}
	reaches := func(what string, listen, want int) {
		t.Helper()
		waitUntil(t, 30*time.Second, what, func() error {
			got, ro, err := through(listen)
			if err != nil {
				return err
			}
			if got != want || ro {
				return fmt.Errorf("reached port %d (read_only %v), want %d writable", got, ro, want)
			}
			return nil
		})
	}
	reaches("the writer port to reach the primary", writerPort, port(first))
	waitUntil(t, 30*time.Second, "the readers port to reach a replica", func() error {
		got, ro, err := through(readerPort)
		if err != nil {
			return err
		}
		if got == port(first) || !ro {
			return fmt.Errorf("reached port %d (read_only %v), want a read-only replica", got, ro)
		}
		return nil
	})

	killTree(t, l, "mariadb-1")
	rec := waitRecoveryOf(t, bin, l, mariadbCluster, first, 60*time.Second)
	reaches("the writer port to reach the new primary "+rec.Plan.NewPrimary, writerPort, port(rec.Plan.NewPrimary))
}
