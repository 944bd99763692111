package dsl

import (
	"sync"
	"testing"
)

// Types that no other test decodes, so that their first decodes below
// fill the field cache from several goroutines at once.
type (
	raceRoot struct {
		A raceA   `yaml:"a"`
		B []raceB `yaml:"b"`
		C *raceC  `yaml:"c"`
	}
	raceA struct {
		X int `yaml:"x"`
	}
	raceB struct {
		Y string `yaml:"y"`
	}
	raceC struct {
		Z Duration `yaml:"z"`
	}
)

// TestDecodeConcurrently decodes from several goroutines at once, as the
// editor API and hot reload do. Run it with -race.
func TestDecodeConcurrently(t *testing.T) {
	src := []byte("a: {x: 1}\nb: [{y: a}, {y: b}]\nc: {z: 1s}\n")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v raceRoot
			if ds := decodeFile("r.yaml", src, &v); len(ds) > 0 {
				t.Error(ds)
			}
		}()
	}
	wg.Wait()
}
