package main

import (
	"fmt"
	"io"
)

// cmdCheck will check results files (FILE|DIR...). Not yet implemented: this
// file is reserved for the engineer who implements it.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "check: not yet implemented")
	return errReported
}
