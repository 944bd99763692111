package store_test

import (
	"sync"
	"testing"

	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

func TestBoltConformance(t *testing.T) {
	var dirs sync.Map // *testing.T -> directory: the same t reopens the same file
	storetest.Run(t, func(t *testing.T) store.Store {
		dir, _ := dirs.LoadOrStore(t, t.TempDir())
		s, err := store.OpenBolt(dir.(string))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
