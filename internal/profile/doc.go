// Package profile prints a per-dispatch profile of one recorded step
// (vk.Recorder.SetProfile, Profile) the way the CLIs show it: every
// dispatch with its grid and GPU time, then the time per kernel, largest
// first. lorabench -profile and lorafit -profile share it.
package profile
