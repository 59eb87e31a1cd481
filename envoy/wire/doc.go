// Package wire encodes and decodes the protobuf wire format of the
// messages on scopegate's decision path by hand, where the protobuf
// runtime costs more than the decision itself: the ext_authz CheckRequest
// (DecodeCheckRequest, and ScanCheckRequest, which only finds the fields a
// decision reads), the CheckResponse (AppendCheckResponse) and an
// allow straight from its decision (AppendAllow). It also holds the one
// table of field numbers (fields.go) that these coders, the server's gRPC
// codec and the load generator's request encoder and reply decoder use.
//
// Every coder covers the messages Envoy and scopegate exchange and reports
// false on anything else, so that its caller runs the protobuf runtime
// instead: what comes out is always what proto.Marshal or proto.Unmarshal
// would have produced (ScanCheckRequest leaves the strings it finds
// unchecked, for the translation to check those it reads). Tests pin the field table to the generated
// descriptors, and fuzz targets hold the coders to the runtime both ways.
//
// The package does no I/O: it turns bytes into messages and back. The gRPC
// codec (buffers, pools, the choice of coder per message) is the server's.
package wire
