// Package integration owns the lab: real MariaDB, PostgreSQL and Consul processes started on
// loopback ports under one directory, for `dbha lab` and for the integration tests.
//
// A lab is a MariaDB primary with two GTID replicas (cluster lab-mariadb), a PostgreSQL primary
// with two streaming standbys (lab-postgres), and a Consul dev agent, plus a ready dbha.yaml.
// Everything about it is recorded in DIR/lab.json, so that a later process can stop it.
//
// A hosts lab (Options.Hosts) runs each database server, and on each of 1 to 3 manager hosts a
// Consul server and a dbha manager, in a network namespace of its own on a bridge it creates
// on 198.18.0.0/15 (hostnet.go); its faults (faults.go) are iptables rules inside those
// namespaces and signals to its own processes. It never adds a rule in the root namespace,
// and removes only the namespaces, links and bridge it recorded.
//
// A TLS lab (Options.TLS, either kind) has a private CA in DIR/tls, and its Consul agents serve
// their API over HTTPS only, to clients with a certificate of that CA (consul_tls.go); the
// lab's helpers that talk to Consul (ConsulClient, ConsulAPI, the readiness checks) use it.
//
// It must not be imported by production packages other than cmd (for `dbha lab`), and it never
// signals a process it did not start: a PID is acted on only while its start time is the one
// recorded when the lab started it (or, in an older lab.json, while /proc/PID/cmdline names
// the node's data directory). Passwords are generated into DIR/secrets and never appear
// in a process argument or a log line.
package integration
