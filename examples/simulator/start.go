package simulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Addrs are the listen addresses of the simulated systems. An empty field
// takes its default from DefaultAddrs; "127.0.0.1:0" picks a free port.
type Addrs struct {
	ERP, WMS, Channels, Notify, Carrier, Marketplace string
}

// DefaultAddrs are the addresses the example workspace's conveyor.yaml
// points at: 127.0.0.1:9101 (ERP) to :9104 (notify), :9105 (carrier) and
// :9106 (marketplace).
func DefaultAddrs() Addrs {
	return Addrs{
		ERP:         "127.0.0.1:9101",
		WMS:         "127.0.0.1:9102",
		Channels:    "127.0.0.1:9103",
		Notify:      "127.0.0.1:9104",
		Carrier:     "127.0.0.1:9105",
		Marketplace: "127.0.0.1:9106",
	}
}

// EphemeralAddrs puts every system on a free loopback port, for tests.
func EphemeralAddrs() Addrs {
	const free = "127.0.0.1:0"
	return Addrs{ERP: free, WMS: free, Channels: free, Notify: free, Carrier: free, Marketplace: free}
}

// Systems are the simulated systems, served by Start.
type Systems struct {
	ERP, WMS, Channels, Notify, Carrier, Marketplace *System

	servers   []*http.Server
	closeOnce sync.Once
	closeErr  error
}

// New returns the systems without serving them, for use as http.Handlers.
func New() *Systems {
	return &Systems{ERP: NewERP(), WMS: NewWMS(), Channels: NewChannels(), Notify: NewNotify(), Carrier: NewCarrier(), Marketplace: NewMarketplace()}
}

// All returns the systems in a fixed order: erp, wms, channels, notify,
// carrier, marketplace.
func (ss *Systems) All() []*System {
	return []*System{ss.ERP, ss.WMS, ss.Channels, ss.Notify, ss.Carrier, ss.Marketplace}
}

// Start listens on addrs and serves every system until ctx is done or
// Close is called. It returns once all listeners are open, so the URLs
// are ready; on error nothing stays open.
func Start(ctx context.Context, addrs Addrs) (*Systems, error) {
	def := DefaultAddrs()
	pick := func(a, d string) string {
		if a == "" {
			return d
		}
		return a
	}
	ss := New()
	listen := []struct {
		sys  *System
		addr string
	}{
		{ss.ERP, pick(addrs.ERP, def.ERP)},
		{ss.WMS, pick(addrs.WMS, def.WMS)},
		{ss.Channels, pick(addrs.Channels, def.Channels)},
		{ss.Notify, pick(addrs.Notify, def.Notify)},
		{ss.Carrier, pick(addrs.Carrier, def.Carrier)},
		{ss.Marketplace, pick(addrs.Marketplace, def.Marketplace)},
	}
	var lc net.ListenConfig
	ls := make([]net.Listener, 0, len(listen))
	for _, x := range listen {
		l, err := lc.Listen(ctx, "tcp", x.addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("simulator: %s: %w", x.sys.name, err)
		}
		ls = append(ls, l)
	}
	for i, x := range listen {
		x.sys.mu.Lock()
		x.sys.url = "http://" + ls[i].Addr().String()
		x.sys.mu.Unlock()
		srv := &http.Server{Handler: x.sys, ReadHeaderTimeout: 10 * time.Second}
		ss.servers = append(ss.servers, srv)
		go srv.Serve(ls[i])
	}
	go func() {
		<-ctx.Done()
		ss.Close()
	}()
	return ss, nil
}

// Close stops serving: in-flight requests get a second to finish. It is
// safe to call more than once.
func (ss *Systems) Close() error {
	ss.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var errs []error
		for _, srv := range ss.servers {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
				if !errors.Is(err, context.DeadlineExceeded) {
					errs = append(errs, err)
				}
			}
		}
		ss.closeErr = errors.Join(errs...)
	})
	return ss.closeErr
}

// URLs returns the base URL of each served system by connection name
// (erp, wms, channels, notify, carrier, marketplace).
func (ss *Systems) URLs() map[string]string {
	out := map[string]string{}
	for _, s := range ss.All() {
		out[s.name] = s.URL()
	}
	return out
}

// Env returns the environment variables the example workspace's
// conveyor.yaml reads for its connection URLs (ERP_URL, WMS_URL,
// CHANNELS_URL, NOTIFY_URL, CARRIER_URL, MARKETPLACE_URL), set to the
// served URLs.
func (ss *Systems) Env() map[string]string {
	return map[string]string{
		"ERP_URL":         ss.ERP.URL(),
		"WMS_URL":         ss.WMS.URL(),
		"CHANNELS_URL":    ss.Channels.URL(),
		"NOTIFY_URL":      ss.Notify.URL(),
		"CARRIER_URL":     ss.Carrier.URL(),
		"MARKETPLACE_URL": ss.Marketplace.URL(),
	}
}

// Orders returns the number of sales orders the ERP created.
func (ss *Systems) Orders() int { return ss.ERP.Orders() }

// Replays returns the idempotent replays of all systems together.
func (ss *Systems) Replays() int {
	n := 0
	for _, s := range ss.All() {
		n += s.Replays()
	}
	return n
}

// Reset resets every system (see System.Reset).
func (ss *Systems) Reset() {
	for _, s := range ss.All() {
		s.Reset()
	}
}
