package flows

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterIsBounded(t *testing.T) {
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"3600", time.Hour},
		{"315360000", maxRetryAfter}, // ten years: an hour
		{"99999999999999999999", 0},  // beyond uint64: not a number, ignored
		{"-5", 0},
		{"soon", 0},
		{time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat), 0},
		{time.Now().AddDate(5, 0, 0).UTC().Format(http.TimeFormat), maxRetryAfter},
	} {
		got := retryAfter(map[string]string{"retry-after": c.v})
		if got != c.want {
			t.Errorf("Retry-After %q: %v; want %v", c.v, got, c.want)
		}
	}
	at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	if got := retryAfter(map[string]string{"Retry-After": at}); got < 85*time.Second || got > 90*time.Second {
		t.Errorf("Retry-After %q: %v; want about 90s", at, got)
	}
}
