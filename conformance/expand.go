package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Expand turns files and directories into a sorted, duplicate-free list of
// .safetensors files. Directories contribute their .safetensors entries (not
// recursively); a named file must itself end in .safetensors, so a typo'd
// argument fails loudly instead of silently testing nothing.
func Expand(paths ...string) ([]string, error) {
	seen := map[string]bool{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if !strings.HasSuffix(p, ".safetensors") {
				return nil, fmt.Errorf("conformance: %s is not a .safetensors file", p)
			}
			seen[filepath.Clean(p)] = true
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".safetensors") {
				seen[filepath.Join(p, e.Name())] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// LoadDir loads every case in dir (see Expand), failing on the first bad
// file; an empty directory is an error.
func LoadDir(dir string) ([]*Case, error) {
	return LoadAll(dir)
}

// LoadAll loads every case named by paths (files or directories).
func LoadAll(paths ...string) ([]*Case, error) {
	files, err := Expand(paths...)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("conformance: no .safetensors files in %v", paths)
	}
	cases := make([]*Case, 0, len(files))
	for _, p := range files {
		c, err := Load(p)
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	return cases, nil
}
