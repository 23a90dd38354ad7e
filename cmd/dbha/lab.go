package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/integration"
)

// defaultLabDir is where `dbha lab` keeps its servers unless --dir says.
const defaultLabDir = "lab"

func newLabCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a local lab of real MariaDB, PostgreSQL and Consul servers",
		Long: `lab starts, as background processes on loopback ports under one directory:
a MariaDB primary with two GTID replicas (cluster lab-mariadb), a PostgreSQL 15
primary with two streaming standbys (cluster lab-postgres) and a Consul dev
agent, and writes DIR/dbha.yaml ready for every other command:

    dbha lab up && dbha --config lab/dbha.yaml topology

With --hosts (root only), every server runs on a host of its own: a network
namespace on a bridge the lab creates, with an address from 198.18.0.0/15, and
--managers N (1 to 3) manager hosts each run a Consul server and a dbha manager
(dbha run). The root namespace is the clients' host. "dbha lab fault" then cuts,
freezes or kills hosts, and "dbha lab heal" undoes every fault. --guards adds
dbha guard beside every database server, in its host, and turns the write
leases on. --tls makes a private CA in DIR/tls and runs Consul's HTTP API over
HTTPS only, for clients with a certificate of that CA, as dbha.yaml's
consul.tls gives one to dbha.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultLabDir, "lab directory")
	var lossless, hosts, guards, vip, withTLS bool
	var managers int
	var console string

	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (a no-op when it already runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			self, _ := os.Executable()
			l, running, err := integration.Up(cmd.Context(), integration.Options{Dir: dir, Progress: out, Binary: self, Lossless: lossless,
				Hosts: hosts, Managers: managers, Guards: guards, VIP: vip, Console: console, TLS: withTLS})
			if err != nil {
				return err
			}
			if running {
				fmt.Fprintf(out, "lab in %s is already running; nothing started\n", l.Dir)
			}
			fmt.Fprintf(out, "configuration: %s\ntry: dbha --config %s topology\n", l.ConfigPath, l.ConfigPath)
			return nil
		},
	}

	up.Flags().BoolVar(&hosts, "hosts", false, "a hosts lab: each server, Consul server and manager in a network namespace of its own (needs root)")
	up.Flags().IntVar(&managers, "managers", 0, "manager hosts of a hosts lab, each with a Consul server and `dbha run` (1 to 3; default 1)")
	up.Flags().BoolVar(&guards, "guards", false, "a hosts lab: `dbha guard` beside each database server, in its host, and write leases on (promotion.lease_ttl 2s)")
	up.Flags().BoolVar(&vip, "vip", false, "a hosts lab with guards: each cluster gets a writer address (.250 lab-mariadb, .251 lab-postgres) that its primary's guard holds")
	up.Flags().StringVar(&console, "console", "", "the loopback lab: dbha.yaml gets dbha run's console on this host:port, with operator and viewer tokens (DIR/secrets/console-*.pw) and a nightly backup schedule (make demo)")
	up.Flags().BoolVar(&withTLS, "tls", false, "a private CA in DIR/tls; the database servers take remote connections over TLS only (MariaDB REQUIRE SSL, PostgreSQL hostssl), their replicas' links verified; Consul's HTTP API over HTTPS only, for clients with a certificate of that CA; dbha.yaml gets each cluster's tls (verify-full) and consul.tls (Consul's DNS stays plain)")
	up.Flags().BoolVar(&lossless, "lossless", false, "commits wait until dbha's stream or a replica holds them, without falling back (MariaDB semi-sync with wait_no_slave and no timeout, AFTER_SYNC; PostgreSQL synchronous_standby_names = 'ANY 1 (\"dbha\", <standbys>)'): an isolated primary blocks its commits")

	var purge bool
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the servers the lab started (--purge also removes DIR)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadLab(dir)
			if err != nil {
				return err
			}
			if err := l.Down(cmd.Context(), purge); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab in %s stopped%s\n", l.Dir, map[bool]string{true: " and removed"}[purge])
			return nil
		},
	}
	down.Flags().BoolVar(&purge, "purge", false, "remove the lab directory after stopping")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's servers and whether they run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadLab(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if l.Net != nil {
				fmt.Fprintf(out, "hosts lab: bridge %s, subnet %s, clients (this namespace) %s\n", l.Net.Bridge, l.Net.Subnet(), l.Net.Client)
				for _, f := range l.Faults {
					fmt.Fprintf(out, "fault: %s\n", f)
				}
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tKIND\tHOST\tADDRESS\tPID\tSTATE")
			down := 0
			for _, st := range l.Status(cmd.Context()) {
				state := "running"
				switch {
				case st.Frozen:
					state, down = "frozen", down+1
				case st.Alive && !st.Running:
					state, down = "unreachable", down+1 // e.g. cut off by a fault
				case !st.Running:
					state, down = "stopped", down+1
				}
				host := st.Host
				if host == "" {
					host = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", st.Name, st.Kind, host, st.Addr, st.PID, state)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if down > 0 {
				return &exitError{code: exitProblems, err: errProblemsFound}
			}
			return nil
		},
	}
	node := func(use, short string, act func(cmd *cobra.Command, l *integration.Lab, name string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " NODE", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				l, err := loadLab(dir)
				if err != nil {
					return err
				}
				name := args[0]
				if n, err := l.NodeByAddr(name); err == nil {
					name = n.Name // commands may name a node by host:port
				}
				if _, err := l.Node(name); err != nil {
					return usageError(err)
				}
				return act(cmd, l, name)
			},
		}
	}
	start := node("start", "Start a stopped node of the lab again", func(cmd *cobra.Command, l *integration.Lab, name string) error {
		return l.Start(cmd.Context(), name)
	})
	stop := node("stop", "Stop one node of the lab cleanly", func(cmd *cobra.Command, l *integration.Lab, name string) error {
		return l.Stop(cmd.Context(), name)
	})
	kill := node("kill", "Kill one node of the lab with SIGKILL (a crash, for drills)", func(_ *cobra.Command, l *integration.Lab, name string) error {
		return l.Signal(name, syscall.SIGKILL)
	})
	var primary string
	rejoin := node("rejoin", "Make a PostgreSQL node that was a primary a standby of --primary (pg_rewind)", func(cmd *cobra.Command, l *integration.Lab, name string) error {
		if primary == "" {
			return usageError(errors.New("--primary is required"))
		}
		return l.Rejoin(cmd.Context(), name, primary)
	})
	rejoin.Flags().StringVar(&primary, "primary", "", "the new primary: a node name or host:port")
	cmd.AddCommand(up, down, status, start, stop, kill, rejoin, newLabOnHostCmd(&dir), newLabFaultCmd(&dir), newLabHealCmd(&dir))
	return cmd
}

func newLabFaultCmd(dir *string) *cobra.Command {
	var f integration.FaultSpec
	var sides string
	cmd := &cobra.Command{
		Use:   "fault NAME",
		Short: "Inject a fault into a hosts lab (undone by `dbha lab heal`)",
		Long: `fault injects one fault into a hosts lab; faults stack until "dbha lab heal".

  kill --host H          SIGKILL of H's database server
  host-down --host H     H's processes frozen and every packet of H dropped (no RST, no FIN)
  isolate --host H       H cut from every other host, not from the clients
  split --sides A,B|C,D  hosts A,B cut from C,D ("clients" names this namespace)
  manager-cut --host H   H cut from the manager hosts only
  hang --host H          H's database server frozen (SIGSTOP)
  loss --host H --percent P   P% of H's packets dropped, both ways
  consul-down [--host M] the Consul server(s) killed (of manager host M, or all)
  manager-crash --host M SIGKILL of the manager on manager host M`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := loadLab(*dir)
			if err != nil {
				return err
			}
			f.Name = args[0]
			if sides != "" {
				a, b, ok := strings.Cut(sides, "|")
				if !ok {
					return usageError(fmt.Errorf("--sides %q: want A,B|C,D", sides))
				}
				f.Sides = [2][]string{strings.Split(a, ","), strings.Split(b, ",")}
			}
			if err := l.Fault(cmd.Context(), f); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fault %s injected; undo with: dbha lab heal --dir %s\n", f, l.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.Host, "host", "", "the target host (e.g. mariadb-1, manager-1)")
	cmd.Flags().StringVar(&sides, "sides", "", "split: the hosts of each side, A,B|C,D")
	cmd.Flags().IntVar(&f.Percent, "percent", 0, "loss: the share of packets dropped, 1 to 100")
	return cmd
}

func newLabHealCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "heal",
		Short: "Undo every fault injected into a hosts lab",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadLab(*dir)
			if err != nil {
				return err
			}
			n := len(l.Faults)
			if err := l.Heal(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "healed %d fault(s) recorded in %s\n", n, l.Dir)
			return nil
		},
	}
}

func loadLab(dir string) (*integration.Lab, error) {
	l, err := integration.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageError(fmt.Errorf("no lab in %s (start one with `dbha lab up --dir %s`)", dir, dir))
	}
	return l, err
}

// newLabOnHostCmd is the lab's ssh: the backup.remote_command of a lab's
// clusters, which runs a command line on the host that holds a server's
// files.
func newLabOnHostCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "on-host ADDRESS COMMAND-LINE",
		Short: "Run a shell command line on the lab host with this address, as ssh would",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := loadLab(*dir)
			if err != nil {
				return err
			}
			argv, err := l.OnHost(args[0])
			if err != nil {
				return usageError(err)
			}
			path, err := exec.LookPath(argv[0])
			if err != nil {
				return err
			}
			// Exec: the command line gets this process's input and output
			// as they are, as it would over ssh.
			return syscall.Exec(path, append(argv, args[1]), os.Environ())
		},
	}
}
