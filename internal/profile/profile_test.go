package profile

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/vk"
)

// Write lists the dispatches in order, then the kernels by total time,
// largest first, with their counts and shares; nil writes nothing.
func TestWrite(t *testing.T) {
	prof := []vk.DispatchTime{
		{Kernel: "add", Groups: [3]uint32{4, 1, 1}, Time: time.Millisecond},
		{Kernel: "matmul", Groups: [3]uint32{8, 2, 1}, Time: 3 * time.Millisecond},
		{Kernel: "add", Groups: [3]uint32{4, 1, 1}, Time: 4 * time.Millisecond},
	}
	var b strings.Builder
	Write(&b, "of step 6", prof)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 1+3+2)
	require.Equal(t, "profile of step 6: 3 dispatches, 8.000 ms in all", lines[0])
	require.Contains(t, lines[2], "matmul")
	require.Contains(t, lines[2], "grid     8×2    ×1")
	require.Regexp(t, `^\s+add\s+×2\s+5\.000 ms\s+62\.5%$`, lines[4], "the larger total first")
	require.Regexp(t, `^\s+matmul\s+×1\s+3\.000 ms\s+37\.5%$`, lines[5])
	Write(nil, "x", prof) // no panic, nothing written
}
