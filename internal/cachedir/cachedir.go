package cachedir

import (
	"os"
	"path/filepath"
)

// PipelinesEnv names the directory of the compiled-kernel cache files
// (vk.Options.PipelineCacheDir); "off" turns them off.
const PipelinesEnv = "VKLORA_PIPELINE_CACHE"

// Resolve returns the directory for value, an environment variable's
// value: value itself when set, "" (no cache) for "off", else
// os.UserCacheDir()/vklora/sub, or "" where the user has no cache
// directory (no $HOME): a cache is worth having, never worth failing for.
func Resolve(value, sub string) string {
	switch value {
	case "off":
		return ""
	case "":
		d, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(d, "vklora", sub)
	}
	return value
}

// Pipelines is the compiled-kernel cache directory from $VKLORA_PIPELINE_CACHE.
func Pipelines() string { return Resolve(os.Getenv(PipelinesEnv), "pipelines") }
