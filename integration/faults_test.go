package integration

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// faultTestScene is a hosts lab with one database host per engine and two manager hosts.
func faultTestScene() faultScene {
	hosts := []Host{
		{Name: "mariadb-1", Addr: "198.18.0.11"},
		{Name: "mariadb-2", Addr: "198.18.0.12"},
		{Name: "postgres-1", Addr: "198.18.0.21"},
		{Name: "manager-1", Addr: "198.18.0.31"},
		{Name: "manager-2", Addr: "198.18.0.32"},
	}
	nodes := []Node{
		{Name: "mariadb-1", Kind: KindMariaDB, LabHost: "mariadb-1"},
		{Name: "mariadb-2", Kind: KindMariaDB, LabHost: "mariadb-2"},
		{Name: "postgres-1", Kind: KindPostgres, LabHost: "postgres-1"},
		{Name: "consul-1", Kind: KindConsul, LabHost: "manager-1"},
		{Name: "manager-1", Kind: KindManager, LabHost: "manager-1"},
		{Name: "consul-2", Kind: KindConsul, LabHost: "manager-2"},
		{Name: "manager-2", Kind: KindManager, LabHost: "manager-2"},
	}
	return faultScene{Hosts: hosts, Client: "198.18.0.1", Nodes: nodes}
}

// dropRules are the rules that cut a host from each address.
func dropRules(addrs ...string) [][]string {
	var rules [][]string
	for _, a := range addrs {
		rules = append(rules, []string{"-s", a, "-j", "DROP"}, []string{"-d", a, "-j", "DROP"})
	}
	return rules
}

