// Package integration owns the lab: real MariaDB, PostgreSQL and Consul processes started on
// loopback ports under one directory, for `dbha lab` and for the integration tests.
//
// A lab is a MariaDB primary with two GTID replicas (cluster lab-mariadb), a PostgreSQL primary
// with two streaming standbys (lab-postgres), and a Consul dev agent, plus a ready dbha.yaml.
// Everything about it is recorded in DIR/lab.json, so that a later process can stop it.
//
// It must not be imported by production packages other than cmd (for `dbha lab`), and it never
// signals a process it did not start: a PID is acted on only while /proc/PID/cmdline still
// names the node's data directory. Passwords are generated into DIR/secrets and never appear
// in a process argument or a log line.
package integration
