package main

import (
	"strings"
	"testing"
)

// Bad guard arguments are usage errors that name what is wrong, before
// anything is asked of a server or Consul.
func TestGuardUsage(t *testing.T) {
	good := writeConfig(t, goodYAML)
	cases := []struct {
		name string
		args []string
	}{
		{"no cluster", []string{"--config", good, "guard", "--instance", "127.0.0.1:3306"}},
		{"unknown cluster", []string{"--config", good, "guard", "--cluster", "nope", "--instance", "127.0.0.1:3306"}},
		{"instance not in the cluster", []string{"--config", good, "guard", "--cluster", "c1", "--instance", "127.0.0.1:9999"}},
		{"ttl too short", []string{"--config", good, "guard", "--cluster", "c1", "--instance", "127.0.0.1:3306", "--ttl", "100ms"}},
		{"stray argument", []string{"--config", good, "guard", "--cluster", "c1", "--instance", "127.0.0.1:3306", "extra"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args); got != exitUsage {
				t.Fatalf("run(%s) = %d, want %d", strings.Join(tc.args, " "), got, exitUsage)
			}
		})
	}
}
