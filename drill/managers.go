package drill

import (
	"slices"

	"github.com/dbha/dbha/checks"
)

// LiveManagers are the managers whose observation of the cluster moved on
// between two reads a little over a probe refresh apart: the dbha run
// processes watching it now. A manager that stopped leaves its last
// observation behind, unchanged; so does a drill's own monitor once the
// drill ends, which is why freshness alone (both run under the same name)
// cannot tell. Pure.
func LiveManagers(before, after []checks.PeerView) []string {
	seen := map[string]checks.PeerView{}
	for _, v := range before {
		seen[v.Manager] = v
	}
	var out []string
	for _, v := range after {
		if was, ok := seen[v.Manager]; !ok || v.At.After(was.At) {
			out = append(out, v.Manager)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
