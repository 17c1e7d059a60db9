package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// peftSmallDir holds the vectors PEFT itself made for its extensions
// (conformance/gen/peft_vectors.py --small --seed 1, run where peft is
// installed). Until they are generated the directory does not exist.
const peftSmallDir = "../testdata/peft-small"

// TestPEFTSmallSuiteOnDevice runs every case of testdata/peft-small on the
// test device: PEFT's dropout (its own masks), lora_B bias, trainable base
// bias and DoRA, on every op, dtype and NF4 variant. The suite is skipped
// only while the directory does not exist; once it does, a missing or
// disagreeing index.json fails, as does a case without any extension.
func TestPEFTSmallSuiteOnDevice(t *testing.T) {
	if _, err := os.Stat(peftSmallDir); os.IsNotExist(err) {
		t.Skipf("%s not generated yet (conformance/gen/peft_vectors.py --small --out %s)", peftSmallDir, peftSmallDir)
	}
	cases, index := loadPEFTSuite(t, peftSmallDir)
	eng, err := lora.NewEngine(vktest.Device(t), lora.Options{})
	require.NoError(t, err)
	for _, c := range cases {
		name := filepath.Base(c.Path)
		t.Run(name, func(t *testing.T) {
			md := index[name]
			require.NotNil(t, md, "%s is not in index.json", name)
			require.Equal(t, md, c.Metadata, "index.json's metadata of %s", name)
			requirePass(t, eng, c)
		})
	}
}

// loadPEFTSuite loads every case of dir and its index.json, and checks what
// the generator promises: the index lists exactly the files, records the
// PEFT and torch versions, every case has at least one extension, and each
// tolerance follows the generator's rule. It returns the cases and the
// index's metadata by file name.
func loadPEFTSuite(t *testing.T, dir string) ([]*Case, map[string]map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err, "%s exists, so it must hold index.json", dir)
	var index struct {
		PEFT  string `json:"peft_version"`
		Torch string `json:"torch_version"`
		Files []struct {
			File     string            `json:"file"`
			Metadata map[string]string `json:"metadata"`
		} `json:"files"`
	}
	require.NoError(t, json.Unmarshal(b, &index))
	require.NotEmpty(t, index.PEFT, "index.json: peft_version")
	require.NotEmpty(t, index.Torch, "index.json: torch_version")
	cases, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, cases, len(index.Files), "index.json lists %d files, %s holds %d", len(index.Files), dir, len(cases))
	meta := map[string]map[string]string{}
	for _, f := range index.Files {
		meta[f.File] = f.Metadata
	}
	for _, c := range cases {
		name := filepath.Base(c.Path)
		require.Equal(t, index.PEFT, c.Metadata["peft_version"], name)
		require.Equal(t, index.Torch, c.Metadata["torch_version"], name)
		require.Contains(t, []string{"per_projection", "shared"}, c.Metadata["dropout_mask"], name)
		ext := false
		for _, n := range c.Projections {
			x := c.Proj[n].Ext
			ext = ext || x.Mask != nil || x.LoRABias != nil || x.Magnitude != nil || x.Bias != nil
		}
		require.True(t, ext, "%s has no extension", name)
		floor := ref.Tolerance(c.DType).Conformance
		for k, tol := range c.Tol {
			require.Equal(t, max(2*c.TorchErr[k], floor), tol, "%s %s", name, k)
		}
	}
	return cases, meta
}
