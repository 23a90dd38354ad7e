package integration

import (
	"context"
	"errors"
)

// STUB: the lab of hosts is built on another branch; these declarations
// only let `dbha drill --hosts` compile here. Drop this file at merge.

var errNotBuilt = errors.New("the lab of hosts is not built yet")

// FaultSpec is one fault for Lab.Fault.
type FaultSpec struct {
	Name    string
	Host    string
	Sides   [2][]string
	Percent int
}

// Fault injects f.
func (l *Lab) Fault(ctx context.Context, f FaultSpec) error { return errNotBuilt }

// Heal undoes every fault in place.
func (l *Lab) Heal(ctx context.Context) error { return errNotBuilt }

// HostOf names the host of a database address.
func (l *Lab) HostOf(addr string) (string, error) { return "", errNotBuilt }

// Hosts lists the lab's hosts.
func (l *Lab) Hosts() []string { return nil }

// ClientAddr is the clients' host address.
func (l *Lab) ClientAddr() string { return "" }
