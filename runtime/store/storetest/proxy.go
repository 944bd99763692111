package storetest

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Proxy is a TCP proxy in front of a server, for outage tests that must
// not disturb a shared server: Down drops every connection and refuses new
// ones, Stall accepts but never answers (a hung server), Up restores.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	mode   string // up, down, stall
	conns  map[net.Conn]bool
	lose   []byte // see LoseAnswer
	after  func()
	slow   []byte // see DelayAnswer
	delay  time.Duration
}

// NewProxy listens on 127.0.0.1:0 and forwards to target until t ends.
func NewProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, mode: "up", conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.set("down") })
	return p
}

// Through is the Redis URL url with the proxy's address for the server's,
// and options (go-redis URL options, e.g. "read_timeout=300ms") added.
func (p *Proxy) Through(url, options string) string {
	url = strings.Replace(url, p.target, p.Addr, 1)
	if options == "" {
		return url
	}
	if strings.Contains(url, "?") {
		return url + "&" + options
	}
	return url + "?" + options
}

// Up forwards again.
func (p *Proxy) Up() { p.set("up") }

// Down closes every connection and refuses new ones.
func (p *Proxy) Down() { p.set("down") }

// Stall closes every connection; new ones are accepted and never answered.
func (p *Proxy) Stall() { p.set("stall") }

// LoseAnswer makes the proxy pass on the next command that contains
// marker and cut its connection before the answer comes back: the command
// runs, and the client sees a broken connection, as with a reply lost in
// the network (go-redis then sends the command again). after, when not
// nil, runs once the connection is cut.
func (p *Proxy) LoseAnswer(marker string, after func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lose, p.after = []byte(marker), after
}

// DelayAnswer makes the proxy pass on the next command that contains
// marker and hold back the answers of its connection for d: the command
// runs, and a client whose read timeout is shorter than d gives up on the
// connection (go-redis then sends the command again on another one).
func (p *Proxy) DelayAnswer(marker string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slow, p.delay = []byte(marker), d
}

// delays reports how long to hold back the answers to chunk (and disarms
// DelayAnswer when chunk holds its command).
func (p *Proxy) delays(chunk []byte) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slow == nil || !bytes.Contains(chunk, p.slow) {
		return 0
	}
	p.slow = nil
	return p.delay
}

// cuts reports whether chunk holds the command LoseAnswer waits for (and
// disarms it), with what to run after the cut.
func (p *Proxy) cuts(chunk []byte) (bool, func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lose == nil || !bytes.Contains(chunk, p.lose) {
		return false, nil
	}
	after := p.after
	p.lose, p.after = nil, nil
	return true, after
}

func (p *Proxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	if mode != "up" {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == "down" {
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		switch mode {
		case "down":
			c.Close()
		case "stall":
			if !p.track(c) {
				c.Close()
			}
		default:
			go p.forward(c)
		}
	}
}

func (p *Proxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, s) {
		c.Close()
		s.Close()
		return
	}
	var drop atomic.Bool   // the answers from here on are lost
	var until atomic.Int64 // unix ns: the answers wait until then
	go func() {
		defer s.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				cut, after := p.cuts(buf[:n])
				drop.Store(drop.Load() || cut)
				if d := p.delays(buf[:n]); d > 0 {
					until.Store(time.Now().Add(d).UnixNano())
				}
				if _, err := s.Write(buf[:n]); err != nil {
					return
				}
				if cut {
					time.Sleep(50 * time.Millisecond) // the server runs it
					c.Close()
					if after != nil {
						after()
					}
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		time.Sleep(time.Until(time.Unix(0, until.Load())))
		if n > 0 && !drop.Load() {
			if _, err := c.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
}

// RedisProxy is the test Redis's URL (RedisURL) and a Proxy in front of
// it; p.Through(url, options) is the URL through the proxy.
func RedisProxy(t testing.TB) (url string, p *Proxy) {
	t.Helper()
	url = RedisURL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return url, NewProxy(t, opt.Addr)
}
