package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// openIndex opens every shard model.safetensors.index.json lists and checks
// that each holds the tensors the index puts in it.
func (c *Checkpoint) openIndex(path string) error {
	b, err := readSmallFile(path, maxIndexBytes)
	if err != nil {
		return fmt.Errorf("hf: %w", err)
	}
	wm, err := parseWeightMap(b)
	if err != nil {
		return fmt.Errorf("hf: %s: %w", path, err)
	}
	// Group the tensors by shard, in name order, so that errors are
	// reproducible and each shard is opened once.
	names := make([]string, 0, len(wm))
	for n := range wm {
		names = append(names, n)
	}
	sort.Strings(names)
	byFile := map[string][]string{}
	var files []string
	for _, n := range names {
		f := wm[n]
		if err := checkShardName(f); err != nil {
			return fmt.Errorf("hf: %s: weight_map[%q] = %q: %w", path, n, f, err)
		}
		if byFile[f] == nil {
			files = append(files, f)
		}
		byFile[f] = append(byFile[f], n)
	}
	sort.Strings(files)
	for _, f := range files {
		if _, err := c.openShard(f, byFile[f][0]); err != nil {
			return err
		}
	}
	for _, f := range files {
		r := c.shards[f]
		for _, n := range byFile[f] {
			if _, ok := r.Info(n); !ok {
				return fmt.Errorf("hf: %s: tensor %q is not in this shard, where %s puts it%s: %w",
					r.Name(), n, IndexFile, c.alsoIn(n, f), ErrBadCheckpoint)
			}
			c.where[n] = f
		}
	}
	return nil
}

// alsoIn says which other shard holds tensor n, if one does.
func (c *Checkpoint) alsoIn(n, not string) string {
	for _, f := range c.files {
		if _, ok := c.shards[f].Info(n); ok && f != not {
			return fmt.Sprintf(" (it is in %s)", f)
		}
	}
	return ""
}

// checkShardName accepts a plain file name in the directory: the index
// comes from outside and must not point anywhere else.
func checkShardName(f string) error {
	switch {
	case f == "" || f == "." || f == ".." || strings.ContainsAny(f, `/\`) || filepath.IsAbs(f) || filepath.Base(f) != f:
		return fmt.Errorf("shard name is not a file name inside the checkpoint directory: %w", ErrBadCheckpoint)
	case !strings.HasSuffix(f, ".safetensors"):
		return fmt.Errorf("shard is not a .safetensors file: %w", ErrUnsupported)
	}
	return nil
}

// parseWeightMap decodes the index's weight_map, refusing a tensor listed
// twice (encoding/json would keep the last silently) and non-string values.
func parseWeightMap(b []byte) (map[string]string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrBadCheckpoint)
	}
	raw, ok := top["weight_map"]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, fmt.Errorf("weight_map is missing: %w", ErrBadCheckpoint)
	}
	bad := func(err error) error {
		return fmt.Errorf("weight_map must map tensor names to file names: %v: %w", err, ErrBadCheckpoint)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil {
		return nil, bad(err)
	} else if tok != json.Delim('{') {
		return nil, bad(fmt.Errorf("got %v", tok))
	}
	wm := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad(err)
		}
		key, _ := tok.(string) // object keys are strings
		if _, dup := wm[key]; dup {
			return nil, fmt.Errorf("weight_map lists tensor %q twice: %w", key, ErrBadCheckpoint)
		}
		if tok, err = dec.Token(); err != nil {
			return nil, bad(err)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, bad(fmt.Errorf("value of %q is %v", key, tok))
		}
		if key == "" {
			return nil, fmt.Errorf("weight_map has an empty tensor name: %w", ErrBadCheckpoint)
		}
		wm[key] = v
	}
	if len(wm) == 0 {
		return nil, fmt.Errorf("weight_map is empty: %w", ErrBadCheckpoint)
	}
	return wm, nil
}
