package topology

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestMariaDBTail(t *testing.T) {
	tests := []struct {
		name         string
		own, primary string
		serverID     uint32
		source       uint32 // the server_id of the source a replica still names; 0: none
		errant       string
		from, kept   string
		transactions int64
		refused      string // a word of the refusal; "" when the tail is accepted
	}{
		{name: "behind, nothing errant", own: "0-1-10", primary: "0-1-10,0-2-15", serverID: 1,
			from: "0-1-10", kept: "0-1-10"},
		{name: "an old primary's unreplicated tail", own: "0-1-20", primary: "0-1-10,0-2-15", serverID: 1,
			errant: "0-1-20", from: "0-1-10", kept: "0-1-10", transactions: 10},
		{name: "older servers in the history stay", own: "0-1-20,0-2-5", primary: "0-1-10,0-2-5,0-3-12", serverID: 1,
			errant: "0-1-20", from: "0-1-10", kept: "0-1-10,0-2-5", transactions: 10},
		{name: "the fork is another server's transaction", own: "0-1-35,0-2-30", primary: "0-2-30,0-3-31", serverID: 1,
			errant: "0-1-35", from: "0-2-30", kept: "0-2-30", transactions: 5},
		{name: "own transactions replicated before another server's", own: "0-1-40,0-2-30", primary: "0-1-20,0-2-30,0-3-45", serverID: 1,
			errant: "0-1-40", from: "0-2-30", kept: "0-1-20,0-2-30", transactions: 10},
		{name: "a second domain without errant transactions", own: "0-1-20,1-2-7", primary: "0-1-10,0-2-15,1-2-7", serverID: 1,
			errant: "0-1-20", from: "0-1-10,1-2-7", kept: "0-1-10,1-2-7", transactions: 10},
		{name: "a write of unknown origin", own: "0-1-20,0-5-18", primary: "0-1-10", serverID: 1,
			errant: "0-1-20,0-5-18", refused: "0-5-18 not from server_id 1"},
		{name: "a replica cut loose on the old primary holds its tail", own: "0-1-20", primary: "0-1-10,0-2-15", serverID: 3, source: 1,
			errant: "0-1-20", from: "0-1-10", kept: "0-1-10", transactions: 10},
		{name: "a replica's tail from a server other than its source", own: "0-1-20", primary: "0-1-10,0-2-15", serverID: 3, source: 2,
			errant: "0-1-20", refused: "0-1-20 not from server_id 3 or 2"},
		{name: "a replica holding its source's tail and writes of its own", own: "0-1-20,0-3-21", primary: "0-1-10", serverID: 3, source: 1,
			errant: "0-1-20,0-3-21", refused: "of 2 server(s)"},
		{name: "errant transactions in two domains", own: "0-1-20,1-1-7", primary: "0-1-10,1-1-3", serverID: 1,
			errant: "0-1-20,1-1-7", refused: "in 2 domain(s)"},
		{name: "nothing shared in the domain", own: "0-1-5", primary: "0-2-9", serverID: 1,
			errant: "0-1-5", refused: "nothing shared"},
		{name: "the errant transaction is not at the end", own: "0-1-10,0-2-12", primary: "0-2-12", serverID: 1,
			errant: "0-1-10", refused: "comes before 0-2-12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origins := []uint32{tc.serverID}
			if tc.source != 0 {
				origins = append(origins, tc.source)
			}
			tail, err := MariaDBTail(mustMariaDB(t, tc.own), mustMariaDB(t, tc.primary), origins...)
			if got := tail.Errant.String(); got != tc.errant {
				t.Errorf("errant = %q, want %q", got, tc.errant)
			}
			if tc.refused != "" {
				if !errors.Is(err, ErrCannotRewind) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err = %v, want ErrCannotRewind saying %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tail.From.String() != tc.from || tail.Kept.String() != tc.kept || tail.Transactions != tc.transactions {
				t.Errorf("from %q kept %q transactions %d; want %q, %q, %d", tail.From, tail.Kept, tail.Transactions, tc.from, tc.kept, tc.transactions)
			}
			if got := tail.GTIDs(); int64(len(got)) != tc.transactions ||
				(len(got) > 0 && (got[0] != firstAfter(tc.from, tc.errant) || got[len(got)-1] != tc.errant)) {
				t.Errorf("GTIDs() = %v, want %d from the one after %s to %s", got, tc.transactions, tc.from, tc.errant)
			}
			// Once the tail is gone, the instance holds nothing the primary
			// lacks, and it lacks only what the primary wrote after it.
			if e := Errant(tail.Kept, mustMariaDB(t, tc.primary)); e.String() != "" {
				t.Errorf("kept %s still has errant %s", tail.Kept, e)
			}
		})
	}
}

func TestMariaDBTailWantsMariaDBPositions(t *testing.T) {
	my, err := ParseMySQL("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MariaDBTail(my, my, 1); err == nil || errors.Is(err, ErrCannotRewind) {
		t.Fatalf("MySQL positions: err = %v, want an error that is not a refusal", err)
	}
}

// firstAfter is the GTID after from's entry in errant's domain, of
// errant's server (single-domain errant).
func firstAfter(from, errant string) string {
	f := strings.Split(errant, "-")
	for _, g := range strings.Split(from, ",") {
		if p := strings.Split(g, "-"); p[0] == f[0] {
			n, _ := strconv.Atoi(p[2])
			return fmt.Sprintf("%s-%s-%d", f[0], f[1], n+1)
		}
	}
	return ""
}
