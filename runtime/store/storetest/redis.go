package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisURL is the Redis that integration tests use: $CONVEYOR_TEST_REDIS,
// default redis://127.0.0.1:6379/0. When it does not answer the test is
// skipped — unless CI is set, where it fails: CI always has a Redis.
func RedisURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("CONVEYOR_TEST_REDIS")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("CONVEYOR_TEST_REDIS: %v", err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis at %s is unreachable and CI is set: %v", url, err)
		}
		t.Skipf("redis at %s is unreachable: %v", url, err)
	}
	return url
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
