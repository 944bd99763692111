package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/conveyor-run/conveyor/examples/simulator"
	"github.com/conveyor-run/conveyor/runtime"
)

func demoCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the example workspace with its simulated ERP, WMS, channels and e-mail service, and print a curl to try",
		Args:  noWorkspaceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !runtime.IsWorkspace(f.workspace) {
				return &exitError{2, fmt.Errorf("%s is not a workspace: run from the repository root or pass --workspace", f.workspace)}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sims, err := simulator.Start(ctx, simulator.DefaultAddrs())
			if err != nil {
				return findings("simulator: %v (is another demo running?)", err)
			}
			defer sims.Close()
			getenv := func(name string) (string, bool) {
				if v, ok := os.LookupEnv(name); ok {
					return v, true
				}
				v, ok := sims.Env()[name]
				return v, ok
			}
			if f.dataDir == "" {
				if f.dataDir, err = os.MkdirTemp("", "conveyor-demo-"); err != nil {
					return findings("%v", err)
				}
				defer os.RemoveAll(f.dataDir)
			}
			f.createInboxes = true // the example's EDI inbox is not in the repository
			e, err := newEngine(f, getenv)
			if err != nil {
				return err
			}
			if err := e.Start(); err != nil {
				return findings("%v", err)
			}
			printDemo(cmd, f.workspace, e, sims)
			go reportArrivals(ctx, cmd, sims)
			return waitForSignals(e)
		},
	}
	f.register(cmd, filepath.Join("examples", "distribution"))
	cmd.Flags().Lookup("log-level").DefValue = "warn"
	_ = cmd.Flags().Set("log-level", "warn")
	return cmd
}

func printDemo(cmd *cobra.Command, ws string, e *runtime.Engine, sims *simulator.Systems) {
	sample := filepath.Join(ws, "samples", "shopify-order.json")
	secret := os.Getenv("SHOPIFY_SECRET")
	if secret == "" {
		secret = "dev-secret"
	}
	sig := "<signature>"
	if body, err := os.ReadFile(sample); err == nil {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		sig = base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, `
Conveyor demo: workspace %s, triggers on http://%s, admin on http://%s
Simulated systems: ERP %s, WMS %s, channels %s, e-mail %s

Send the sample webshop order (signed like Shopify does):

  curl -i -X POST http://%s/hooks/shopify/orders \
    -H 'Content-Type: application/json' \
    -H 'X-Shopify-Hmac-Sha256: %s' \
    -H 'X-Shopify-Shop-Domain: conveyor-goods.myshopify.com' \
    --data-binary @%s

Then see it in the ERP:      curl http://%s/sales-orders/SHP-820982911946154777
Flows, messages, dead letters (editor API, demo token):
                             curl -H 'Authorization: Bearer demo' http://%s/api/v1/flows
Metrics:                     curl http://%s/metrics | grep conveyor_messages
Edit %s and save: it reloads at once; a broken save keeps the old revision serving.

Ctrl-C stops the demo.
`, ws, e.TriggerAddr(), e.AdminAddr(), sims.ERP.URL(), sims.WMS.URL(), sims.Channels.URL(), sims.Notify.URL(),
		e.TriggerAddr(), sig, sample, strings.TrimPrefix(sims.ERP.URL(), "http://"), e.AdminAddr(), e.AdminAddr(), filepath.Join(ws, "flows", "order-capture.yaml"))
}

// reportArrivals prints what the simulated systems receive.
func reportArrivals(ctx context.Context, cmd *cobra.Command, sims *simulator.Systems) {
	seen := map[string]int{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, s := range sims.All() {
			recs := s.Received()
			for _, r := range recs[seen[s.Name()]:] {
				note := ""
				if r.Replay {
					note = " (replayed by Idempotency-Key)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s received %s %s -> %d%s\n", strings.ToUpper(s.Name()), r.Method, r.Path, r.Status, note)
			}
			seen[s.Name()] = len(recs)
		}
	}
}
