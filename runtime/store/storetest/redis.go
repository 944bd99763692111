package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/internal/testenv"
)

// RedisURL is the Redis that integration tests use (testenv.RedisURL):
// $CONVEYOR_TEST_REDIS, default redis://127.0.0.1:6379/0; skipped when it
// does not answer, unless CI is set, where it fails.
func RedisURL(t testing.TB) string {
	t.Helper()
	return testenv.RedisURL(t)
}

// RedisPrefix returns a fresh key prefix ("cvtest:<random>:") and deletes
// every key under it when t ends.
func RedisPrefix(t testing.TB, url string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "cvtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		opt, _ := redis.ParseURL(url)
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			c.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
	})
	return prefix
}
