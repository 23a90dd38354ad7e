package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// make demo, as a newcomer runs it: the lab comes up, dbha run serves its
// console in the background, the drill's failover is left to it and its
// report kept; the console shows the recovery and the drill, and takes a
// backup when asked; make demo-down stops everything it started.
func TestDemo(t *testing.T) {
	bin := dbhaBinary(t)
	dir := labDir(t)
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(ports[0])
	env := append(os.Environ(), "DBHA="+bin, "LAB_DIR="+dir, "DEMO_LISTEN="+listen)
	script := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "../scripts/demo.sh", args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	downed := false
	t.Cleanup(func() {
		if downed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := script(ctx, "down"); err != nil {
			t.Errorf("demo.sh down: %v\n%s", err, out)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := script(ctx)
	t.Logf("demo.sh took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s\n%s", err, out, tail(filepath.Join(dir, "demo-run.log"), 40))
	}
	operator, viewer := readToken(t, dir, ConsoleOperatorSecret), readToken(t, dir, ConsoleViewerSecret)
	for _, want := range []string{"The console: http://" + listen + "/console/", "operator token (may act):  " + operator,
		"viewer token (reads only): " + viewer, "watched by dbha run", "1 of 1 run(s) made, 0 failed",
		// Whatever an asynchronous kill lost (the demo says so), never two
		// writers, and whole after the heal.
		"two writers in 0 run(s)", "whole after heal 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	pidText, err := os.ReadFile(filepath.Join(dir, "demo-run.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	// The drill went through the daemon: it recorded the failover.
	if log := tail(filepath.Join(dir, "demo-run.log"), 400); !strings.Contains(log, `"msg":"recovered"`) {
		t.Errorf("dbha run recorded no recovery:\n%s", log)
	}

	// The viewer sees the recovery and the drill's report.
	base := "http://" + listen
	page := consoleGet(t, signInHTTP(t, base, viewer), base+"/console/cluster/"+mariadbCluster)
	for _, want := range []string{"failover (DeadPrimary)", "Drills", "kill, async, loopback lab, 8 writers: 1 of 1 runs", "RTO median", "Actions need the operator role"} {
		if !strings.Contains(page, want) {
			t.Errorf("the viewer's cluster page lacks %q:\n%s", want, page)
		}
	}

	// The operator starts a backup; the page says it runs, then lists it
	// verified.
	op := signInHTTP(t, base, operator)
	page = consoleGet(t, op, base+"/console/cluster/"+mariadbCluster)
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "Start a backup") {
		t.Fatalf("the operator's page offers no backup:\n%s", page)
	}
	resp, err := op.PostForm(base+"/console/cluster/"+mariadbCluster+"/backup", url.Values{"csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "A backup started by console operator") {
		t.Fatalf("start a backup: %s\n%s", resp.Status, body)
	}
	waitUntil(t, 2*time.Minute, "the backup to be listed verified", func() error {
		page := consoleGet(t, op, base+"/console/cluster/"+mariadbCluster)
		if strings.Contains(page, "A backup started by") {
			return fmt.Errorf("still running")
		}
		i := strings.Index(page, "<h2>Backups</h2>")
		if i < 0 || !regexp.MustCompile(`<td>\s*yes\s*</td>|>yes<`).MatchString(page[i:]) {
			return fmt.Errorf("no verified backup on the page:\n%s", page)
		}
		return nil
	})

	// make demo-down stops dbha run and the lab, and removes the lab.
	downed = true
	ctx, cancel = context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if out, err := script(ctx, "down"); err != nil || !strings.Contains(out, fmt.Sprintf("dbha run (pid %d) stopped", pid)) {
		t.Fatalf("demo.sh down: %v\n%s", err, out)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("dbha run (pid %d) still runs after demo-down", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the lab directory after demo-down: %v", err)
	}
}

func readToken(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "secrets", name+".pw"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// signInHTTP signs in to the console with token and returns a client that
// holds the session cookie and follows redirects.
func signInHTTP(t *testing.T, base, token string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.PostForm(base+"/console/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/" {
		t.Fatalf("sign in: %s, at %s", resp.Status, resp.Request.URL)
	}
	return c
}

func consoleGet(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", u, resp.Status, err)
	}
	return string(b)
}

// tail is the last n lines of a file, or why it cannot be read.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
