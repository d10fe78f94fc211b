// Package codec turns typed keys and values into record bytes and back. It
// has no dependencies beyond the standard library, so every whippet package
// (producer, consumer, retry, kvstore, atomicstore) shares one [Codec] type
// and one [ErrDecode] without pulling in each other.
//
// [Bytes], [String] and [JSON] cover the common cases. A decode failure
// wraps [ErrDecode]: a consumer treats such a record as a poison pill and
// dead-letters it at once (reason "decode") instead of retrying it. Custom
// codecs should wrap ErrDecode (and [ErrEncode]) the same way.
package codec
