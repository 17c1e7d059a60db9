package hf

import "errors"

// ErrBadCheckpoint marks a checkpoint directory that is malformed or does
// not agree with itself: a config.json field out of range, an index naming
// a shard that is missing or a tensor the shard lacks, a truncated shard, a
// projection of the wrong shape or dtype.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// ErrUnsupported marks a well-formed checkpoint this package does not load:
// another architecture (model_type), a quantization other than
// bitsandbytes NF4, weights only in pickle (.bin) files.
var ErrUnsupported = errors.New("unsupported checkpoint")
