package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/promote"
)

// TestManagerCrashOnHosts: on a lab of hosts with three managers, the
// primary's host goes down and the manager that runs the recovery is
// killed (-9, by the lab's step trap) just before it moves the writer
// endpoint — after it promoted the new primary, which is writable while
// the endpoint still names the dead one. Another manager must take the
// cluster's lock, resume the recorded recovery and finish it: writes reach
// the new primary, exactly one server is writable, the writer endpoint
// names it, no acknowledged write is lost and no two servers took writes
// at once (drill.Analyze over the writers' history).
func TestManagerCrashOnHosts(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{Hosts: true, Managers: 3, Binary: bin, Progress: testLog{t}})
	t.Cleanup(func() { purge(t, l) })

	const step = promote.ActMoveWriter
	sum := hostsDrill(ctx, t, bin, l, mariadbCluster, "--fault", "manager-crash", "--step", string(step))
	run := onlyRun(t, sum)
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range l.nodesOfKind(KindManager) {
				log, _ := os.ReadFile(m.LogFile)
				t.Logf("%s log, last 6 KiB:\n%s", m.Name, lastBytes(log, 6<<10))
			}
		}
	})
	if run.Trap == "" {
		t.Fatalf("the step trap did not fire: %s", run.Error)
	}
	if run.NewPrimary == "" || run.NewPrimary == run.OldPrimary {
		t.Fatalf("no write reached a new primary: %s -> %q: %s", run.OldPrimary, run.NewPrimary, run.Error)
	}
	if !run.Recovered || !run.AfterHeal.Whole {
		t.Errorf("not whole after the heal: %s (%s)", run.AfterHeal.Summary(), run.Error)
	}
	if len(run.AfterHeal.Writable) != 1 {
		t.Errorf("writable servers after the heal: %v, want exactly one", run.AfterHeal.Writable)
	}
	// Recovered means the drill saw the writer endpoint name the healthy
	// cluster's primary; ask once more, as a client does.
	if w, err := writerByDNS(ctx, l); err != nil || len(run.AfterHeal.Writable) != 1 || w != run.AfterHeal.Writable[0] {
		t.Errorf("the writer endpoint names %q (%v), the writable server is %v", w, err, run.AfterHeal.Writable)
	}
	if !run.LostChecked || run.LostRows != 0 {
		t.Errorf("acknowledged writes lost: %d (checked %v), first %v", run.LostRows, run.LostChecked, firstN(run.Lost, 10))
	}
	if run.TwoWriters.Happened() {
		t.Errorf("two writers: %+v", run.TwoWriters)
	}

	// The crashed manager wrote the trap's note; the recovery's done record
	// is in the audit file of another manager.
	crashed, finishers := crashedAndFinishers(t, l, step)
	if crashed == "" {
		t.Fatal("no manager's log says the step trap fired")
	}
	if len(finishers) == 0 {
		t.Fatal("no manager's audit file holds the finished recovery")
	}
	for _, m := range finishers {
		if m == crashed {
			t.Errorf("the recovery was finished by %s, the manager that crashed in it (finished by %v)", m, finishers)
		}
	}
	t.Logf("manager-crash at %s: %s crashed, %v finished the recovery; RTO (under load) %.3fs; trap: %s",
		step, crashed, finishers, run.RTOSeconds, strings.TrimSpace(run.Trap))
}

// crashedAndFinishers names the manager whose log says the step trap
// fired at step, and the managers whose audit file holds a done, not
// aborted, record of the cluster's latest recovery.
func crashedAndFinishers(t *testing.T, l *Lab, step promote.Action) (crashed string, finishers []string) {
	t.Helper()
	var latest string
	byManager := map[string][]promote.Record{}
	for _, m := range l.nodesOfKind(KindManager) {
		log, _ := os.ReadFile(m.LogFile)
		if bytes.Contains(log, []byte("step trap")) && bytes.Contains(log, []byte(`"action":"`+string(step)+`"`)) {
			crashed = m.Name
		}
		f, err := os.Open(filepath.Join(l.Dir, m.Name, "state", "audit.jsonl"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r promote.Record
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Cluster == mariadbCluster {
				byManager[m.Name] = append(byManager[m.Name], r)
				if r.ID > latest {
					latest = r.ID
				}
			}
		}
		f.Close()
	}
	for m, recs := range byManager {
		for _, r := range recs {
			if r.ID == latest && r.Done && !r.Aborted {
				finishers = append(finishers, m)
				break
			}
		}
	}
	return crashed, finishers
}

// writerByDNS resolves the MariaDB cluster's writer endpoint through the
// lab's Consul DNS, as the drill's writers do.
func writerByDNS(ctx context.Context, l *Lab) (string, error) {
	l.mu.Lock()
	dns := l.ConsulDNS
	l.mu.Unlock()
	addrs, err := consul.Resolve(ctx, dns, consul.WriterService(mariadbCluster))
	if err != nil {
		return "", err
	}
	if len(addrs) != 1 {
		return "", fmt.Errorf("the writer endpoint names %v", addrs)
	}
	return addrs[0], nil
}

func firstN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}
