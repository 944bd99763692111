package runtime

import (
	"testing"
	"time"
)

func TestRedisOptionsFromURL(t *testing.T) {
	url, o, err := redisOptions("redis://h1:7000,h2:7001/0?prefix=shop:&consumer=pod-1&lease_timeout=5s&dial_timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	if url != "redis://h1:7000,h2:7001/0?dial_timeout=1s" || o.Prefix != "shop:" || o.Consumer != "pod-1" || o.LeaseTimeout != 5*time.Second {
		t.Errorf("got %q %+v", url, o)
	}
	if _, _, err := redisOptions("redis://x?lease_timeout=soon"); err == nil {
		t.Error("a bad lease_timeout was accepted")
	}
}
