package redisstream

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
)

// replyError is an error reply of the server, as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

// Only replies a retry cannot change dead-letter a publish; a server that
// cannot persist (MISCONF), a full client table or credentials being
// rotated are retried. MISCONF used to be taken as permanent (422).
func TestPermanentReplies(t *testing.T) {
	for msg, want := range map[string]bool{
		"WRONGTYPE Operation against a key holding the wrong kind of value": true,
		"NOPERM User app has no permissions to run the 'xadd' command":      true,
		"ERR syntax error": true,
		"ERR Error running script (call to f_x): @user_script:1: oops":                     true,
		"ERR The ID specified in XADD is equal or smaller than the target stream top item": true,
		"MISCONF Redis is configured to save RDB snapshots, but it's currently unable":     false,
		"ERR max number of clients reached":                                                false,
		"NOAUTH Authentication required.":                                                  false,
		"WRONGPASS invalid username-password pair or user is disabled.":                    false,
		"LOADING Redis is loading the dataset in memory":                                   false,
		"READONLY You can't write against a read only replica.":                            false,
		// Redis 6 wraps what a write in the publish script was refused.
		"ERR Error running script (call to f_x): @user_script:5: @user_script: 5: -READONLY You can't write against a read only replica.":       false,
		"ERR Error running script (call to f_x): @user_script:5: @user_script: 5: -OOM command not allowed when used memory > 'maxmemory'.":     false,
		"ERR Error running script (call to f_x): @user_script:5: @user_script: 5: -MISCONF Redis is configured to save RDB snapshots, but it's": false,
		"ERR Error running script (call to f_x): @user_script:5: WRONGTYPE Operation against a key holding the wrong kind of value":             true,
	} {
		if got := permanent(replyError(msg)); got != want {
			t.Errorf("%q: permanent %v, want %v", msg, got, want)
		}
	}
	if permanent(errors.New("dial tcp: connection refused")) || permanent(redis.Nil) {
		t.Error("a network error or nil reply taken as permanent")
	}
}
