// Command conveyor is the CLI of the Conveyor integration runtime: lint,
// test and dry-run flows, print the JSON Schema, and (later) serve.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	_ "github.com/conveyor-run/conveyor/connectors/all" // the connectors compiled in
)

// exitError carries an exit code: 1 for findings or failures, 2 for usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func findings(format string, args ...any) error {
	return &exitError{1, fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI and returns its exit code: 0 ok, 1 findings or
// failures, 2 usage.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err.Error() != "" {
			fmt.Fprintln(stderr, "conveyor:", ee.err)
		}
		return ee.code
	}
	// Anything cobra rejects (unknown flag, wrong arguments) is usage.
	fmt.Fprintln(stderr, "conveyor:", err)
	return 2
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "conveyor",
		Short:         "Conveyor keeps webshops, ERP, WMS and carriers in sync with flows written in YAML",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(lintCmd(), testCmd(), runCmd(), schemaCmd(), serveCmd(), demoCmd())
	root.AddCommand(clientCmds()...)
	return root
}
