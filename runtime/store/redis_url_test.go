package store

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseRedisURL(t *testing.T) {
	cases := []struct {
		url, kind, want, err string
	}{
		{url: "redis://127.0.0.1:6379/2", kind: "single", want: "127.0.0.1:6379 db=2"},
		{url: "rediss://u:p@cache.example:6380?dial_timeout=1s", kind: "single", want: "cache.example:6380 db=0 tls user=u"},
		{url: "redis://h1:7000,h2:7001,h3:7002", kind: "cluster", want: "h1:7000,h2:7001,h3:7002"},
		{url: "rediss://h1:7000?cluster=true&read_timeout=3s", kind: "cluster", want: "h1:7000 tls"},
		{url: "redis-sentinel://s1:26379,s2:26379/mymaster/1", kind: "sentinel", want: "mymaster@s1:26379,s2:26379 db=1"},
		{url: "rediss-sentinel://:pw@s1:26379/mymaster?password=master-secret", kind: "sentinel", want: "mymaster@s1:26379 db=0 tls"},
		{url: "redis://s1:26379?master_name=m&addr=s2:26379", kind: "sentinel", want: "m@s1:26379,s2:26379 db=0"},
		{url: "http://x:1", err: "unknown scheme"},
		{url: "127.0.0.1:6379", err: "not a URL"},
		{url: "redis-sentinel://s1:26379", err: "without a master name"},
		{url: "redis://h1:1,h2:2/3", err: "no database number"},
		{url: "redis://h1:1?bogus=1", err: "unexpected option"},
	}
	for _, c := range cases {
		tg, err := parseRedisURL(c.url)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.url, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		var got string
		switch tg.kind {
		case "single":
			o := tg.single
			got = o.Addr + " db=" + itoa(o.DB) + tls(o.TLSConfig != nil)
			if o.Username != "" {
				got += " user=" + o.Username
			}
		case "cluster":
			got = strings.Join(tg.cluster.Addrs, ",") + tls(tg.cluster.TLSConfig != nil)
		case "sentinel":
			o := tg.sentinel
			got = o.MasterName + "@" + strings.Join(o.SentinelAddrs, ",") + " db=" + itoa(o.DB) + tls(o.TLSConfig != nil)
		}
		if tg.kind != c.kind || got != c.want {
			t.Errorf("%s: %s %q, want %s %q", c.url, tg.kind, got, c.kind, c.want)
		}
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

func tls(on bool) string {
	if on {
		return " tls"
	}
	return ""
}

func TestRedisClientDefaults(t *testing.T) {
	c, cluster, err := newRedisClient("redis://127.0.0.1:6379?read_timeout=5s", "conveyor:x")
	if err != nil || cluster {
		t.Fatal(err, cluster)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.DialTimeout != 2*time.Second || o.ReadTimeout != 5*time.Second || o.WriteTimeout != 2*time.Second ||
		o.MaxRetries != 2 || !o.ContextTimeoutEnabled || o.ClientName != "conveyor:x" {
		t.Errorf("options: dial %s read %s write %s retries %d ctx %v name %q", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.ContextTimeoutEnabled, o.ClientName)
	}
	cc, cluster, err := newRedisClient("redis://127.0.0.1:7000,127.0.0.1:7001", "n")
	if err != nil || !cluster {
		t.Fatal(err, cluster)
	}
	cc.Close()
	if got := hashTagged("conveyor:"); got != "{conveyor}:" {
		t.Errorf("hash tag: %q", got)
	}
	if got := hashTagged("{app}:conveyor:"); got != "{app}:conveyor:" {
		t.Errorf("hash tag kept: %q", got)
	}
	if got := redactURL("redis://user:secret@h:1/0"); strings.Contains(got, "secret") {
		t.Errorf("redact: %q", got)
	}
}

// A URL that does not parse fails without its password in the error, in
// every form: url.Parse's error, which go-redis passes on, repeats it.
func TestRedisURLErrorsHidePassword(t *testing.T) {
	for _, u := range []string{
		"redis://app:s3cr3t-pw@127.0.0.1:63 79/0",
		"rediss://app:s3cr3t-pw@h1:7000 ,h2:7001",
		"redis://app:s3cr3t-pw@h1:7000 ?cluster=true",
		"redis-sentinel://app:s3cr3t-pw@s1:26 379/mymaster",
		"redis://app:s3cr3t-pw@s1:26 379?master_name=m",
		"redis://app:s3cr3t-pw@h:1?x=%zz",
		"redis://app:s3cr3t-pw%zz@h:1",
	} {
		_, err := parseRedisURL(u)
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
}
