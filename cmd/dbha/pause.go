package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/promote"
)

func newPauseCmd(g *globalFlags) *cobra.Command {
	var cluster, reason string
	cmd := &cobra.Command{
		Use:   "pause --cluster C [--reason TEXT]",
		Short: "Put a cluster in maintenance mode: no automatic failover until dbha resume",
		Long: `pause records in Consul that the cluster is in maintenance mode, with who
paused it, when and why. Every manager honours it: detection, findings and
alerts go on, and a dead primary is reported (FailoverPaused turns
critical), but no automatic recovery starts. A recovery already half-done is
still finished, a second writer is still fenced, and dbha promote still
works. dbha resume --cluster C lifts it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := pauseStore(cmd, g, cluster)
			if err != nil {
				return err
			}
			if was, ok, err := c.GetPause(cmd.Context(), cluster); err != nil {
				return err
			} else if ok {
				fmt.Fprintf(cmd.OutOrStdout(), "%s was already %s; the pause is renewed\n", cluster, was.Describe())
			}
			p := promote.Pause{By: operator(), At: time.Now().UTC(), Reason: reason}
			if err := c.SetPause(cmd.Context(), cluster, p); err != nil {
				return err
			}
			if err := consul.AppendAudit(filepath.Join(cfg.StateDir, "audit.jsonl"), auditLine{Action: "pause", Cluster: cluster, Pause: &p}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "automatic failover of %s %s; dbha resume --cluster %s lifts it\n", cluster, p.Describe(), cluster)
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the other operators and the findings")
	return cmd
}

func newResumeCmd(g *globalFlags) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "resume --cluster C",
		Short: "End a cluster's maintenance mode: automatic failover acts again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := pauseStore(cmd, g, cluster)
			if err != nil {
				return err
			}
			p, ok, err := c.GetPause(cmd.Context(), cluster)
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is not paused\n", cluster)
				return nil
			}
			if err := c.ClearPause(cmd.Context(), cluster); err != nil {
				return err
			}
			if err := consul.AppendAudit(filepath.Join(cfg.StateDir, "audit.jsonl"), auditLine{Action: "resume", Cluster: cluster, By: operator(), At: time.Now().UTC(), Pause: &p}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "automatic failover of %s resumed (it was %s)\n", cluster, p.Describe())
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	return cmd
}

// pauseStore loads the configuration, checks that it names cluster, and
// connects to Consul, where the maintenance mode is kept.
func pauseStore(cmd *cobra.Command, g *globalFlags, cluster string) (config.Config, *consul.Client, error) {
	cfg, err := g.load()
	if err != nil {
		return cfg, nil, err
	}
	if _, ok := cfg.Cluster(cluster); !ok {
		return cfg, nil, usageError(fmt.Errorf("--cluster %q: no such cluster in the configuration", cluster))
	}
	c, err := newConsul(cmd.Context(), cfg)
	return cfg, c, err
}

// auditLine is an operator's action in the audit file.
type auditLine struct {
	Action  string         `json:"action"`
	Cluster string         `json:"cluster"`
	By      string         `json:"by,omitempty"`
	At      time.Time      `json:"at,omitzero"`
	Pause   *promote.Pause `json:"pause,omitempty"`
}

// operator names who runs the command: the account that ran sudo, else
// this one, at this host.
func operator() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
