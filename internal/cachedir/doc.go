// Package cachedir resolves where the commands (lorabench, lorafit) keep
// what they cache between runs for a device, such as its compiled kernels:
// a directory an environment variable names, "off" for none, else one
// under os.UserCacheDir()/vklora.
package cachedir
