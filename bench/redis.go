package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis scenarios run `conveyor serve --redis` against the server of
// -redis, each under a key prefix of its own (bench-<pid>-<scenario>:)
// that is deleted afterwards; nothing else in that Redis is touched.

// redisStore returns the --redis URL of a scenario (its own prefix) and a
// client for counting commands and cleaning up.
func (r *runner) redisStore(scenario string) (string, *redis.Client, func(), error) {
	opts, err := redis.ParseURL(r.opt.redis)
	if err != nil {
		return "", nil, nil, fmt.Errorf("-redis %q: %w", r.opt.redis, err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(r.ctx, 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return "", nil, nil, fmt.Errorf("redis at %s: %w (start one, or pass -redis)", opts.Addr, err)
	}
	prefix := fmt.Sprintf("bench-%d-%s:", os.Getpid(), scenario)
	u := r.opt.redis
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	u += sep + "prefix=" + url.QueryEscape(prefix)
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				c.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
		c.Close()
	}
	return u, c, cleanup, nil
}

// roundTrips is conveyor's own count of its round trips to Redis (a
// command, a script call or a pipeline each; background work such as
// lease polls and renewals included: idleRoundTrips measures that).
func roundTrips(c *conveyor) (float64, error) {
	return c.metric("conveyor_redis_round_trips_total")
}

// idleRoundTrips measures the round trips per second a replica makes
// with no load (lease polls, lease renewals), over one second.
func idleRoundTrips(c *conveyor) (float64, error) {
	a, err := roundTrips(c)
	if err != nil {
		return 0, err
	}
	time.Sleep(time.Second)
	b, err := roundTrips(c)
	return b - a, err
}

// redisSync: the sync flow with Redis dedup and the Redis rate limiter.
func (r *runner) redisSync() error {
	u, _, cleanup, err := r.redisStore("sync")
	if err != nil {
		return err
	}
	defer cleanup()
	a, err := r.startAccept("redis-sync", "bench-sync", fill(syncFlow, "{{path}}", "/bench/sync", "{{key}}", "rsync"), "/bench/sync", 200, serveOpts{redis: u}, false)
	if err != nil {
		return err
	}
	defer a.done()
	c := a.c
	idle, err := idleRoundTrips(c)
	if err != nil {
		return err
	}
	n0, _ := roundTrips(c)
	t0 := time.Now()
	res, cpu := a.measure(r)
	time.Sleep(500 * time.Millisecond) // the journal writes of the last answers land
	n1, err := roundTrips(c)
	if err != nil {
		return err
	}
	row := r.add("redis-sync", "sync flow, Redis dedup + rate limit + journal, 200", res, cpu)
	r.ratioToBaseline(row, res, a, 0.5)
	perReq := (n1 - n0 - idle*time.Since(t0).Seconds()) / float64(max(a.requests, 1))
	row.Details["redis_round_trips_per_req"] = perReq
	row.Details["redis_idle_round_trips_per_s"] = idle
	r.rep.check(row, "Redis round trips per request", perReq, "trips", "<= 2", perReq <= 2)
	return nil
}

// redisAsync: accepting into the Redis Streams queue (202 once stored),
// workers held by the sink as in the async scenario.
func (r *runner) redisAsync() error {
	u, _, cleanup, err := r.redisStore("async")
	if err != nil {
		return err
	}
	defer cleanup()
	a, err := r.startAccept("redis-async", "bench-async", fill(asyncFlow, "{{path}}", "/bench/async", "{{key}}", "rasync", "{{concurrency}}", "8"),
		"/bench/async", 202, serveOpts{redis: u}, true)
	if err != nil {
		return err
	}
	defer a.done()
	n0, err := roundTrips(a.c)
	if err != nil {
		return err
	}
	res, cpu := a.measure(r)
	n1, _ := roundTrips(a.c)
	row := r.add("redis-async", "validate+dedup+XADD, 202 (workers held)", res, cpu)
	row.Details["redis_round_trips_per_req"] = (n1 - n0) / float64(max(a.requests, 1))
	r.ratioToBaseline(row, res, a, 0.5)
	return nil
}

// redisReplicas: N queued messages delivered by one replica, then by two
// sharing the Redis queue. The sink answers after slowSinkDelay (an ERP's
// answer time) and takes any number of requests at once, so it is not the
// bottleneck: a replica delivers at most concurrency/delay messages a
// second, and a second replica adds its own workers.
func (r *runner) redisReplicas() error {
	n := r.opt.messages
	const conc = 16
	one, err := r.deliverWithReplicas(1, n, conc)
	if err != nil {
		return fmt.Errorf("one replica: %w", err)
	}
	two, err := r.deliverWithReplicas(2, n, conc)
	if err != nil {
		return fmt.Errorf("two replicas: %w", err)
	}
	row := r.add("redis-replicas", fmt.Sprintf("%d queued msgs -> sink (%s per answer), flow concurrency %d per replica", n, slowSinkDelay, conc), two.res, 0)
	row.Details["one_replica_msgs_per_s"] = one.rate
	row.Details["two_replicas_msgs_per_s"] = two.rate
	row.Details["one_replica_ms"] = ms(one.took)
	row.Details["two_replicas_ms"] = ms(two.took)
	row.Details["redeliveries"] = one.redelivered + two.redelivered
	row.Details["ceiling_one_replica_msgs_per_s"] = float64(conc) / slowSinkDelay.Seconds()
	r.rep.ratio(row, "two replicas vs one (msgs/s)", two.rate, one.rate, 1.6)
	return nil
}

type replicaRun struct {
	res         *loadResult
	rate        float64
	took        time.Duration
	redelivered int64
}

func (r *runner) deliverWithReplicas(replicas, n, conc int) (*replicaRun, error) {
	scenario := fmt.Sprintf("replicas%d", replicas)
	u, _, cleanup, err := r.redisStore(scenario)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ws, err := r.workspace("redis-"+scenario, map[string]string{
		"bench-deliver": fill(deliveryFlow, "{{path}}", "/bench/deliver", "{{key}}", "slow/"+scenario, "{{concurrency}}", strconv.Itoa(conc))})
	if err != nil {
		return nil, err
	}
	var urls []string
	for i := range replicas {
		c, err := startConveyor(r.ctx, r.bin, ws, serveOpts{redis: u, name: strconv.Itoa(i)})
		if err != nil {
			return nil, err
		}
		defer c.stop(30 * time.Second)
		urls = append(urls, c.url+"/bench/deliver")
	}
	// Fill the queue while the sink holds the first calls, through every
	// replica in turn; then time the delivery from opening the sink.
	r.sink.expect(n)
	r.sink.hold()
	defer r.sink.release()
	enq := load{Concurrency: r.opt.concurrency, Total: uint64(n), Body: orderBody, OK: statusIs(202),
		URL: func(seq uint64) string { return urls[seq%uint64(len(urls))] }}
	res := enq.run(r.ctx)
	if res.OK != uint64(n) {
		return nil, fmt.Errorf("%d of %d messages accepted: %v", res.OK, n, res)
	}
	start := time.Now()
	r.sink.release()
	if err := r.sink.wait(r.ctx, max(60*time.Second, 20*r.opt.duration)); err != nil {
		return nil, err
	}
	took := r.sink.reachedAt().Sub(start)
	return &replicaRun{res: res, rate: float64(n) / took.Seconds(), took: took,
		redelivered: r.sink.requests.Load() - int64(r.sink.distinct())}, nil
}
