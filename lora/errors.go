package lora

import "errors"

// ErrBadInput marks errors caused by the caller's arguments (shapes, dtypes,
// nil or released tensors, non-finite scales). The engine stays usable.
var ErrBadInput = errors.New("bad input")
