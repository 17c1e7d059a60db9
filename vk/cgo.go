package vk

// #cgo LDFLAGS: -ldl -lpthread
// #cgo CFLAGS: -O2 -Wall -Wno-unused-function
// #include "shim.h"
import "C"
