package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithin runs lorabench args and fails the test if it does not return
// within d (a check that blocks on a FIFO or reads /dev/zero forever).
func runWithin(t *testing.T, d time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	type res struct {
		code           int
		stdout, stderr string
	}
	done := make(chan res, 1)
	go func() {
		var out, errb bytes.Buffer
		c := run(args, &out, &errb)
		done <- res{c, out.String(), errb.String()}
	}()
	select {
	case r := <-done:
		t.Logf("lorabench %s → %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		return r.code, r.stdout, r.stderr
	case <-time.After(d):
		t.Fatalf("lorabench %s did not return within %v", strings.Join(args, " "), d)
	}
	return
}

// TestCheckNonRegularFiles: a FIFO and a link to /dev/zero named
// .safetensors are refused without being opened or read (exit 1), each
// named once in its message, and they do not stop the regular files.
func TestCheckNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.safetensors")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	zero := filepath.Join(dir, "zero.safetensors")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runWithin(t, 30*time.Second, "check", dir)
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	for _, p := range []string{fifo, zero} {
		if strings.Count(stderr, p) != 1 || !strings.Contains(stderr, p+": not a regular file") {
			t.Errorf("stderr should name %s once, as not a regular file:\n%s", p, stderr)
		}
	}
	if !strings.Contains(stderr, "(a named pipe)") || !strings.Contains(stderr, "(a character device)") {
		t.Errorf("stderr does not say what the files are:\n%s", stderr)
	}
	// Named directly, too.
	if code, _, stderr := runWithin(t, 30*time.Second, "check", zero); code != exitError || strings.Count(stderr, zero) != 1 {
		t.Errorf("check %s: exit %d, stderr %q", zero, code, stderr)
	}
}

// TestCheckWithRegularFile: a good file beside a FIFO still runs.
func TestCheckWithRegularFile(t *testing.T) {
	needGPU(t)
	dir := t.TempDir()
	src, err := filepath.Glob("../../testdata/small/*.safetensors")
	if err != nil || len(src) == 0 {
		t.Fatal("no testdata/small files", err)
	}
	b, err := os.ReadFile(src[0])
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, filepath.Base(src[0]))
	if err := os.WriteFile(good, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "zz.safetensors"), 0o600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	code, out, _ := runWithin(t, 5*time.Minute, "check", dir)
	if code != exitError || !strings.Contains(out, "2 files, 0 tensors failed, 1 files could not run") || !strings.Contains(out, "PASS") {
		t.Errorf("exit %d; want %d with the good file's rows:\n%s", code, exitError, out)
	}
}

// countingReader yields zeros after prefix forever and counts what was read.
type countingReader struct {
	prefix []byte
	n      int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		if r.n < int64(len(r.prefix)) {
			p[i] = r.prefix[r.n]
		} else {
			p[i] = 0
		}
		r.n++
	}
	return len(p), nil
}

func header(h string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return append(b, h...)
}

// TestReadSafetensorsBounded: the reader reads the header, then no more
// than it promises, and refuses a file whose size disagrees before
// allocating or reading its data.
func TestReadSafetensorsBounded(t *testing.T) {
	const h = `{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	// A 1 TiB file (a sparse file, or a device that claims a size) whose
	// header promises 8 bytes of data.
	r := &countingReader{prefix: header(h)}
	_, err := readSafetensors(r, 1<<40)
	if err == nil || !strings.Contains(err.Error(), "its header promises 70 (8 + 54 header + 8 data)") {
		t.Errorf("1 TiB file: %v", err)
	}
	if r.n > int64(8+len(h)) {
		t.Errorf("read %d bytes, more than the %d of the length and header", r.n, 8+len(h))
	}
	// A header length beyond the limit is refused after 8 bytes.
	r = &countingReader{prefix: binary.LittleEndian.AppendUint64(nil, 1<<50)}
	if _, err := readSafetensors(r, 1<<60); err == nil || !strings.Contains(err.Error(), "header length") || r.n > 8 {
		t.Errorf("huge header length: %v after %d bytes", err, r.n)
	}
	// The exact size reads the whole file.
	r = &countingReader{prefix: header(h)}
	b, err := readSafetensors(io.LimitReader(r, int64(8+len(h)+8)), int64(8+len(h)+8))
	if err != nil || len(b) != 8+len(h)+8 {
		t.Errorf("exact file: %d bytes, %v", len(b), err)
	}
}

// TestCheckErrors: flag errors exit 2 and print once; paths are named
// once; a sparse file far larger than its header promises is refused.
func TestCheckErrors(t *testing.T) {
	code, _, stderr := runCmd(t, "check", "-bogus")
	if code != exitUsage || strings.Count(stderr, "-bogus") != 1 {
		t.Errorf("check -bogus: exit %d, stderr %q; want %d and the error once", code, stderr, exitUsage)
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.safetensors")
	if err := os.WriteFile(big, header(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<30); err != nil { // sparse: 1 GiB of holes
		t.Fatal(err)
	}
	code, _, stderr = runWithin(t, 30*time.Second, "check", big)
	if code != exitError || strings.Count(stderr, big) != 1 || !strings.Contains(stderr, "header promises") {
		t.Errorf("sparse 1 GiB file: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "check", filepath.Join(dir, "missing.safetensors"))
	if code != exitError || strings.Count(stderr, "missing.safetensors") != 1 {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "check", dir+"/nothing-here.txt")
	if code != exitError || strings.Count(stderr, "nothing-here.txt") != 1 {
		t.Errorf("not .safetensors: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "check", t.TempDir())
	if code != exitError || strings.Contains(stderr, "check: check") {
		t.Errorf("empty directory: exit %d, stderr %q", code, stderr)
	}
}

// TestCheckValidationLayer: messages from the validation layer fail a check
// whose tensors all passed (exit 1).
func TestCheckValidationLayer(t *testing.T) {
	needGPU(t)
	fakeValidation(t)
	src, _ := filepath.Glob("../../testdata/small/*.safetensors")
	if len(src) == 0 {
		t.Fatal("no testdata/small files")
	}
	code, out, stderr := runCmd(t, "check", src[0])
	if code != exitError || !strings.Contains(out, "0 tensors failed, 0 files could not run") ||
		!strings.Contains(stderr, "validation layer reported 1 messages") {
		t.Errorf("exit %d; want %d for the validation layer's message", code, exitError)
	}
}
