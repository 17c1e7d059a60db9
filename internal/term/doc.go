// Package term tells the commands (lorabench, lorafit) whether they write
// to a terminal, so that their progress lines redraw in place there and
// print plain lines elsewhere, without a dependency on golang.org/x/term.
package term
