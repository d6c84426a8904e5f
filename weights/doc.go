// Package weights reads and writes safetensors checkpoints and the configuration files of a
// diffusers pipeline folder.
//
// Safetensors files are memory-mapped read-only (see Open); tensors are converted to float32
// on request (F32, F16 and BF16 are supported; I64 and U8 tensors have their own accessors).
// Sharded checkpoints (*.safetensors.index.json) are read as a Set, and OpenComponent finds the
// weights of one component of a diffusers folder. Source abstracts over files, sets and
// in-memory tensors (MemSource) so models can be built from any of them.
//
// The configuration side mirrors diffusers' JSON files: ReadModelIndex, OpenFolder and the typed
// configs (UNetConfig, ControlNetConfig, CLIPTextConfig, TinyVAEConfig, KLVAEConfig) apply
// diffusers' defaults for missing fields and reject values this project does not implement,
// naming the field and the value. The scheduler's configuration is read by sampler.ParseConfig
// (the one parser of scheduler_config.json).
package weights
