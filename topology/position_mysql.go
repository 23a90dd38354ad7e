package topology

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// ParseMySQL reads a MySQL GTID set ("uuid:1-5:7,uuid2:1-3", tags allowed)
// with go-mysql's parser, allowing whitespace and newlines around entries as
// gtid_executed prints them. "" is the known, empty position. Transaction
// numbers start at 1, as in MySQL.
func ParseMySQL(s string) (Position, error) {
	set, err := mysql.ParseMysqlGTIDSet(strings.TrimSpace(s))
	if err != nil {
		return Position{}, fmt.Errorf("parse MySQL GTID set %q: %w", s, err)
	}
	ms, ok := set.(*mysql.MysqlGTIDSet)
	if !ok {
		return Position{}, fmt.Errorf("parse MySQL GTID set %q: go-mysql returned %T", s, set)
	}
	for u, tags := range *ms {
		for _, iv := range tags {
			if len(iv) > 0 && iv[0].Start < 1 {
				return Position{}, fmt.Errorf("parse MySQL GTID set %q: %s: transaction number %d is below 1",
					s, u, iv[0].Start)
			}
		}
	}
	return Position{engine: MySQL, set: ms}, nil
}

// compareMySQL orders two GTID sets by inclusion.
func compareMySQL(a, b *mysql.MysqlGTIDSet) Order {
	ab, ba := a.Contain(b), b.Contain(a)
	return combine(!ba, !ab, false)
}

// mysqlMinus returns a − b, without empty entries so that an empty result
// is an empty set. go-mysql has no set difference.
func mysqlMinus(a, b *mysql.MysqlGTIDSet) *mysql.MysqlGTIDSet {
	out := mysql.NewMysqlGTIDSet()
	for u, tags := range *a {
		for tag, iv := range tags {
			rest := minusIntervals(iv, (*b)[u][tag])
			if len(rest) == 0 {
				continue
			}
			if out[u] == nil {
				out[u] = make(map[mysql.Tag]mysql.IntervalSlice)
			}
			out[u][tag] = rest
		}
	}
	return &out
}

// minusIntervals returns a − b for sorted, non-overlapping half-open
// intervals, itself sorted and non-overlapping.
func minusIntervals(a, b mysql.IntervalSlice) mysql.IntervalSlice {
	var out mysql.IntervalSlice
	j := 0
	for _, x := range a {
		start := x.Start
		for j < len(b) && b[j].Stop <= start {
			j++
		}
		for k := j; k < len(b) && b[k].Start < x.Stop; k++ {
			if b[k].Start > start {
				out = append(out, mysql.Interval{Start: start, Stop: b[k].Start})
			}
			start = max(start, b[k].Stop)
		}
		if start < x.Stop {
			out = append(out, mysql.Interval{Start: start, Stop: x.Stop})
		}
	}
	return out
}

// mysqlCount is the number of GTIDs in s, saturating at MaxInt64.
func mysqlCount(s *mysql.MysqlGTIDSet) int64 {
	var n int64
	for _, tags := range *s {
		for _, iv := range tags {
			for _, x := range iv {
				n = addSat(n, x.Stop-x.Start)
			}
		}
	}
	return n
}
