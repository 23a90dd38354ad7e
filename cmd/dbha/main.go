// Command dbha is the operator's entry point to dbha: topology, check, the
// daemon (run), change streams, promotion and recoveries, drills, backups
// and the lab. This package holds flags, wiring and output only: it binds
// flags, DBHA_* environment and the configuration file, builds the objects,
// calls the packages that decide and act, and prints what they return as
// text or JSON. It decides nothing itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/spf13/cobra"

	"github.com/dbha/dbha/config"
)

// Exit codes, stable for scripts.
const (
	exitOK       = 0
	exitProblems = 1 // the command ran and found problems
	exitUsage    = 2 // bad flags, arguments or configuration
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// The MySQL driver logs connection trouble on its own; dbha reports
	// what matters itself.
	_ = gomysql.SetLogger(&gomysql.NopLogger{})
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	// Interrupt and terminate cancel the command's context: long-running
	// commands (stream run) stop cleanly and flush what they hold.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.err == errProblemsFound {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "dbha:", err)
	var ce *config.Error
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ce), isCobraUsage(err):
		return exitUsage
	}
	return exitProblems
}

// isCobraUsage recognises the argument errors cobra makes itself (unknown
// command, wrong argument count), which carry no type to match on.
func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "accepts ") ||
		strings.HasPrefix(msg, "requires at least ")
}

// errProblemsFound ends a command that printed its findings and must exit 1.
var errProblemsFound = errors.New("problems found")

type globalFlags struct {
	configFile string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "dbha",
		Short: "High availability for MariaDB/MySQL and PostgreSQL clusters",
		Long: `dbha watches MariaDB/MySQL and PostgreSQL primary-replica clusters, shows
their topology, and (as it grows) fails over, switches over and backs up.

Configuration comes from --config, else $DBHA_CONFIG, else ./dbha.yaml; any
key can be overridden by a DBHA_* environment variable (DBHA_STATE_DIR,
DBHA_CONSUL_ADDRESS, DBHA_CLUSTERS_0_USER, ...).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w (see %s --help)", err, c.CommandPath()))
	})
	root.PersistentFlags().StringVar(&g.configFile, "config", "", "configuration file (default $DBHA_CONFIG or ./dbha.yaml)")
	root.AddCommand(newTopologyCmd(g), newCheckCmd(g), newRunCmd(g), newStreamCmd(g), newPromoteCmd(g), newRecoverCmd(g), newDrillCmd(g), newBackupCmd(g), newGuardCmd(g), newPauseCmd(g), newResumeCmd(g), newChecksumCmd(g), newLabCmd())
	return root
}

// load reads and validates the configuration for a command.
func (g *globalFlags) load() (config.Config, error) {
	cfg, err := loadConfig(configPath(g.configFile, os.LookupEnv), os.Environ())
	if err != nil {
		return cfg, usageError(err)
	}
	return cfg, nil
}

// loadClusters checks -o, loads the configuration and selects the clusters
// a --cluster flag names (all when empty): the start of most commands.
func (g *globalFlags) loadClusters(output, cluster string) (config.Config, []config.Cluster, error) {
	if err := outputFormat(output); err != nil {
		return config.Config{}, nil, err
	}
	cfg, err := g.load()
	if err != nil {
		return cfg, nil, err
	}
	clusters, err := selectClusters(cfg, cluster)
	return cfg, clusters, err
}

// loadCluster is loadClusters for commands that act on one cluster, which
// --cluster must name.
func (g *globalFlags) loadCluster(output, cluster string) (config.Config, config.Cluster, error) {
	if err := outputFormat(output); err != nil {
		return config.Config{}, config.Cluster{}, err
	}
	cfg, err := g.load()
	if err != nil {
		return cfg, config.Cluster{}, err
	}
	cl, err := requireCluster(cfg, cluster)
	return cfg, cl, err
}

// outputFormat checks -o.
func outputFormat(o string) error {
	if o != "text" && o != "json" {
		return usageError(fmt.Errorf("-o %q: use text or json", o))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// requireCluster returns the cluster a --cluster flag names, which must be
// given.
func requireCluster(cfg config.Config, name string) (config.Cluster, error) {
	if name == "" {
		return config.Cluster{}, usageError(errors.New("--cluster is required"))
	}
	cl, ok := cfg.Cluster(name)
	if !ok {
		return cl, usageError(fmt.Errorf("--cluster %q: no such cluster in the configuration", name))
	}
	return cl, nil
}
