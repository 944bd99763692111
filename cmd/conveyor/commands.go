package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime"
)

// target is a lint or test argument resolved to a workspace and, when a
// single file was named, that file.
type target struct {
	ws   *runtime.Workspace
	file string
}

// resolveTarget finds the workspace of path: the path itself or, for a
// folder of one (flows/, tests/), its parent; for a file, the workspace
// its folder belongs to (conveyor.yaml names the whole workspace). A path
// in no workspace is a usage error: linting it must not pass.
func resolveTarget(path string) (target, error) {
	path = filepath.Clean(path)
	info, err := os.Stat(path)
	if err != nil {
		return target{}, &exitError{2, err}
	}
	if info.IsDir() {
		for _, dir := range []string{path, filepath.Dir(path)} {
			if runtime.IsWorkspace(dir) {
				return target{ws: runtime.LoadWorkspace(dir, nil)}, nil
			}
		}
		return target{}, &exitError{2, fmt.Errorf("%s is not a workspace (a folder with conveyor.yaml or flows/), nor a folder of one", path)}
	}
	// A file the workspace never reads must not pass either: a flow beside
	// conveyor.yaml instead of in flows/, a misspelt folder, a backup copy.
	notRead := &exitError{2, fmt.Errorf("%s is not a file the workspace reads: conveyor.yaml, .yaml (.yml) files in "+
		"flows/, tests/ and mappings/, .csv files in lookups/", path)}
	if dir := filepath.Dir(path); runtime.IsWorkspace(dir) {
		if filepath.Base(path) != "conveyor.yaml" {
			return target{}, notRead
		}
		return target{ws: runtime.LoadWorkspace(dir, nil)}, nil // the whole workspace
	}
	dir := filepath.Dir(filepath.Dir(path))
	if !runtime.IsWorkspace(dir) {
		return target{}, &exitError{2, fmt.Errorf("%s is not inside a workspace (a folder with conveyor.yaml or flows/)", path)}
	}
	t := target{ws: runtime.LoadWorkspace(dir, nil), file: path}
	if !t.reads(path) {
		return target{}, notRead
	}
	return t, nil
}

// reads reports whether the workspace reads file: a .yaml or .yml file
// in flows/, tests/ or mappings/, or a .csv table in lookups/.
func (t target) reads(file string) bool {
	ext := filepath.Ext(file)
	switch t.folder(file) {
	case "flows", "tests", "mappings":
		return ext == ".yaml" || ext == ".yml"
	case "lookups":
		return ext == ".csv"
	}
	return false
}

// sameFile reports whether paths a and b name one file, however written
// (flows/x.yaml, ./flows/x.yaml, /abs/ws/flows/x.yaml).
func sameFile(a, b string) bool {
	x, err1 := filepath.Abs(a)
	y, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && x == y
}

// diagnostics are the workspace's, narrowed to the file when one was
// named: its own, those of the flow a test file tests or of a flow's test
// files, and the workspace-wide ones (conveyor.yaml, mappings, lookups);
// not those of the other flow and test files.
func (t target) diagnostics() dsl.Diagnostics {
	if t.file == "" {
		return t.ws.Diagnostics
	}
	related := []string{t.file}
	flowNamed := t.folder(t.file) == "flows"
	for file, flow := range t.ws.TestFlows {
		flowFile, known := t.ws.FlowFiles[flow]
		switch {
		case sameFile(file, t.file): // a test file: the flow it tests
			related = append(related, flowFile)
		case flowNamed && (!known || sameFile(flowFile, t.file)):
			// a flow file: its test files, broken ones too, and those that
			// cannot say which flow they test (unreadable, or naming none
			// or a flow that is not there)
			related = append(related, file)
		}
	}
	var out dsl.Diagnostics
	for _, d := range t.ws.Diagnostics {
		if slices.ContainsFunc(related, func(f string) bool { return sameFile(f, d.File) }) || !t.perFile(d.File) {
			out = append(out, d)
		}
	}
	return out
}

// perFile reports whether file is a flow or test file of the workspace.
func (t target) perFile(file string) bool {
	top := t.folder(file)
	return top == "flows" || top == "tests"
}

// folder is the workspace folder file is in (flows, tests, mappings,
// ...), "" for one outside the workspace or at its top.
func (t target) folder(file string) string {
	dir, err1 := filepath.Abs(t.ws.Dir)
	f, err2 := filepath.Abs(file)
	if err1 != nil || err2 != nil {
		return ""
	}
	rel, err := filepath.Rel(dir, f)
	if err != nil {
		return ""
	}
	top, rest, nested := strings.Cut(filepath.ToSlash(rel), "/")
	if !nested || rest == "" || top == ".." {
		return ""
	}
	return top
}

func lintCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lint PATH...",
		Short: "Check workspaces or flow files and print every finding as file:line:col",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var all dsl.Diagnostics
			nflows := 0
			for _, p := range args {
				t, err := resolveTarget(p)
				if err != nil {
					return err
				}
				for _, d := range t.diagnostics() {
					if !slices.Contains(all, d) { // a workspace-wide one, for each file named
						all = append(all, d)
					}
				}
				nflows += len(t.ws.Flows)
			}
			if asJSON {
				if all == nil {
					all = dsl.Diagnostics{}
				}
				writeJSON(cmd.OutOrStdout(), map[string]any{"diagnostics": all})
			} else {
				for _, d := range all {
					fmt.Fprintln(cmd.OutOrStdout(), d.String())
				}
			}
			if len(all) > 0 {
				return findings("%d finding(s)", len(all))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "ok: %d flow(s)\n", nflows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {\"diagnostics\": [...]} as JSON")
	return cmd
}

func testCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test PATH",
		Short: "Run flow tests (inline tests: and tests/*.yaml) with mocked calls",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := resolveTarget(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if ds := t.diagnostics(); len(ds) > 0 {
				for _, d := range ds {
					fmt.Fprintln(out, d.String())
				}
				return findings("%d finding(s): fix them before testing", len(ds))
			}
			results := runWorkspaceTests(cmd.Context(), t)
			passed, failed := 0, 0
			for _, r := range results {
				if r.Passed() {
					passed++
					fmt.Fprintf(out, "PASS %s: %s\n", r.Flow, r.Name)
					continue
				}
				failed++
				fmt.Fprintf(out, "FAIL %s: %s (%s:%d)\n", r.Flow, r.Name, r.File, r.At.Line)
				for _, f := range r.Failures {
					fmt.Fprintf(out, "    %s\n", f)
				}
				if verbose {
					b, _ := json.MarshalIndent(r.Report, "    ", "  ")
					fmt.Fprintf(out, "    report: %s\n", b)
				}
			}
			fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return findings("")
			}
			if passed == 0 {
				return findings("no tests found")
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the whole report of failed tests")
	return cmd
}

func runWorkspaceTests(ctx context.Context, t target) []flowtest.CaseResult {
	if ctx == nil {
		ctx = context.Background()
	}
	var out []flowtest.CaseResult
	ids := make([]string, 0, len(t.ws.Flows))
	for id := range t.ws.Flows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// A named flow file runs its inline tests and its test files; a named
	// test file runs its own tests.
	named := func(file string) bool { return t.file == "" || sameFile(file, t.file) }
	for _, id := range ids {
		f := t.ws.Flows[id]
		flowNamed := named(f.File)
		if flowNamed {
			for _, tc := range f.Source.Tests {
				out = append(out, flowtest.RunCase(ctx, f, tc, f.File))
			}
		}
		for _, tf := range t.ws.TestFiles {
			if tf.Flow != id || !flowNamed && !named(tf.File) {
				continue
			}
			for _, tc := range tf.Tests {
				out = append(out, flowtest.RunCase(ctx, f, tc, tf.File))
			}
		}
	}
	return out
}

func runCmd() *cobra.Command {
	var input, mocksFile string
	var headers, query, params []string
	cmd := &cobra.Command{
		Use:   "run FLOW_FILE --input FILE",
		Short: "Dry-run a flow on a sample payload and print the per-step trace as JSON (calls mocked)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := resolveTarget(args[0])
			if err != nil {
				return err
			}
			if t.file == "" {
				return &exitError{2, fmt.Errorf("%s: name a flow file", args[0])}
			}
			if ds := t.diagnostics(); len(ds) > 0 {
				for _, d := range ds {
					fmt.Fprintln(cmd.ErrOrStderr(), d.String())
				}
				return findings("%d finding(s)", len(ds))
			}
			f := t.ws.Flows[dsl.FlowID(t.file)]
			if f == nil {
				return findings("%s: flow did not load", t.file)
			}
			raw, err := readInput(input)
			if err != nil {
				return &exitError{2, err}
			}
			var body any // an empty input is no body, as for a GET
			if len(bytes.TrimSpace(raw)) > 0 {
				if body, err = jsonv.Decode(raw); err != nil {
					return findings("%s: %v", input, err)
				}
			}
			in := flowtest.Input{Body: body, Headers: map[string]string{}, Query: map[string]string{}, Params: map[string]string{}}
			for _, kv := range []struct {
				flag, sep string
				list      []string
				into      map[string]string
			}{{"--header", ":", headers, in.Headers}, {"--query", "=", query, in.Query}, {"--param", "=", params, in.Params}} {
				for _, item := range kv.list {
					k, v, ok := strings.Cut(item, kv.sep)
					if !ok {
						return &exitError{2, fmt.Errorf("%s %q: write name%svalue", kv.flag, item, kv.sep)}
					}
					kv.into[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			mocks := flowtest.Mocks{}
			if mocksFile != "" {
				if mocks, err = readMocks(mocksFile); err != nil {
					return findings("%v", err)
				}
			}
			rep := flowtest.Run(cmd.Context(), f, in, mocks)
			writeJSON(cmd.OutOrStdout(), rep)
			if rep.Outcome == flows.Failed || rep.Outcome == flows.Rejected {
				return findings("")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "JSON file with the payload (- for stdin)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "request header Name:value (repeatable)")
	cmd.Flags().StringArrayVar(&query, "query", nil, "query parameter name=value (repeatable)")
	cmd.Flags().StringArrayVar(&params, "param", nil, "path parameter name=value (repeatable)")
	cmd.Flags().StringVar(&mocksFile, "mocks", "", "YAML file: connection -> response or list of responses")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// readMocks reads a mocks file with the same syntax as a test's mocks:.
func readMocks(path string) (flowtest.Mocks, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, ds := dsl.ParseMocks(path, src)
	if len(ds) > 0 {
		return nil, ds
	}
	return flowtest.Mocks(m), nil
}

func schemaCmd() *cobra.Command {
	var kind string
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of flow files (or --kind mapping|test|config) for editors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s := dsl.JSONSchema(kind)
			if s == nil {
				return &exitError{2, fmt.Errorf("--kind %q: one of %s", kind, strings.Join(dsl.SchemaKinds(), ", "))}
			}
			writeJSON(cmd.OutOrStdout(), s)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "flow", "flow, mapping, test or config")
	return cmd
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
