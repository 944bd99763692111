package dsl

// DecodeFile exposes decodeFile to the external tests.
var DecodeFile = decodeFile
