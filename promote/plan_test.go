package promote

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

var update = flag.Bool("update", false, "rewrite the golden plan.txt files from the current output")

// scenario is a test case folder's scenario.json: a cluster in a compact
// form, and the request.
type scenario struct {
	Engine    topology.Engine `json:"engine"`
	Instances []struct {
		Addr       string   `json:"addr"`
		ServerID   uint32   `json:"server_id"`
		Dead       bool     `json:"dead"`
		ReadOnly   bool     `json:"read_only"`
		Source     string   `json:"source"`
		Current    string   `json:"current"`
		Received   string   `json:"received"`
		Applied    string   `json:"applied"`
		History    string   `json:"history"`
		SQLError   string   `json:"sql_error"`
		LagSeconds *float64 `json:"lag_seconds"`
	} `json:"instances"`
	Request struct {
		To       string `json:"to"`
		Force    bool   `json:"force"`
		Rules    Rules  `json:"rules"`
		LastSeen string `json:"last_seen"`
		Held     *struct {
			Position string `json:"position"`
			From     string `json:"from"`
		} `json:"held"`
		Avoid              []Avoid           `json:"avoid"`
		Inconsistent       map[string]string `json:"inconsistent"`
		ConsistencyUnknown string            `json:"consistency_unknown"`
	} `json:"request"`
}

// pos reads "0-1-5" (MariaDB), or "LSN@TL" such as "0/3000000@1" (PostgreSQL).
func pos(t *testing.T, e topology.Engine, s string) topology.Position {
	t.Helper()
	if s == "" {
		return topology.Position{}
	}
	if e == topology.Postgres {
		l, tl, _ := strings.Cut(s, "@")
		lsn, err := topology.ParseLSN(l)
		if err != nil {
			t.Fatal(err)
		}
		n := uint32(1)
		if tl == "2" {
			n = 2
		}
		return topology.PostgresAt(lsn, n)
	}
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (sc scenario) build(t *testing.T) (topology.Snapshot, Request) {
	var ins []topology.Instance
	for _, f := range sc.Instances {
		in := topology.Instance{Addr: f.Addr, ServerID: f.ServerID, Reachable: !f.Dead, ReadOnly: f.ReadOnly || f.Source != ""}
		if f.Dead {
			in.Error = "connection refused"
		}
		in.Current, in.Received, in.Applied = pos(t, sc.Engine, f.Current), pos(t, sc.Engine, f.Received), pos(t, sc.Engine, f.Applied)
		if in.Current.IsZero() {
			in.Current = in.Applied
		}
		in.History = pos(t, sc.Engine, f.History)
		if f.Source != "" {
			lag := f.LagSeconds
			in.Replication = &topology.Replication{Source: f.Source, IORunning: !f.Dead, SQLRunning: f.SQLError == "",
				IOState: "Connecting", SQLState: "Yes", SQLError: f.SQLError, SecondsBehind: lag}
			if f.SQLError != "" {
				in.Replication.SQLState = "No"
			}
		}
		if f.Dead && f.Source != "" {
			in.Replication = nil
		}
		ins = append(ins, in)
	}
	s := topology.Build("c1", sc.Engine, ins, time.Unix(0, 0))
	r := Request{To: sc.Request.To, Force: sc.Request.Force, Rules: sc.Request.Rules, LastSeen: pos(t, sc.Engine, sc.Request.LastSeen),
		Avoid: sc.Request.Avoid, Inconsistent: sc.Request.Inconsistent, ConsistencyUnknown: sc.Request.ConsistencyUnknown}
	if h := sc.Request.Held; h != nil {
		r.Held = &Held{Position: pos(t, sc.Engine, h.Position), From: h.From}
	}
	return s, r
}

// TestScenarios plans every testdata/<case>/scenario.json and compares the
// text plan with plan.txt (or the error with error.txt). Run with -update to
// rewrite the golden files after a deliberate change, and read the diff.
func TestScenarios(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/scenario.json")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range dirs {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var sc scenario
			if err := json.Unmarshal(b, &sc); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			s, r := sc.build(t)
			p, err := MakePlan(s, r)
			var got, golden string
			if err != nil {
				got, golden = err.Error()+"\n", filepath.Join(dir, "error.txt")
			} else {
				var out strings.Builder
				if err := WriteText(&out, p); err != nil {
					t.Fatal(err)
				}
				got, golden = out.String(), filepath.Join(dir, "plan.txt")
			}
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (got:\n%s)", err, got)
			}
			if got != string(want) {
				t.Fatalf("%s differs.\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
