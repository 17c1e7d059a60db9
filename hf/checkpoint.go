package hf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/lora"
	"github.com/vklora/vklora/safetensors"
)

// The weight files of a checkpoint directory, as transformers saves them.
const (
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// openShard opens one safetensors file; tests replace it to count reads.
var openShard = safetensors.Open

// Checkpoint is an opened Hugging Face checkpoint directory: its config and
// the headers of its safetensors files. Tensor bytes are read only when a
// layer or tensor is asked for, one tensor at a time.
type Checkpoint struct {
	dir    string
	cfg    Config
	files  []string                       // shard file names, sorted
	shards map[string]*safetensors.Reader // by file name
	where  map[string]string              // tensor name → shard file name

	closeOnce sync.Once
	closeErr  error
	mu        sync.RWMutex
	closed    bool
}

// Open reads dir's config.json and the headers of its weights: the single
// model.safetensors when there is one (as transformers prefers it), else
// every shard that model.safetensors.index.json names. It checks that every
// listed shard exists and is a well-formed safetensors file whose tensors
// lie inside it, that every tensor is in the shard the index says, and
// that every decoder layer's projections are present with the shapes the
// config gives (before any weight is read, so a bad checkpoint fails here
// rather than at layer 20). The caller closes the Checkpoint.
func Open(dir string) (*Checkpoint, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{dir: dir, cfg: *cfg, shards: map[string]*safetensors.Reader{}, where: map[string]string{}}
	if err := c.openWeights(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.checkLayers(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Checkpoint) openWeights() error {
	single, index := filepath.Join(c.dir, SingleFile), filepath.Join(c.dir, IndexFile)
	switch {
	case isFile(single):
		r, err := c.openShard(SingleFile, "")
		if err != nil {
			return err
		}
		for _, n := range r.Names() {
			c.where[n] = SingleFile
		}
		return nil
	case isFile(index):
		return c.openIndex(index)
	}
	var bins []string
	for _, pat := range []string{"pytorch_model*.bin", "*.pt", "*.pth"} {
		m, _ := filepath.Glob(filepath.Join(c.dir, pat))
		bins = append(bins, m...)
	}
	if len(bins) > 0 {
		return fmt.Errorf("hf: %s: no %s or %s; %s is a pickle file, which is not read (convert it to safetensors): %w",
			c.dir, SingleFile, IndexFile, filepath.Base(bins[0]), ErrUnsupported)
	}
	return fmt.Errorf("hf: %s: no %s or %s: %w", c.dir, SingleFile, IndexFile, ErrBadCheckpoint)
}

// openShard opens file (a name inside dir) and registers it; example, when
// set, is a tensor the index places in it, for the error.
func (c *Checkpoint) openShard(file, example string) (*safetensors.Reader, error) {
	r, err := openShard(filepath.Join(c.dir, file))
	switch {
	case err != nil && errors.Is(err, fs.ErrNotExist) && example != "":
		return nil, fmt.Errorf("hf: shard %s, where %s puts tensor %q, is missing: %w: %w", file, IndexFile, example, err, ErrBadCheckpoint)
	case err != nil:
		return nil, fmt.Errorf("hf: %w: %w", err, ErrBadCheckpoint)
	}
	c.shards[file] = r
	c.files = append(c.files, file)
	return r, nil
}

// Dir is the checkpoint directory.
func (c *Checkpoint) Dir() string { return c.dir }

// Config returns a copy of the checkpoint's config.
func (c *Checkpoint) Config() Config { return c.cfg }

// Files lists the safetensors files read, sorted.
func (c *Checkpoint) Files() []string { return append([]string(nil), c.files...) }

// Names lists every tensor of the checkpoint, sorted.
func (c *Checkpoint) Names() []string {
	names := make([]string, 0, len(c.where))
	for n := range c.where {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Info returns the named tensor's header entry, the path of the file
// holding it, and whether the checkpoint has it.
func (c *Checkpoint) Info(name string) (info safetensors.TensorInfo, path string, ok bool) {
	r, ok := c.reader(name)
	if !ok {
		return safetensors.TensorInfo{}, "", false
	}
	info, ok = r.Info(name)
	return info, r.Name(), ok
}

func (c *Checkpoint) reader(name string) (*safetensors.Reader, bool) {
	if c == nil {
		return nil, false
	}
	f, ok := c.where[name]
	if !ok {
		return nil, false
	}
	return c.shards[f], true
}

// has reports whether the checkpoint has tensor name.
func (c *Checkpoint) has(name string) bool { _, ok := c.where[name]; return ok }

// alive fails once the checkpoint is closed.
func (c *Checkpoint) alive() error {
	if c == nil {
		return fmt.Errorf("hf: checkpoint is nil: %w", lora.ErrBadInput)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return fmt.Errorf("hf: checkpoint %s is closed: %w", c.dir, fs.ErrClosed)
	}
	return nil
}

// ReadTensor reads the named tensor's bytes into memory. For large tensors
// prefer Upload, which streams them to the device.
func (c *Checkpoint) ReadTensor(name string) (safetensors.Tensor, error) {
	if err := c.alive(); err != nil {
		return safetensors.Tensor{}, err
	}
	r, ok := c.reader(name)
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("hf: %s: no tensor %q: %w", c.dir, name, ErrBadCheckpoint)
	}
	t, err := r.ReadTensor(name)
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("hf: %w", err)
	}
	return t, nil
}

// DType is the device dtype Layer uses when given none: the config's
// torch_dtype, else the stored dtype of layer 0's q_proj weight when it is
// dense, else f32.
func (c *Checkpoint) DType() dtype.DType {
	if c.cfg.DType != 0 {
		return c.cfg.DType
	}
	if info, _, ok := c.Info(Prefix(0, Q) + ".weight"); ok {
		if d, err := safetensors.ToDType(info.DType); err == nil && d.IsFloat() {
			return d
		}
	}
	return dtype.F32
}

// Close closes every shard; it is safe to call more than once and returns
// the first call's result. Device tensors already loaded stay valid.
func (c *Checkpoint) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		var errs []error
		for _, f := range c.files {
			errs = append(errs, c.shards[f].Close())
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
