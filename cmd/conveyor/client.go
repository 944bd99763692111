package main

// The commands in this file talk to a running server through the editor
// API; they hold no logic of their own beyond presenting its answers.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// clientCmds are the commands that drive a running server through its
// editor API: conveyor flows list, conveyor dlq list and conveyor dlq replay.
func clientCmds() []*cobra.Command {
	return []*cobra.Command{flowsCmd(), dlqCmd()}
}

// apiClient calls the editor API of a running server.
type apiClient struct {
	server, token string
	http          *http.Client
	long          *http.Client // for a bulk operation, which takes as long as it has work
}

// register adds --server and --token to cmd and its subcommands.
func (c *apiClient) register(cmd *cobra.Command) {
	server := os.Getenv("CONVEYOR_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8081"
	}
	cmd.PersistentFlags().StringVar(&c.server, "server", server, "admin address of the server (env CONVEYOR_SERVER)")
	cmd.PersistentFlags().StringVar(&c.token, "token", "", "API token (default env CONVEYOR_TOKEN)")
	c.http, c.long = &http.Client{Timeout: 60 * time.Second}, &http.Client{}
	// Alone, cmd prints its help; a word that names none of its
	// subcommands is a usage error (cobra would print the help and exit 0,
	// so "conveyor dlq replya ID" would pass for done).
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	cmd.PersistentPreRunE = func(run *cobra.Command, _ []string) error {
		if run == cmd {
			return nil // its help needs no token
		}
		if c.token == "" {
			c.token = os.Getenv("CONVEYOR_TOKEN")
		}
		if c.token == "" {
			return &exitError{2, errors.New("no API token: pass --token or set CONVEYOR_TOKEN")}
		}
		return nil
	}
}

// call sends body (JSON) to the API and decodes the answer into out. An
// error answer becomes an exit-1 error with the API's message.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	return c.send(ctx, c.http, method, path, body, out)
}