func TestPlanFault(t *testing.T) {
	none := map[string][][]string{}
	cases := []struct {
		name    string
		fault   FaultSpec
		want    faultPlan
		wantErr string
	}{
		{name: "kill", fault: FaultSpec{Name: FaultKill, Host: "mariadb-1"},
			want: faultPlan{Rules: none, Kill: []string{"mariadb-1"}}},
		{name: "hang", fault: FaultSpec{Name: FaultHang, Host: "postgres-1"},
			want: faultPlan{Rules: none, Freeze: []string{"postgres-1"}}},
		{name: "host-down of a database host", fault: FaultSpec{Name: FaultHostDown, Host: "mariadb-2"},
			want: faultPlan{Rules: map[string][][]string{"mariadb-2": {{"-i", "eth0", "-j", "DROP"}, {"-o", "eth0", "-j", "DROP"}}},
				Freeze: []string{"mariadb-2"}}},
		{name: "host-down of a manager host freezes its Consul server and its manager", fault: FaultSpec{Name: FaultHostDown, Host: "manager-2"},
			want: faultPlan{Rules: map[string][][]string{"manager-2": {{"-i", "eth0", "-j", "DROP"}, {"-o", "eth0", "-j", "DROP"}}},
				Freeze: []string{"consul-2", "manager-2"}}},
		{name: "isolate keeps the clients", fault: FaultSpec{Name: FaultIsolate, Host: "mariadb-1"},
			want: faultPlan{Rules: map[string][][]string{"mariadb-1": dropRules("198.18.0.12", "198.18.0.21", "198.18.0.31", "198.18.0.32")}}},
		{name: "manager-cut, both ways", fault: FaultSpec{Name: FaultManagerCut, Host: "mariadb-1"},
			want: faultPlan{Rules: map[string][][]string{
				"mariadb-1": dropRules("198.18.0.31", "198.18.0.32"),
				"manager-1": dropRules("198.18.0.11"),
				"manager-2": dropRules("198.18.0.11"),
			}}},
		{name: "loss", fault: FaultSpec{Name: FaultLoss, Host: "mariadb-1", Percent: 5},
			want: faultPlan{Rules: map[string][][]string{"mariadb-1": {
				{"-i", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP"},
				{"-o", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP"},
			}}}},
		{name: "split with the clients on the primary's side", fault: FaultSpec{Name: FaultSplit,
			Sides: [2][]string{{"manager-1", "mariadb-2"}, {"mariadb-1", ClientsHost}}},
			want: faultPlan{Rules: map[string][][]string{
				"manager-1": dropRules("198.18.0.11", "198.18.0.1"),
				"mariadb-2": dropRules("198.18.0.11", "198.18.0.1"),
				"mariadb-1": dropRules("198.18.0.31", "198.18.0.12"),
			}}},
		{name: "consul-down of every manager host", fault: FaultSpec{Name: FaultConsulDown},
			want: faultPlan{Rules: none, Kill: []string{"consul-1", "consul-2"}}},
		{name: "consul-down of one manager host", fault: FaultSpec{Name: FaultConsulDown, Host: "manager-2"},
			want: faultPlan{Rules: none, Kill: []string{"consul-2"}}},
		{name: "manager-crash", fault: FaultSpec{Name: FaultManagerCrash, Host: "manager-1"},
			want: faultPlan{Rules: none, Kill: []string{"manager-1"}}},
		{name: "manager-crash at a step: whichever manager runs the recovery", fault: FaultSpec{Name: FaultManagerCrash, Step: "promote"},
			want: faultPlan{Rules: none, Restart: []string{"manager-1", "manager-2"}, TrapStep: "promote", TrapMode: trapCrash}},
		{name: "consul-down at a step, for a while", fault: FaultSpec{Name: FaultConsulDown, Step: "repoint:2", For: 5 * time.Second},
			want: faultPlan{Rules: none, Restart: []string{"consul-1", "consul-2"}, TrapStep: "repoint:2", TrapMode: trapPause}},
		{name: "consul-down at once, for a while", fault: FaultSpec{Name: FaultConsulDown, For: 5 * time.Second},
			want: faultPlan{Rules: none, Restart: []string{"consul-1", "consul-2"}}},
		{name: "manager-crash at a step names no host", fault: FaultSpec{Name: FaultManagerCrash, Host: "manager-1", Step: "promote"}, wantErr: "name no host"},
		{name: "a step the recovery has not", fault: FaultSpec{Name: FaultManagerCrash, Step: "reboot"}, wantErr: "want <action>"},
		{name: "a step on another fault", fault: FaultSpec{Name: FaultKill, Host: "mariadb-1", Step: "promote"}, wantErr: "for manager-crash and consul-down only"},
		{name: "a duration on another fault", fault: FaultSpec{Name: FaultKill, Host: "mariadb-1", For: time.Second}, wantErr: "for consul-down only"},

		{name: "unknown fault", fault: FaultSpec{Name: "flood", Host: "mariadb-1"}, wantErr: "unknown fault"},
		{name: "no host", fault: FaultSpec{Name: FaultHostDown}, wantErr: "name the target host"},
		{name: "unknown host", fault: FaultSpec{Name: FaultKill, Host: "mariadb-9"}, wantErr: `no host "mariadb-9"`},
		{name: "the clients are not a target", fault: FaultSpec{Name: FaultIsolate, Host: ClientsHost}, wantErr: "no host"},
		{name: "kill of a manager host", fault: FaultSpec{Name: FaultKill, Host: "manager-1"}, wantErr: "runs no database server"},
		{name: "manager-cut of a manager host", fault: FaultSpec{Name: FaultManagerCut, Host: "manager-1"}, wantErr: "is a manager host"},
		{name: "manager-crash of a database host", fault: FaultSpec{Name: FaultManagerCrash, Host: "mariadb-1"}, wantErr: "not a manager host"},
		{name: "consul-down of a database host", fault: FaultSpec{Name: FaultConsulDown, Host: "mariadb-1"}, wantErr: "not a manager host"},
		{name: "loss without a percent", fault: FaultSpec{Name: FaultLoss, Host: "mariadb-1"}, wantErr: "want 1 to 100"},
		{name: "loss over 100", fault: FaultSpec{Name: FaultLoss, Host: "mariadb-1", Percent: 101}, wantErr: "want 1 to 100"},
		{name: "a percent on another fault", fault: FaultSpec{Name: FaultKill, Host: "mariadb-1", Percent: 5}, wantErr: "for loss only"},
		{name: "sides on another fault", fault: FaultSpec{Name: FaultIsolate, Host: "mariadb-1", Sides: [2][]string{{"a"}, {"b"}}}, wantErr: "split only"},
		{name: "split with a host", fault: FaultSpec{Name: FaultSplit, Host: "mariadb-1", Sides: [2][]string{{"mariadb-1"}, {"mariadb-2"}}}, wantErr: "not a host"},
		{name: "split with an empty side", fault: FaultSpec{Name: FaultSplit, Sides: [2][]string{{"mariadb-1"}, nil}}, wantErr: "both sides"},
		{name: "split with a host on both sides", fault: FaultSpec{Name: FaultSplit, Sides: [2][]string{{"mariadb-1"}, {"mariadb-1", "mariadb-2"}}}, wantErr: "on both sides"},
		{name: "split with an unknown host", fault: FaultSpec{Name: FaultSplit, Sides: [2][]string{{"mariadb-1"}, {"nowhere"}}}, wantErr: `no host "nowhere"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planFault(faultTestScene(), tc.fault)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("planFault: %v; want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("planFault: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("planFault:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestFaultString(t *testing.T) {
	for f, want := range map[*FaultSpec]string{
		{Name: FaultHostDown, Host: "mariadb-1"}:                                        "host-down on mariadb-1",
		{Name: FaultLoss, Host: "postgres-2", Percent: 5}:                               "loss 5% on postgres-2",
		{Name: FaultConsulDown}:                                                         "consul-down",
		{Name: FaultManagerCrash, Step: "promote"}:                                      "manager-crash at promote",
		{Name: FaultSplit, Sides: [2][]string{{"manager-1"}, {"clients", "mariadb-1"}}}: "split manager-1|clients,mariadb-1",
	} {
		if got := f.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}
