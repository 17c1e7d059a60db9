// Package vktest gives tests one shared Vulkan device with validation on, and
// fails a test that leaks device objects or triggers validation messages.
//
// A missing device fails the test (never a silent skip). Set
// VKLORA_SKIP_GPU=1 to skip GPU tests on a machine without Vulkan; CI never
// sets it.
package vktest

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/vklora/vklora/vk"
)

// testBufferCache is the shared test device's Options.BufferCacheBytes.
const testBufferCache = 64 << 20

var shared struct {
	once sync.Once
	dev  *vk.Device
	err  error
}

// Device returns the process's shared test device (opened on first use with
// validation layers when installed). At the test's end it fails the test if
// objects made during the test are still live or the validation layer
// reported anything.
func Device(t testing.TB) *vk.Device {
	t.Helper()
	shared.once.Do(func() {
		// A buffer cache on every device, lavapipe included (where it is off
		// by default): tests then run on reused memory holding earlier
		// tests' data, which catches kernels that read what they never wrote.
		shared.dev, shared.err = vk.Open(vk.Options{Select: os.Getenv("VKLORA_DEVICE"), Validation: true,
			BufferCacheBytes: testBufferCache})
	})
	if shared.err != nil {
		if os.Getenv("VKLORA_SKIP_GPU") == "1" && os.Getenv("CI") != "true" {
			t.Skipf("no Vulkan device (VKLORA_SKIP_GPU=1): %v", shared.err)
		}
		t.Fatalf("no Vulkan device: %v (install mesa-vulkan-drivers for lavapipe; VKLORA_SKIP_GPU=1 skips outside CI)", shared.err)
	}
	d := shared.dev
	before := d.Live()
	vk.ValidationMessages() // start clean: earlier tests report their own
	t.Cleanup(func() {
		if after := d.Live(); !reflect.DeepEqual(before, after) {
			t.Errorf("leaked device objects: live before %v, after %v", before, after)
		}
		if msgs := vk.ValidationMessages(); len(msgs) > 0 {
			t.Errorf("Vulkan validation reported %d messages:\n%s", len(msgs), strings.Join(msgs, "\n"))
		}
	})
	return d
}

// Main runs the package's tests and then releases the shared device, failing
// the run if it reports leaks. Use it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.dev != nil {
		if err := shared.dev.Release(); err != nil {
			fmt.Fprintln(os.Stderr, "vktest:", err)
			code = 1
		}
		if msgs := vk.ValidationMessages(); len(msgs) > 0 {
			fmt.Fprintf(os.Stderr, "vktest: validation messages at device release:\n%s\n", strings.Join(msgs, "\n"))
			code = 1
		}
	}
	os.Exit(code)
}