func (c *apiClient) send(ctx context.Context, hc *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	base := strings.TrimRight(c.server, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/api/v1"+path, rd)
	if err != nil {
		return &exitError{2, fmt.Errorf("--server %q: %w", c.server, err)}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return findings("cannot reach %s: %v (is conveyor serve running? see --server)", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return findings("reading the answer of %s: %v", base, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		msg := fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			msg = fmt.Sprintf("%s (%d %s)", e.Error.Message, resp.StatusCode, e.Error.Code)
		}
		return &exitError{1, &answerError{resp.StatusCode, msg}}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return findings("%s %s: unexpected answer: %v", method, path, err)
		}
	}
	return nil
}

// answerError is an error answer of the API.
type answerError struct {
	status int
	msg    string
}

func (e *answerError) Error() string { return e.msg }

// denied reports whether err is the API refusing the token (401, 403):
// no use trying the next message.
func denied(err error) bool {
	return answered(err, http.StatusUnauthorized) || answered(err, http.StatusForbidden)
}

// answered reports whether err is the API's answer with status.
func answered(err error, status int) bool {
	var ee *exitError
	var ae *answerError
	return errors.As(err, &ee) && errors.As(ee.err, &ae) && ae.status == status
}

func flowsCmd() *cobra.Command {
	var c apiClient
	cmd := &cobra.Command{Use: "flows", Short: "Manage the flows of a running server"}
	c.register(cmd)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List flows with their status, live revision and queue",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Flows []struct {
					ID          string `json:"id"`
					Description string `json:"description"`
					Trigger     string `json:"trigger"`
					Revision    int    `json:"revision"`
					Status      string `json:"status"`
					Diagnostics []any  `json:"diagnostics"`
					Stats       struct {
						Queued       int `json:"queued"`
						DeadLettered int `json:"dead_lettered"`
					} `json:"stats"`
				} `json:"flows"`
			}
			var raw json.RawMessage
			if err := c.call(cmd.Context(), http.MethodGet, "/flows", nil, &raw); err != nil {
				return err
			}
			if asJSON { // all of it, not the fields of the table
				writeJSON(cmd.OutOrStdout(), raw)
				return nil
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return findings("GET /flows: unexpected answer: %v", err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tREV\tQUEUED\tTRIGGER\tDESCRIPTION")
			for _, f := range out.Flows {
				status := f.Status
				if n := len(f.Diagnostics); n > 0 {
					status = fmt.Sprintf("%s (%d errors)", status, n)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", f.ID, status, f.Revision, f.Stats.Queued, f.Trigger, clip(f.Description, 50))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.AddCommand(list)
	return cmd
}

// deadLetter is a dead letter as the list shows it.
type deadLetter struct {
	ID         string    `json:"id"`
	Flow       string    `json:"flow"`
	Revision   int       `json:"revision"`
	DedupKey   string    `json:"dedup_key"`
	UpdatedAt  time.Time `json:"updated_at"`
	Attempt    int       `json:"attempt"`
	FailedStep string    `json:"failed_step"`
	Error      string    `json:"error"`
}

// deadLetters reads a page of dead letters, from cursor (the next of
// the page before) when it is set; next is set when the page is full.
func (c *apiClient) deadLetters(ctx context.Context, flow string, limit int, cursor string) (dls []deadLetter, next string, err error) {
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if flow != "" {
		q.Set("flow", flow)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out struct {
		Messages []deadLetter `json:"messages"`
		Next     string       `json:"next"`
	}
	err = c.call(ctx, http.MethodGet, "/dead-letters?"+q.Encode(), nil, &out)
	return out.Messages, out.Next, err
}

func dlqCmd() *cobra.Command {
	var c apiClient
	cmd := &cobra.Command{Use: "dlq", Short: "List and replay the dead letters of a running server"}
	c.register(cmd)
	cmd.AddCommand(dlqListCmd(&c), dlqReplayCmd(&c))
	return cmd
}

func dlqListCmd(c *apiClient) *cobra.Command {
	var flow, cursor string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 || limit > 1000 {
				return &exitError{2, fmt.Errorf("--limit %d: a number from 1 to 1000", limit)}
			}
			dls, next, err := c.deadLetters(cmd.Context(), flow, limit, cursor)
			if err != nil {
				return err
			}
			if next != "" {
				defer fmt.Fprintf(cmd.ErrOrStderr(), "(%d shown; the next page: --cursor %s)\n", len(dls), next)
			}
			if asJSON {
				writeJSON(cmd.OutOrStdout(), dls)
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFLOW\tREV\tSTEP\tATTEMPTS\tDIED\tKEY\tERROR")
			for _, d := range dls {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.Flow, d.Revision, d.FailedStep, d.Attempt,
					d.UpdatedAt.Local().Format("2006-01-02 15:04:05"), d.DedupKey, clip(d.Error, 70))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&flow, "flow", "", "only this flow's dead letters")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (1-1000)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "start after the page that named this cursor")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dlqReplayCmd(c *apiClient) *cobra.Command {
	var flow, from, revision string
	var all bool
	cmd := &cobra.Command{
		Use:   "replay [ID...] | --all [--flow F]",
		Short: "Replay dead letters: the named ones, or --all (of --flow)",
		Long: `Replay dead letters on their flow. Only dead letters are replayed, so replaying
twice never delivers twice. --from start (default) runs every step again but
skips calls and publications that succeeded before; --from failed_step resumes at
the checkpoint and needs the revision the message failed on (--revision pinned,
or an unchanged flow). --revision current (default) runs the live revision.`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			switch {
			case all == (len(ids) > 0):
				return &exitError{2, errors.New("name dead letters by id, or pass --all (with --flow to narrow it)")}
			case flow != "" && !all:
				return &exitError{2, errors.New("--flow selects dead letters for --all; with ids, leave it out")}
			case from != "start" && from != "failed_step":
				return &exitError{2, fmt.Errorf("--from %q: start or failed_step", from)}
			case revision != "current" && revision != "pinned":
				return &exitError{2, fmt.Errorf("--revision %q: current or pinned", revision)}
			}
			opts := map[string]string{"from": from, "revision": revision}
			ctx := cmd.Context()
			bar := &progressBar{w: cmd.ErrOrStderr(), total: len(ids), show: len(ids) > 1}
			var failures []string
			replay := func(id string) error {
				err := c.call(ctx, http.MethodPost, "/dead-letters/"+url.PathEscape(id)+"/replay", opts, nil)
				if denied(err) {
					bar.finish()
					return err
				} else if err != nil {
					failures = append(failures, id+": "+err.Error())
					bar.failed++
				}
				bar.done++
				bar.draw()
				return nil
			}
			if all {
				// The server replays them all in one request: listing them
				// here would see the newest 1000 only, and a replay that
				// fails again comes back as the newest.
				which := "every dead letter"
				if flow != "" {
					which += " of flow " + flow
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "replaying "+which+" on the server ...")
				var res struct {
					Replayed int      `json:"replayed"`
					Errors   []string `json:"errors"`
				}
				body := map[string]any{"filter": map[string]any{"flow": flow, "all": flow == ""}, "from": from, "revision": revision}
				if err := c.send(ctx, c.long, http.MethodPost, "/dead-letters/replay", body, &res); err != nil {
					return err
				}
				if flow != "" && res.Replayed+len(res.Errors) == 0 {
					// none: say so when the flow is not there at all (a typo)
					if err := c.call(ctx, http.MethodGet, "/flows/"+url.PathEscape(flow), nil, nil); answered(err, http.StatusNotFound) {
						return findings("flow %s does not exist on %s", flow, c.server)
					}
				}
				bar.done, bar.failed, failures = res.Replayed+len(res.Errors), len(res.Errors), res.Errors
			} else {
				for _, id := range ids {
					if err := replay(id); err != nil {
						return err
					}
				}
			}
			bar.finish()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "replayed %d of %d dead letter(s)\n", bar.done-bar.failed, bar.done)
			for _, f := range failures {
				fmt.Fprintln(cmd.ErrOrStderr(), "  "+f)
			}
			if len(failures) > 0 {
				return findings("%d replay(s) failed", len(failures))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&flow, "flow", "", "with --all: only this flow's dead letters")
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter (of --flow)")
	cmd.Flags().StringVar(&from, "from", "start", "start or failed_step")
	cmd.Flags().StringVar(&revision, "revision", "current", "current or pinned")
	return cmd
}

// progressBar draws "[#####.....] 5/10, 1 failed" on one terminal line.
type progressBar struct {
	w                   io.Writer
	total, done, failed int
	show, drawn         bool
}

func (p *progressBar) draw() {
	if !p.show {
		return
	}
	const width = 30
	filled := width
	if p.total > 0 {
		filled = width * p.done / p.total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.done, p.total)
	if p.failed > 0 {
		fmt.Fprintf(p.w, ", %d failed", p.failed)
	}
	p.drawn = true
}

func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// clip shortens s to n runes for a table cell.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
