package mysql

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/dbha/dbha/topology"
)

// checkCascades refuses a tail that deletes or updates rows of a table
// that a foreign key references with a cascading action (CASCADE, SET
// NULL, SET DEFAULT): MariaDB does not binlog what a cascade does to the
// child rows, so undoing the parent's change would not put them back. It
// looks with the apply account (SetApplyAccount), which must see each such
// table: information_schema shows an account only the tables it has a
// privilege on, and dbha's own account has none.
func (c mariadbControl) checkCascades(ctx context.Context, addr string, tables map[string]topology.RowChanges) error {
	var parents []string // tables whose rows the tail deletes or updates
	for name, ops := range tables {
		if ops.Updates > 0 || ops.Deletes > 0 {
			parents = append(parents, name)
		}
	}
	if len(parents) == 0 {
		return nil
	}
	slices.Sort(parents)
	db, err := Open(addr, c.applyUser, c.applyPassword, c.tls)
	if err != nil {
		return err
	}
	defer db.Close()
	in, args := tupleList(parents)

	seen := map[string]bool{}
	rows, err := db.QueryContext(ctx, "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES WHERE (TABLE_SCHEMA, TABLE_NAME) IN "+in, args...)
	if err != nil {
		return fmt.Errorf("list the tail's tables on %s: %w", addr, err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err == nil {
			seen[name] = true
		}
	}
	rows.Close()
	var unseen []string
	for _, p := range parents {
		if !seen[p] {
			unseen = append(unseen, p)
		}
	}
	if len(unseen) > 0 {
		return fmt.Errorf("%w: the tail updates or deletes rows of %s, whose foreign keys account %q cannot see to check for cascades (give the apply account, promotion.apply, a privilege on them)",
			ErrCannotRewind, strings.Join(unseen, ", "), c.applyUser)
	}

	rows, err = db.QueryContext(ctx, `SELECT CONCAT(UNIQUE_CONSTRAINT_SCHEMA, '.', REFERENCED_TABLE_NAME),
		CONCAT(CONSTRAINT_SCHEMA, '.', TABLE_NAME), CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE
		FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE (UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME) IN `+in, args...)
	if err != nil {
		return fmt.Errorf("read the foreign keys of the tail's tables on %s: %w", addr, err)
	}
	defer rows.Close()
	var reasons []string
	for rows.Next() {
		var parent, child, name, onUpdate, onDelete string
		if err := rows.Scan(&parent, &child, &name, &onUpdate, &onDelete); err != nil {
			return fmt.Errorf("read the foreign keys of the tail's tables on %s: %w", addr, err)
		}
		ops := tables[parent]
		if ops.Deletes > 0 && cascades(onDelete) {
			reasons = append(reasons, fmt.Sprintf("it deletes rows of %s, and foreign key %s of %s is ON DELETE %s", parent, name, child, onDelete))
		}
		if ops.Updates > 0 && cascades(onUpdate) {
			reasons = append(reasons, fmt.Sprintf("it updates rows of %s, and foreign key %s of %s is ON UPDATE %s", parent, name, child, onUpdate))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the foreign keys of the tail's tables on %s: %w", addr, err)
	}
	if len(reasons) > 0 {
		slices.Sort(reasons)
		return fmt.Errorf("%w: %s: the changes a cascade makes to child rows are not in the binlog, so they cannot be undone",
			ErrCannotRewind, strings.Join(reasons, "; "))
	}
	return nil
}

// cascades reports whether a referential action changes child rows.
func cascades(rule string) bool {
	return rule != "RESTRICT" && rule != "NO ACTION"
}

// tupleList is "((?, ?), ...)" for "db.table" names, and its arguments.
func tupleList(names []string) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 2*len(names))
	b.WriteString("(")
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?)")
		db, table, _ := strings.Cut(n, ".")
		args = append(args, db, table)
	}
	b.WriteString(")")
	return b.String(), args
}
