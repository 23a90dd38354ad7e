package backup

import "fmt"

// MaxAttempts is how many times a scheduled backup is tried in its slot:
// once, and once more after a failure, against the topology as it is then.
const MaxAttempts = 2

// Retry decides whether a scheduled backup that failed on its attempt-th
// try (counting from 1) is tried again. A backup cut short because the
// daemon is stopping is not: there is no one left to run it.
func Retry(attempt int, stopping bool) bool {
	return !stopping && attempt < MaxAttempts
}

// FailureReason says why a run failed, from what the runner returned: its
// error, else the reason recorded in a failed entry, else "" for a backup
// that is done.
func FailureReason(e Entry, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case e.Status == Failed && e.Error != "":
		return e.Error
	case e.Status != Done:
		return fmt.Sprintf("the backup ended with status %q", e.Status)
	}
	return ""
}
