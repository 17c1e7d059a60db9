package cachedir

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	require.Equal(t, filepath.Join("/x/cache", "vklora", "pipelines"), Resolve("", "pipelines"))
	require.Equal(t, "", Resolve("off", "pipelines"))
	require.Equal(t, "/my/dir", Resolve("/my/dir", "pipelines"))
	t.Setenv(PipelinesEnv, "off")
	require.Equal(t, "", Pipelines())
	t.Setenv(PipelinesEnv, "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	require.Equal(t, "", Pipelines(), "no cache directory: no cache, no error")
}
