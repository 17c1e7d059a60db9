package lora

// Version is the engine's release, as tagged in the repository
// (CHANGELOG.md says what each one holds).
const Version = "v0.2.0"
