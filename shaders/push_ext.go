package shaders

import "unsafe"

// DropoutPush mirrors dropout.comp's block. R and Scale are DropoutExpand's
// rank and s.
type DropoutPush struct {
	Rows, Cols, Threshold uint32
	Inv                   float32
	SeedLo, SeedHi        uint32
	OffLo, OffHi          uint32
	R                     uint32
	Scale                 float32
}

// ColPush mirrors colvec.comp's block. Chunk is OP_COLSUM's rows per
// workgroup row (0: all of them); Blocksize an NF4 weight's (OP_ROWSQ).
type ColPush struct {
	Rows, Cols       uint32
	Alpha, K         float32
	Chunk, Blocksize uint32
}

// DoraNormPush mirrors dora_norm.comp's block.
type DoraNormPush struct {
	Out, R uint32
	S      float32
}

// RowScalePush mirrors rowscale.comp's block.
type RowScalePush struct {
	Rows, Cols uint32
	Alpha      float32
}

// The sizes the shaders declare; a field added on one side only fails here.
var (
	_ [40]byte = [unsafe.Sizeof(DropoutPush{})]byte{}
	_ [24]byte = [unsafe.Sizeof(ColPush{})]byte{}
	_ [12]byte = [unsafe.Sizeof(DoraNormPush{})]byte{}
	_ [12]byte = [unsafe.Sizeof(RowScalePush{})]byte{}
)
