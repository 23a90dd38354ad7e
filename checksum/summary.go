package checksum

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Summary is what the checksum runs of a cluster have established,
// replica by replica. dbha keeps it in Consul (dbha/<cluster>/checksum),
// merged after every run, so that every manager's promotion ranks a
// replica with a known difference below the others, and the daemon
// reports it.
type Summary struct {
	Cluster string `json:"cluster"`
	// The last run.
	LastRun         time.Time `json:"last_run"`
	LastPrimary     string    `json:"last_primary"`
	LastTables      int       `json:"last_tables"`
	LastChunks      int       `json:"last_chunks"`
	LastDifferences int       `json:"last_differences"`
	LastComplete    bool      `json:"last_complete"`
	// Replicas are every replica a run compared, by address.
	Replicas map[string]ReplicaState `json:"replicas"`
}

// ReplicaState is one replica's standing.
type ReplicaState struct {
	// Differing are the tables on which it differed from the primary when
	// last compared, with the number of differing chunks; a later run that
	// compares such a table and finds it equal removes it.
	Differing map[string]int `json:"differing,omitempty"`
	// ComparedAt is the last run that compared it; Primary the primary
	// it was compared with.
	ComparedAt time.Time `json:"compared_at"`
	Primary    string    `json:"primary"`
}

// Merge folds a run into the summary. A replica the run lost keeps its
// standing on the tables it was not compared on; a table cut short
// changes nothing. Pure.
func Merge(prev Summary, r Report) Summary {
	s := prev
	s.Cluster = r.Cluster
	s.LastRun, s.LastPrimary, s.LastTables, s.LastDifferences, s.LastComplete = r.Finished, r.Primary, len(r.Tables), r.Differences(), r.Complete()
	s.LastChunks = 0
	replicas := map[string]ReplicaState{}
	for k, v := range prev.Replicas {
		replicas[k] = v
	}
	lost := map[string]bool{}
	for _, l := range r.Lost {
		lost[l.Replica] = true
	}
	for _, t := range r.Tables {
		s.LastChunks += t.Chunks
	}
	for _, addr := range r.Replicas {
		st := replicas[addr]
		differing := map[string]int{}
		for table, n := range st.Differing {
			differing[table] = n
		}
		for _, t := range r.Tables {
			n := 0
			for _, d := range t.Differences {
				if d.Replica == addr {
					n++
				}
			}
			switch {
			case n > 0:
				differing[t.Table] = n
			case t.Error == "" && len(t.Unstable) == 0 && !lost[addr]:
				delete(differing, t.Table) // compared to the end: equal
			}
		}
		st.Differing = differing
		st.ComparedAt, st.Primary = r.Finished, r.Primary
		replicas[addr] = st
	}
	s.Replicas = replicas
	return s
}

// Chunks counts the replica's known differing chunks.
func (r ReplicaState) Chunks() int {
	n := 0
	for _, c := range r.Differing {
		n += c
	}
	return n
}

// Inconsistent are the replicas with a known difference, with why (nil
// for a nil summary). Pure.
func (s *Summary) Inconsistent() map[string]string {
	if s == nil {
		return nil
	}
	out := map[string]string{}
	for addr, st := range s.Replicas {
		if len(st.Differing) > 0 {
			tables := slices.Sorted(maps.Keys(st.Differing))
			out[addr] = fmt.Sprintf("differs from the primary %s in %s (dbha checksum at %s)", st.Primary, strings.Join(tables, ", "),
				st.ComparedAt.UTC().Format(time.RFC3339))
		}
	}
	return out
}
