// Package testenv holds what tests share about where they run.
package testenv

import (
	"os"
	"testing"
)

// SkipShort skips a long test under go test -short, unless CI is set: CI
// runs every test, whatever flags it is given.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip(why)
	}
}
