package postgres

import (
	"errors"
	"fmt"
)

// errNotForked: the two servers are on the same timeline, so neither holds
// WAL that a timeline switch took away from the other.
var errNotForked = errors.New("the servers are on the same timeline: their WAL has not forked")

// fork is where a former primary's WAL leaves the new primary's history:
// the first WAL location the former primary holds that the new primary's
// lineage does not contain, and the former primary's timeline that WAL is
// on. Everything the former primary holds from At on is what pg_rewind
// discards.
type fork struct {
	At  LSN
	TLI uint32
}

// forkPoint finds where former's lineage leaves primary's. It walks
// former's timelines oldest first; on each one both servers share, the
// one that left it earlier decides:
//
//   - primary left it first (at its switch point), or former is still on
//     it: former's WAL on it from primary's switch point on is its own;
//   - former left it first: former's next timeline, which primary never
//     had (a timeline's history fixes where its parent ended), starts the
//     fork;
//   - both left it at the same point: the next timeline decides.
//
// A timeline of former that primary's lineage does not contain starts the
// fork where former began it. It is pure.
func forkPoint(former, primary lineage) (fork, error) {
	var began LSN // where former's timeline being looked at began
	for i, t := range former.timelines() {
		fEnd, fHistoric, _ := former.end(t)
		pEnd, pHistoric, ok := primary.end(t)
		switch {
		case !ok && i == 0:
			return fork{}, fmt.Errorf("the lineages share no timeline (former primary %v, primary %v)", former.timelines(), primary.timelines())
		case !ok:
			return fork{At: began, TLI: t}, nil
		case !fHistoric && !pHistoric:
			return fork{}, fmt.Errorf("timeline %d: %w", t, errNotForked)
		case !fHistoric || pHistoric && pEnd < fEnd:
			return fork{At: pEnd, TLI: t}, nil
		case !pHistoric || fEnd < pEnd:
			return fork{At: fEnd, TLI: former.next(t)}, nil
		}
		began = fEnd
	}
	// Unreachable: former's last timeline is its current one, which the
	// switch above always answers for.
	return fork{}, fmt.Errorf("no fork found between timelines %v and %v", former.timelines(), primary.timelines())
}
