package vk

// #include <malloc.h>
// static size_t vkl_heap_in_use(void) { struct mallinfo2 m = mallinfo2(); return m.uordblks + m.hblkhd; }
import "C"

// NativeHeapInUse is the C heap in use by the process (glibc's mallinfo2:
// bytes in allocated chunks plus mmapped blocks): the memory of the driver
// and of the C calls behind this package, which the Go heap statistics do
// not see. Soak tests use it to show that a training step leaks nothing.
func NativeHeapInUse() uint64 { return uint64(C.vkl_heap_in_use()) }

// TrimNativeHeap returns the C heap's free memory to the OS (glibc's
// malloc_trim), so that the resident set counts what is in use rather than
// what the allocator keeps: soak tests call it before reading the RSS.
func TrimNativeHeap() { C.malloc_trim(0) }
