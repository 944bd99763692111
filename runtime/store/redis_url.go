package store

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTarget is what a Redis URL names: one server, a Sentinel-managed
// master, or a Cluster.
type redisTarget struct {
	kind     string // single, sentinel, cluster
	single   *redis.Options
	sentinel *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// parseRedisURL reads the URL forms documented on OpenRedis.
func parseRedisURL(raw string) (*redisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("%q is not a URL (redis://host:6379)", redactURL(raw))
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	auth, tail := rest[:end], rest[end:]
	user, hosts := "", auth
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		user, hosts = auth[:i+1], auth[i+1:]
	}
	addrs := strings.Split(hosts, ",")
	path, query, _ := strings.Cut(tail, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, cleanURLError(err)
	}
	cluster := q.Get("cluster") == "true"
	q.Del("cluster")
	base := "redis"
	switch scheme {
	case "redis", "redis-sentinel":
	case "rediss", "rediss-sentinel":
		base = "rediss"
	default:
		return nil, fmt.Errorf("unknown scheme %q: want redis, rediss, redis-sentinel or rediss-sentinel", scheme)
	}
	build := func(path string, extra []string) string {
		for _, a := range extra {
			q.Add("addr", a)
		}
		u := base + "://" + user + addrs[0] + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		return u
	}
	t := &redisTarget{}
	switch {
	case strings.HasSuffix(scheme, "-sentinel") || q.Has("master_name"):
		if segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' }); len(segs) > 0 && strings.HasSuffix(scheme, "-sentinel") {
			if !q.Has("master_name") {
				q.Set("master_name", segs[0])
			}
			path = "/" + strings.Join(segs[1:], "/")
		}
		if q.Get("master_name") == "" {
			return nil, fmt.Errorf("sentinel URL without a master name (redis-sentinel://host:26379/mymaster)")
		}
		t.kind = "sentinel"
		t.sentinel, err = redis.ParseFailoverURL(build(path, addrs[1:]))
	case len(addrs) > 1 || cluster:
		if strings.Trim(path, "/") != "" {
			return nil, fmt.Errorf("a Cluster URL has no database number")
		}
		t.kind = "cluster"
		t.cluster, err = redis.ParseClusterURL(build("", addrs[1:]))
	default:
		t.kind = "single"
		t.single, err = redis.ParseURL(build(path, nil))
	}
	if err != nil {
		return nil, cleanURLError(err)
	}
	return t, nil
}

// cleanURLError strips a *url.Error (go-redis's parsers return the one of
// url.Parse), which repeats the whole URL with its password; what it
// wraps names only the part that is wrong.
func cleanURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// knobs are the client settings the store gives defaults to.
type knobs struct {
	name                             *string
	dial, read, write, pool, backoff *time.Duration
	retries                          *int
	ctxTimeout                       *bool
}

func (k knobs) defaults(name string) {
	for _, d := range []*time.Duration{k.dial, k.read, k.write, k.pool} {
		if *d == 0 {
			*d = 2 * time.Second
		}
	}
	if *k.backoff == 0 {
		*k.backoff = 250 * time.Millisecond
	}
	if *k.retries == 0 {
		*k.retries = 2
	}
	if *k.name == "" {
		*k.name = name
	}
	*k.ctxTimeout = true
}

// newRedisClient returns the client for url with the store's defaults,
// and whether it talks to a Cluster.
func newRedisClient(raw, name string) (redis.UniversalClient, bool, error) {
	t, err := parseRedisURL(raw)
	if err != nil {
		return nil, false, err
	}
	switch t.kind {
	case "sentinel":
		o := t.sentinel
		knobs{&o.ClientName, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetryBackoff, &o.MaxRetries, &o.ContextTimeoutEnabled}.defaults(name)
		return redis.NewFailoverClient(o), false, nil
	case "cluster":
		o := t.cluster
		knobs{&o.ClientName, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetryBackoff, &o.MaxRetries, &o.ContextTimeoutEnabled}.defaults(name)
		return redis.NewClusterClient(o), true, nil
	}
	o := t.single
	knobs{&o.ClientName, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetryBackoff, &o.MaxRetries, &o.ContextTimeoutEnabled}.defaults(name)
	return redis.NewClient(o), false, nil
}

// hashTagged wraps a prefix in a Cluster hash tag: "conveyor:" becomes
// "{conveyor}:", so that every key of the store maps to one slot.
func hashTagged(prefix string) string {
	if strings.Contains(prefix, "{") {
		return prefix
	}
	return "{" + strings.TrimSuffix(prefix, ":") + "}:"
}

// redactURL hides a password in a Redis URL for error messages.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "<redis url>"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if end := strings.IndexAny(rest, "/?"); end < 0 || at < end {
			rest = "xxxxx@" + rest[at+1:]
		}
	}
	return scheme + "://" + rest
}
